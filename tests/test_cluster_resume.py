"""Exact resume of the stateful new objectives: a run stopped at step 4 (mid-epoch) and resumed to step 8
equals the uninterrupted run: losses of steps 5-8, weights, and objective state (SwAV prototypes and
queue, DINO centre, teacher and head, NNCLR support queue, PCL clusters and queue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hfcontrast import ContrastiveVisionModel
from hfcontrast.augment import ViewPipeline, eval_pipeline, local_crop_pipeline
from hfcontrast.collators import ImageEvalCollator, MultiViewCollator
from hfcontrast.collators.seeding import CollatorEpochCallback
from hfcontrast.objectives import DINO, NNCLR, PCL, SwAV
from hfcontrast.objectives.base import ContrastiveObjective
from hfcontrast.objectives.clusters import ClusterRefreshCallback
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.test_recipe_image import VIEW, image_rows, max_difference, tiny_model

ROWS = 40
CROPS = 2


def objective(name: str, model: ContrastiveVisionModel) -> ContrastiveObjective:
    if name == "swav":
        return SwAV(model, num_prototypes=6, queue_size=16, freeze_prototypes_steps=2)
    if name == "dino":
        return DINO(model, out_dim=12, hidden_dim=16, bottleneck_dim=6, warmup_teacher_temperature=0.02, warmup_steps=6, momentum=0.9)
    if name == "nnclr":
        return NNCLR(0.2, support_size=24, encoder=model)
    return PCL(model, num_rows=ROWS, num_clusters=(3, 5), queue_size=16, momentum=0.9)


def run(name: str, output_dir: Path, resume: str | None) -> tuple[ContrastiveVisionModel, ContrastiveObjective, list[float]]:
    model = tiny_model()
    goal = objective(name, model)
    view = ViewPipeline.from_params(VIEW)
    crops = CROPS if name in ("swav", "dino") else 0
    views = MultiViewCollator.multi_crop(view, local_crop_pipeline(view, 8), crops, seed=3, index_column="row_index",
                                         id_column="row_index")  # fmt: skip
    callbacks: list[Any] = [CollatorEpochCallback(views)]
    if isinstance(goal, PCL):
        features = ImageEvalCollator("image", None, eval_pipeline(16, VIEW.mean, VIEW.std, resize_size=16))
        callbacks.append(ClusterRefreshCallback(goal, image_rows(ROWS), features, every_n_steps=3, start_step=1))
    args = ContrastiveTrainingArguments(
        output_dir=str(output_dir), use_cpu=True, report_to=[], seed=0, max_steps=8, per_device_train_batch_size=8,
        dataloader_drop_last=True, save_strategy="steps", save_steps=4, learning_rate=1e-2, logging_steps=1,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = ContrastiveTrainer(model=model, args=args, objective=goal, train_dataset=image_rows(ROWS),
                                 data_collator=views, callbacks=callbacks)  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry and entry["step"] > 4]
    return model, goal, losses


@pytest.mark.parametrize("name", ["swav", "dino", "nnclr", "pcl"])
def test_resume_equals_the_uninterrupted_run(tmp_path: Path, name: str) -> None:
    straight_model, straight, straight_losses = run(name, tmp_path / "straight", None)
    resumed_model, resumed, resumed_losses = run(name, tmp_path / "resumed", str(tmp_path / "straight" / "checkpoint-4"))
    assert len(resumed_losses) == 4
    assert resumed_losses == pytest.approx(straight_losses, rel=1e-5)
    assert max_difference(straight_model.state_dict(), resumed_model.state_dict()) <= 1e-6
    assert max_difference(straight.state_dict(), resumed.state_dict()) <= 1e-6
    state = resumed.state_dict()
    expected = {"swav": {"prototypes.weight", "steps_done", "queue_0.queue.embeddings"},
                "dino": {"center", "steps_done", "teacher_head.last.weight", "teacher_encoder.current_momentum"},
                "nnclr": {"support.queue.embeddings"},
                "pcl": {"assignments", "clustered_at", "centroids_1", "concentration_0", "keys.queue.embeddings"}}[name]  # fmt: skip
    assert expected <= set(state)
    if name == "pcl":
        assert int(state["clustered_at"]) == 7  # refreshed before steps 1, 4 and 7 (every 3 from 1)
    if name == "dino":
        assert bool(state["center"].abs().sum() > 0)
