"""Scored pairs: text pairs with a gold similarity (STS-B's ratings), trained with CoSENT, AnglE or cosine MSE.

The collator passes ``batch["scores"]`` (a score column divided by its stated scale, see
:class:`~hfcontrast.collators.TextPairCollator`'s ``score_column``). With ``gather`` every process ranks
the pairs of the whole global batch (CoSENT's sum runs over pairs of pairs, so the global batch is what a
single process would see); the gradient flows back to each process's own pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from ..distributed import gather, gather_detached
from ..losses import (
    LossOutput,
    angle_pair_similarity,
    cosine_pair_similarity,
    matryoshka_loss,
    ranked_pairs_loss,
)
from ..losses.scored import _check_pairs
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats
from .config import MatryoshkaConfig

ScoredLoss = Literal["cosent", "angle", "cosine_mse"]
SCORED_LOSSES: tuple[str, ...] = ("cosent", "angle", "cosine_mse")


class ScoredPairs(ContrastiveObjective):
    """CoSENT (Su 2022), AnglE (Li & Li 2023) or SBERT's cosine MSE over views ``anchor`` and ``positive``
    with ``batch["scores"]`` (formulas: :mod:`hfcontrast.losses.scored`).

    Args:
        loss: ``"cosent"``, ``"angle"`` (its angle objective) or ``"cosine_mse"`` (scores in ``[0, 1]``).
        scale: ``lambda`` of the ranking losses (20 in both papers).
        cosine_weight: with ``loss="angle"``, add this weight times CoSENT (AnglE's combined objective,
            ``L = w_cos L_cos + L_angle``); 0 = the angle objective alone.
        gather: rank the pairs of every process together.
        matryoshka: the loss summed over nested prefixes of the embeddings (Kusupati et al. 2022).
    """

    modality = "text"
    tag = "scored-pairs"
    online_views = ("anchor", "positive")

    def __init__(
        self,
        loss: ScoredLoss = "cosent",
        *,
        scale: float = 20.0,
        cosine_weight: float = 0.0,
        gather: bool = True,
        matryoshka: MatryoshkaConfig | None = None,
    ) -> None:
        super().__init__()
        if loss not in SCORED_LOSSES:
            raise ValueError(f"ScoredPairs.loss must be one of {', '.join(SCORED_LOSSES)}, got {loss!r}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if cosine_weight < 0 or (cosine_weight and loss != "angle"):
            raise ValueError(
                f"ScoredPairs.cosine_weight (>= 0) adds CoSENT to loss='angle' only, got {cosine_weight} with {loss!r}"
            )
        self.loss, self.scale, self.cosine_weight = loss, scale, cosine_weight
        self.gather, self.matryoshka = gather, matryoshka
        self.tag = {"cosent": "cosent", "angle": "angle", "cosine_mse": "cosine-similarity"}[loss]
        self.bind()  # nothing depends on the trained model

    def pair_loss(self, u: Tensor, v: Tensor, scores: Tensor) -> LossOutput:
        """The loss of pairs ``(u_k, v_k)`` (already gathered) against their gold ``scores``."""
        _check_pairs(u, v, scores)
        if self.loss == "cosine_mse":
            predicted = cosine_pair_similarity(u, v)
            return LossOutput(torch.nn.functional.mse_loss(predicted, scores.to(predicted.dtype)))
        if self.loss == "cosent":
            return ranked_pairs_loss(cosine_pair_similarity(u, v), scores, self.scale)
        out = ranked_pairs_loss(angle_pair_similarity(u, v), scores, self.scale)
        if self.cosine_weight:
            cosine = ranked_pairs_loss(cosine_pair_similarity(u, v), scores, self.scale)
            out = LossOutput(out.loss + self.cosine_weight * cosine.loss, stats=out.stats)
        return out

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        anchor, positive = embeddings["anchor"], embeddings["positive"]
        scores = batch.get("scores")
        if not isinstance(scores, Tensor) or scores.shape != (anchor.shape[0],):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(
                f"{type(self).__name__} needs batch['scores'] of shape ({anchor.shape[0]},): pass the collator a "
                f"score_column (the recipes' --score_column), got {got}"
            )
        scores = scores.to(anchor.device, torch.float32)
        u, v = (gather(x, enabled=self.gather).tensor for x in (anchor, positive))
        if self.gather:
            scores = gather_detached(scores)

        def loss(a: Tensor, b: Tensor) -> LossOutput:
            return self.pair_loss(a, b, scores)

        out = matryoshka_loss(loss, u, v, self.matryoshka.dims, self.matryoshka.weights) if self.matryoshka else loss(u, v)
        return ObjectiveOutput(out.loss, pair_stats(anchor, positive, None, None) | out.stats)
