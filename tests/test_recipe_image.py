"""Image training: per-row augmentation seeds, exact resume with real augmentation, and smoke runs of
``recipes/simclr.py`` / ``recipes/moco.py`` through ``accelerate launch`` with 2 processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, ResNetConfig

import hfcontrast  # noqa: F401  (registers the Auto classes)
from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel
from hfcontrast.augment import ViewParams, ViewPipeline
from hfcontrast.collators import MultiViewCollator, with_index_column
from hfcontrast.collators.seeding import CollatorEpochCallback
from hfcontrast.objectives import MoCo
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.launch import REPO_ROOT, accelerate_launch

# Real augmentation: crop, flip, colour jitter, grayscale and blur, all drawn per row and view.
VIEW = ViewParams(size=16, crop_scale=(0.3, 1.0), blur_p=0.5, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def image_rows(n: int = 40, seed: int = 0) -> datasets.Dataset:
    """``n`` 20x20 RGB images: 4 colour classes plus noise, with labels and a row-index column."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (4, 3))
    images = [
        Image.fromarray(np.clip(colours[i % 4] + rng.normal(0, 40, (20, 20, 3)), 0, 255).astype(np.uint8))
        for i in range(n)
    ]
    return with_index_column(datasets.Dataset.from_dict({"image": images, "label": [i % 4 for i in range(n)]}))


def collator(index_column: str | None = "row_index", seed: int = 3) -> MultiViewCollator:
    return MultiViewCollator("image", pipeline=ViewPipeline.from_params(VIEW), seed=seed, index_column=index_column)


def test_row_views_depend_only_on_seed_epoch_index_and_view() -> None:
    rows = [image_rows(8)[i] for i in range(8)]
    first = collator()(rows)
    order = [5, 2, 7, 0, 3, 6, 1, 4]  # other batches, other order, a fresh collator
    views = collator()
    batches = [views([rows[i] for i in order[:3]]), views([rows[i] for i in order[3:]])]
    for view in ("query", "key"):
        again = torch.cat([batch[view]["pixel_values"] for batch in batches])
        for k, i in enumerate(order):
            assert torch.equal(again[k], first[view]["pixel_values"][i])
    assert not torch.equal(first["query"]["pixel_values"], first["key"]["pixel_values"])  # the views differ
    other_epoch = collator()
    CollatorEpochCallback(other_epoch).on_epoch_begin(None, type("S", (), {"epoch": 1.0})(), None)  # type: ignore[arg-type]
    assert other_epoch.epoch == 1
    assert not torch.equal(other_epoch(rows)["query"]["pixel_values"], first["query"]["pixel_values"])
    assert not torch.equal(collator(seed=4)(rows)["query"]["pixel_values"], first["query"]["pixel_values"])


def tiny_model() -> ContrastiveVisionModel:
    torch.manual_seed(0)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=backbone, projection_dim=8, projection_hidden_dim=16))


def moco_run(output_dir: Path, resume: str | None, index_column: str | None) -> tuple[ContrastiveVisionModel, MoCo]:
    """MoCo v2 with a queue, 8 steps over 40 rows (5 steps per epoch), a checkpoint at step 4 (mid-epoch)."""
    model = tiny_model()
    objective = MoCo(model, queue_size=24, momentum=0.9, final_momentum=0.99)
    views = collator(index_column)
    args = ContrastiveTrainingArguments(
        output_dir=str(output_dir), use_cpu=True, report_to=[], seed=0, max_steps=8, per_device_train_batch_size=8,
        dataloader_drop_last=True, save_strategy="steps", save_steps=4, learning_rate=1e-2, logging_steps=1,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = ContrastiveTrainer(
        model=model, args=args, objective=objective, train_dataset=image_rows(), data_collator=views,
        callbacks=[CollatorEpochCallback(views)],
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    assert trainer.state.global_step == 8
    return model, objective


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def test_resume_with_augmentation_is_exact(tmp_path: Path) -> None:
    """8 straight steps == 4 steps, stop, resume to 8: weights, queue and key encoder within 1e-6."""
    straight_model, straight = moco_run(tmp_path / "straight", None, "row_index")
    checkpoint = tmp_path / "straight" / "checkpoint-4"
    assert (checkpoint / "objective.safetensors").is_file()
    resumed_model, resumed = moco_run(tmp_path / "resumed", str(checkpoint), "row_index")
    assert max_difference(straight_model.state_dict(), resumed_model.state_dict()) <= 1e-6
    state = resumed.state_dict()
    assert {"keys.queue.embeddings", "key_encoder.current_momentum"} <= set(state)
    assert any(k.startswith("key_encoder.encoder.backbone.") for k in state)
    assert int(state["keys.queue.filled"]) == 24
    assert max_difference(straight.state_dict(), state) <= 1e-6
    # Control: the per-collator stream is not in the checkpoint, so the same resume is not exact.
    stream_model, _ = moco_run(tmp_path / "stream", None, None)
    stream_resumed, _ = moco_run(tmp_path / "stream-resumed", str(tmp_path / "stream" / "checkpoint-4"), None)
    assert max_difference(stream_model.state_dict(), stream_resumed.state_dict()) > 1e-4


# ----------------------------------------------------------------------------- recipe smoke runs
needs_data = pytest.mark.fashion_mnist  # skipped without the data set (tests/conftest.py)
TINY = ("--max_steps", "3", "--per_device_train_batch_size", "8", "--image_size", "16", "--max_train_samples", "64",
        "--max_eval_samples", "32", "--eval_steps", "2", "--logging_steps", "1", "--projection_dim", "16",
        "--knn_k", "5")  # fmt: skip


def check_outputs(out: Path, stdout: str, size: int = 16, width: int = 256) -> dict[str, Any]:
    assert "kNN top-1 (fashion_mnist test, k=5) before:" in stdout
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "eval_results.json",
                 "training.png", "README.md"):  # fmt: skip
        assert (out / name).is_file(), name
    assert not (out / "objective.safetensors").exists()  # training state is never exported
    results = json.loads((out / "eval_results.json").read_text())
    assert {"before_knn_top1", "eval_knn_top1", "before_knn_linear_probe_top1", "eval_knn_linear_probe_top1"} <= set(results)
    assert results["train_steps"] == 3
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "eval_knn_top1" in card  # the standard folder: the plain backbone
    model = AutoModel.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    images = [Image.fromarray(np.full((28, 28), 30 * i, dtype=np.uint8)) for i in range(2)]
    inputs = processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, size, size)
    with torch.no_grad():
        emb = model(**inputs).pooler_output.flatten(1)
    assert emb.shape == (2, width) and torch.isfinite(emb).all()  # the pooled backbone feature
    return results


@pytest.mark.distributed
@needs_data
def test_simclr_recipe_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = accelerate_launch(REPO_ROOT / "recipes" / "simclr.py", "--output_dir", str(out), *TINY)
    check_outputs(out, stdout)


@pytest.mark.distributed
@needs_data
@pytest.mark.parametrize("method", ["mocov2", "mocov3", "byol", "simsiam"])
def test_moco_recipe_two_processes(tmp_path: Path, method: str) -> None:
    out = tmp_path / "out"
    extra = ("--queue_size", "40", "--false_negative_masking") if method == "mocov2" else ()
    stdout = accelerate_launch(
        REPO_ROOT / "recipes" / "moco.py", "--method", method, "--output_dir", str(out), *TINY, *extra
    )
    check_outputs(out, stdout)
    card = (out / "README.md").read_text()
    assert {"mocov2": "moco-v2", "mocov3": "moco-v3", "byol": "byol", "simsiam": "simsiam"}[method] in card


def test_persistent_workers_see_the_new_epoch() -> None:
    """Persistent dataloader workers keep the collator they started with; the epoch of its per-row seeds
    must still follow set_epoch, or every epoch would repeat the first one's augmentations."""
    rows = image_rows(8)
    views = collator()
    loader = torch.utils.data.DataLoader(rows, batch_size=8, collate_fn=views, num_workers=1, persistent_workers=True)
    first = next(iter(loader))["query"]["pixel_values"]
    views.set_epoch(1)
    second = next(iter(loader))["query"]["pixel_values"]
    in_process = collator()
    in_process.set_epoch(1)
    assert torch.equal(second, in_process([rows[i] for i in range(8)])["query"]["pixel_values"])
    assert not torch.equal(first, second)
