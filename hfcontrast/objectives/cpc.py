"""CPC (van den Oord et al. 2018; on images, Hénaff et al. 2020): the synchronous asymmetric family, one encoder
for every patch and an autoregressive context network with per-offset predictors on top
(:mod:`hfcontrast.losses.predictive_coding`).

The batch holds each image's patch grid (:class:`~hfcontrast.collators.patches.PatchGridCollator`); the encoder
embeds every patch; a GRU reads each column of the grid from the top down; ``W_k`` predicts the patch ``k`` rows
below; the engine's InfoNCE scores each prediction against every patch of the batch, gathered with gradient from
every process. The context network and the predictors are training heads, state of the objective (in every
checkpoint); the exported encoder embeds an image as the trainer embeds a patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..distributed import gather
from ..losses import ColumnRoles
from ..losses.predictive_coding import cpc_predictions
from .base import ObjectiveOutput, embedding_width
from .contrast import InfoNCEObjective


class CPC(InfoNCEObjective):
    """CPC over the view ``patches`` (``G x G`` patches per image, row-major).

    Args:
        grid: ``G``.
        patch_size: the patches' side in pixels (what the collator cuts: the image recipes wrap their collator in
            :class:`~hfcontrast.collators.patches.PatchGridCollator` with ``grid`` and ``patch_size``).
        offsets: ``K``, predictions 1 to ``K`` rows below (``K < G``; CPC v2 predicts up to 5 rows of 7).
        temperature: the scores are ``z . W_k c / temperature`` (the papers' bilinear score: 1).
        embedding_dim / encoder: the patches' embedding width (the context network's).
        gather: every process's patches as negatives.
    """

    online_views = ("patches",)
    tag = "cpc"
    context: nn.GRU
    predictors: nn.ModuleList

    def __init__(
        self,
        grid: int = 6,
        offsets: int = 3,
        temperature: float = 1.0,
        *,
        patch_size: int = 8,
        embedding_dim: int | None = None,
        encoder: nn.Module | None = None,
        gather: bool = True,
    ) -> None:
        if not 1 <= offsets < grid:
            raise ValueError(f"offsets must be in [1, grid), got offsets={offsets} for grid={grid}")
        super().__init__("CPC", temperature, similarity="dot", gather=gather)
        self.grid, self.offsets, self.patch_size, self.embedding_dim = grid, offsets, patch_size, embedding_dim
        if encoder is not None or embedding_dim is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The context GRU and the ``K`` linear predictors, as wide as the patch embedding."""
        width = embedding_width(encoder, self.embedding_dim, "CPC")
        self.context = nn.GRU(width, width, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(self.offsets))

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        z = embeddings["patches"]
        g = self.grid
        if z.shape[0] % (g * g):
            raise ValueError(f"CPC: {z.shape[0]} patches is not a whole number of {g} x {g} grids")
        patches = z.reshape(-1, g, g, z.shape[-1])  # [B, row, column, D]
        columns = patches.transpose(1, 2).reshape(-1, g, z.shape[-1])  # each column, top down
        context, _ = self.context(columns)
        context = context.reshape(patches.shape[0], g, g, -1).transpose(1, 2)  # back to [B, row, column, D]
        candidates = gather(z, enabled=self.gather)
        predictions, positives = cpc_predictions(patches, context.to(z.dtype), list(self.predictors), candidates.offset)
        out = self.contrast(predictions, candidates.tensor, ColumnRoles(positive_index=positives, indices_in_range=True))
        return ObjectiveOutput(out.loss, {k: v for k, v in out.stats.items() if k == "top1"})
