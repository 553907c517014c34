"""CPC: the patch grid cut as Hénaff et al. cut it; the loss against its formula written out (each column's context
by the GRU run on that column alone, every prediction scored against every patch of the batch) in float64; a run
through the trainer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hfcontrast.augment import eval_pipeline
from hfcontrast.collators import MultiViewCollator
from hfcontrast.collators.patches import PatchGridCollator
from hfcontrast.evaluation import KNNEvaluator, knn_top1
from hfcontrast.evaluation.patch_grid import PatchGridEvaluator, PatchGridReadout
from hfcontrast.objectives import CPC


def _rows(n: int = 4, side: int = 16) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)), "row_index": i} for i in range(n)]


def test_the_patch_grid_is_row_major_overlapping_squares() -> None:
    inner = MultiViewCollator(pipeline=eval_pipeline(16, resize_size=16), seed=0, index_column="row_index")
    batch = PatchGridCollator(inner, grid=3, patch=8)(_rows())
    pixels, patches = inner(_rows())["query"]["pixel_values"], batch["patches"]["pixel_values"]
    assert patches.shape == (4 * 9, 3, 8, 8) and "query" not in batch
    for b in range(4):
        for i in range(3):
            for j in range(3):
                torch.testing.assert_close(patches[b * 9 + i * 3 + j], pixels[b, :, 4 * i: 4 * i + 8, 4 * j: 4 * j + 8])
    with pytest.raises(ValueError, match="does not tile"):
        PatchGridCollator(inner, grid=4, patch=8)(_rows())


def naive_cpc(objective: CPC, z: torch.Tensor, g: int, tau: float) -> float:
    b, d = z.shape[0] // (g * g), z.shape[1]
    grid = z.reshape(b, g, g, d)
    total, terms = 0.0, 0
    for n in range(b):
        for j in range(g):
            for i in range(g):
                column = grid[n, : i + 1, j][None]  # rows 0..i of column j
                c = objective.context(column)[0][0, -1]
                for k in range(1, objective.offsets + 1):
                    if i + k >= g:
                        continue
                    prediction = objective.predictors[k - 1](c)
                    scores = [float(prediction @ z[m]) / tau for m in range(z.shape[0])]
                    top = max(scores)
                    log_z = top + math.log(sum(math.exp(s - top) for s in scores))
                    total += -(scores[(n * g + i + k) * g + j] - log_z)
                    terms += 1
    return total / terms


def test_cpc_matches_its_formula() -> None:
    torch.manual_seed(0)
    objective = CPC(grid=4, offsets=2, temperature=0.5, embedding_dim=5).double()
    z = torch.randn(3 * 16, 5, dtype=torch.float64)
    got = float(objective({"patches": z}, {}).loss)
    with torch.no_grad():
        assert got == pytest.approx(naive_cpc(objective, z, 4, 0.5), rel=1e-10)


def test_cpc_trains_through_the_trainer(tmp_path: Path) -> None:
    import datasets

    from hfcontrast import ContrastiveVisionModel
    from hfcontrast.collators import with_index_column
    from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
    from tests.tiny import vision_config

    rng = np.random.default_rng(1)
    colours = rng.integers(0, 255, (4, 3))
    images = [Image.fromarray(np.clip(colours[i % 4] + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)) for i in range(32)]
    rows = with_index_column(datasets.Dataset.from_dict({"image": images}), "row_index")
    torch.manual_seed(0)
    model = ContrastiveVisionModel(vision_config())
    inner = MultiViewCollator(pipeline=eval_pipeline(16, resize_size=16), seed=0, index_column="row_index")
    args = ContrastiveTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=10, save_strategy="no",
                                        per_device_train_batch_size=8, logging_steps=1, disable_tqdm=True, learning_rate=3e-3)  # fmt: skip
    trainer = ContrastiveTrainer(model, args, objective=CPC(grid=3, offsets=2), train_dataset=rows,
                                 data_collator=PatchGridCollator(inner, grid=3, patch=8))  # fmt: skip
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 10 and sum(losses[-3:]) < sum(losses[:3]), losses


class _LinearPatchEncoder(torch.nn.Module):
    def __init__(self, side: int, dim: int = 5) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * side * side, dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(pixel_values.flatten(1))


def test_the_patch_grid_readout_is_the_mean_of_the_patches_embeddings() -> None:
    """CPC v2's readout against a loop over the patches: the 3 x 3 grid of 8 px patches of 16 px images."""
    torch.manual_seed(0)
    encoder, pixels = _LinearPatchEncoder(8), torch.randn(6, 3, 16, 16)
    naive = torch.stack([
        torch.stack([encoder(pixels[b : b + 1, :, 4 * i : 4 * i + 8, 4 * j : 4 * j + 8])[0]
                     for i in range(3) for j in range(3)]).mean(0)
        for b in range(6)
    ])  # fmt: skip
    torch.testing.assert_close(PatchGridReadout(encoder, grid=3, patch=8)(pixels), naive)

    rows = [{"pixel_values": pixels[b], "labels": b % 2} for b in range(6)]
    collate = lambda rs: {"pixel_values": torch.stack([r["pixel_values"] for r in rs]),  # noqa: E731
                          "labels": torch.tensor([r["labels"] for r in rs])}  # fmt: skip
    knn = KNNEvaluator(rows[:4], rows[4:], collate_fn=collate, k=3, temperature=0.1, name="knn")
    evaluator = PatchGridEvaluator(knn, grid=3, patch=8)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    expected = knn_top1(naive[:4], labels[:4], naive[4:], labels[4:], k=3, temperature=0.1)
    assert evaluator.name == "knn" and evaluator(encoder) == {"knn_top1": pytest.approx(expected)}
    assert encoder.training  # the evaluator restores the model's mode
