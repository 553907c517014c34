"""CPC v2's readout (Hénaff et al. 2020): an image's features are the mean of its patch grid's embeddings, each
patch through the encoder as in training, ``f(x) = 1/G^2 sum_ij enc(x_ij)``.

A CPC encoder sees 8 px patches in training; a whole 28 px image is not what it learnt to embed. The CPC recipe
scores its kNN through :class:`PatchGridReadout`, and so should a user of its export (the grid and the patch
size are in the model card's hyperparameters).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..collators.patches import cut_patch_grid
from ._common import as_features


class PatchGridReadout(nn.Module):
    """``encoder`` applied to every patch of a ``grid x grid`` grid of ``patch`` px patches (the collator's cut),
    their embeddings averaged per image: ``[B, D]``."""

    def __init__(self, encoder: nn.Module, grid: int, patch: int) -> None:
        super().__init__()
        self.encoder, self.grid, self.patch = encoder, grid, patch

    def forward(self, pixel_values: Tensor, **inputs: Any) -> Tensor:
        patches = cut_patch_grid(pixel_values, self.grid, self.patch)
        embeddings = as_features(self.encoder(pixel_values=patches, **inputs), "patch encoder")
        return embeddings.reshape(pixel_values.shape[0], self.grid * self.grid, -1).mean(1)


class PatchGridEvaluator:
    """``evaluator`` (e.g. a :class:`~hfcontrast.evaluation.KNNEvaluator`) run on ``PatchGridReadout(model)``."""

    def __init__(self, evaluator: Any, grid: int, patch: int) -> None:
        self.evaluator, self.grid, self.patch = evaluator, grid, patch
        self.name: str = evaluator.name

    def __call__(self, model: nn.Module) -> dict[str, float]:
        return dict(self.evaluator(PatchGridReadout(model, self.grid, self.patch)))
