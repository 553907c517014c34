"""SimCLR and MoCo v2 through ContrastiveTrainer on a tiny ResNet: the loss falls, resume is exact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import TrainerCallback

from hfcontrast import ContrastiveVisionModel
from hfcontrast.objectives import MoCo, SimCLR
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.tiny import vision_config


class ColoredNoise(torch.utils.data.Dataset):
    """8 classes of colored-noise 16px images; each row carries two precomputed noisy views."""

    def __init__(self, size: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        colors = torch.rand(8, 3, 1, 1, generator=g) * 2 - 1
        self.rows = []
        for i in range(size):
            image = colors[i % 8] + 0.5 * torch.randn(3, 16, 16, generator=g)
            pair = [image + 0.3 * torch.randn(3, 16, 16, generator=g) for _ in range(2)]
            self.rows.append({"query": pair[0], "key": pair[1].flip(-1), "ids": i})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "query": {"pixel_values": torch.stack([r["query"] for r in rows])},
        "key": {"pixel_values": torch.stack([r["key"] for r in rows])},
        "ids": torch.tensor([r["ids"] for r in rows]),
    }


def train(
    tmp: Path, make_objective: Any, max_steps: int, callbacks: Any = None, **kwargs: Any
) -> ContrastiveTrainer:
    torch.manual_seed(0)
    model = ContrastiveVisionModel(vision_config())
    args = ContrastiveTrainingArguments(
        output_dir=str(tmp), use_cpu=True, report_to=[], seed=0, max_steps=max_steps,
        per_device_train_batch_size=16, logging_steps=1, dataloader_drop_last=True, disable_tqdm=True,
        bad_rows="unchecked",  # tensors made by the test, collated by a function of its own (no row spec)
        **{"save_strategy": "no", "learning_rate": 3e-3, **kwargs},
    )  # fmt: skip
    return ContrastiveTrainer(
        model, args, objective=make_objective(model), train_dataset=ColoredNoise(), data_collator=collate,
        callbacks=callbacks,
    )  # fmt: skip


def run(trainer: ContrastiveTrainer, **kwargs: Any) -> list[float]:
    trainer.train(**kwargs)
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_simclr_training_lowers_the_loss(tmp_path: Path) -> None:
    trainer = train(tmp_path, lambda model: SimCLR(temperature=0.2), 20)
    losses = run(trainer)
    assert len(losses) == 20
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert any("top1" in entry for entry in trainer.state.log_history)


def test_moco_v2_training_lowers_the_loss(tmp_path: Path) -> None:
    def objective(model: nn.Module) -> MoCo:
        return MoCo(model, queue_size=32, momentum=0.9, mask_duplicate_ids=True)

    trainer = train(tmp_path, objective, 20, learning_rate=1e-2)
    losses = run(trainer)
    assert len(trainer.objective.keys) == 32  # type: ignore[union-attr, arg-type]
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[2:6]) / 4, losses  # the queue is full from step 3


class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def test_moco_v2_resume_is_exact(tmp_path: Path) -> None:
    def objective(model: nn.Module) -> MoCo:
        return MoCo(model, queue_size=40, momentum=0.9, final_momentum=0.99)

    straight = train(tmp_path / "straight", objective, 6)
    run(straight)
    first = train(
        tmp_path / "resumed", objective, 6, save_strategy="steps", save_steps=3, callbacks=[StopAt(3)]
    )
    run(first)
    checkpoint = tmp_path / "resumed" / "checkpoint-3"
    assert (checkpoint / "objective.safetensors").is_file()
    resumed = train(tmp_path / "resumed", objective, 6)
    run(resumed, resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=1e-6, msg=name)
    want, got = straight.objective.state_dict(), resumed.objective.state_dict()
    assert want.keys() == got.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert int(got["keys.queue.filled"]) == 40 and int(got["keys.queue.ptr"]) == (6 * 16) % 40
    assert os.path.isdir(checkpoint)


def test_sync_batchnorm_converts_model_and_objective_and_changes_nothing_on_one_process(
    tmp_path: Path,
) -> None:
    """``sync_batchnorm``: every BatchNorm of the model (ResNet, projection head) and of the objective (BYOL's
    predictor, its target network) becomes torch's SyncBatchNorm, sharing the weights; on one process it
    normalises as BatchNorm does, so the run is bit-identical. Several CPU processes are refused (it needs GPUs)."""
    from hfcontrast.objectives import BYOL
    from hfcontrast.trainer.sharding import sync_batchnorm

    runs = {}
    for sync in (False, True):
        trainer = train(
            tmp_path / str(sync), lambda model: BYOL(model, predictor_hidden_dim=8), 3, sync_batchnorm=sync
        )
        modules = [*trainer.model.modules(), *trainer.objective.modules()]  # type: ignore[union-attr]
        kinds = {type(m) for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        assert kinds == ({nn.SyncBatchNorm} if sync else {nn.BatchNorm1d, nn.BatchNorm2d}), kinds
        runs[sync] = (run(trainer), {k: v.clone() for k, v in trainer.model.state_dict().items()})  # type: ignore[union-attr]
    assert runs[True][0] == runs[False][0]
    assert all(torch.equal(runs[True][1][k], v) for k, v in runs[False][1].items())
    with pytest.raises(ValueError, match="needs GPUs"):
        sync_batchnorm([nn.BatchNorm1d(2)], processes=2, device=torch.device("cpu"))
