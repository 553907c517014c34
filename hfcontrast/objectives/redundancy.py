"""Redundancy reduction: Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et al. 2022).

No negatives and no momentum encoder: the two views' embeddings (the model's projector output, which both papers
make wide: 8192) are compared through statistics of the **global** batch, gathered with gradient from every
process (:mod:`hfcontrast.losses.redundancy` says why the gradient then equals one process's over the
concatenated batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..distributed import gather_with_grad
from ..losses import barlow_twins_loss, collapse_std, vicreg_terms
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats


class _RedundancyReduction(ContrastiveObjective):
    online_views = ("query", "key")
    augmentation = "byol"  # both papers take BYOL's views

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = gather
        self.bind()  # nothing depends on the model

    def global_views(self, embeddings: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Both views' embeddings over every process's rows (with gradient), or this process's alone."""
        z1, z2 = embeddings["query"], embeddings["key"]
        if not self.gather:
            return z1, z2
        return gather_with_grad(z1)[0], gather_with_grad(z2)[0]

    @staticmethod
    def stats(z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
        stats = pair_stats(z1, z2, None, None)
        stats["collapse_std"] = collapse_std(z1)
        return stats


class BarlowTwins(_RedundancyReduction):
    """Barlow Twins over views ``query`` and ``key``: the cross-correlation of the standardised embeddings pushed
    to the identity, ``L = sum_i (1 - C_ii)² + λ sum_{i≠j} C_ij²`` (:func:`~hfcontrast.losses.barlow_twins_loss`).

    Args:
        lambda_offdiag: ``λ``, the weight of the redundancy terms (paper: 5e-3 for 8192 dimensions; lightly's
            default too).
        gather: the statistics over the global batch (every process's rows, with gradient), as the paper's.
    """

    tag = "barlow-twins"

    def __init__(self, lambda_offdiag: float = 5e-3, *, gather: bool = True) -> None:
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
        super().__init__(gather)
        self.lambda_offdiag = lambda_offdiag

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        z1, z2 = self.global_views(embeddings)
        return ObjectiveOutput(barlow_twins_loss(z1, z2, self.lambda_offdiag), self.stats(z1, z2))


class VICReg(_RedundancyReduction):
    """VICReg over views ``query`` and ``key``: ``lambda s + mu v + nu c``, invariance (mean squared distance), variance
    (a hinge on each dimension's std) and covariance (off-diagonal covariances) terms
    (:func:`~hfcontrast.losses.vicreg_terms`), each logged.

    Args:
        invariance_weight / variance_weight / covariance_weight: ``lambda, mu, nu`` (paper: 25, 25, 1).
        gamma: the target std of each dimension (1).
        gather: the statistics over the global batch (every process's rows, with gradient), as the paper's.
    """

    tag = "vicreg"

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        gamma: float = 1.0,
        *,
        gather: bool = True,
    ) -> None:
        weights = {"invariance_weight": invariance_weight, "variance_weight": variance_weight,
                   "covariance_weight": covariance_weight, "gamma": gamma}  # fmt: skip
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        super().__init__(gather)
        self.invariance_weight, self.variance_weight, self.covariance_weight = invariance_weight, variance_weight, covariance_weight
        self.gamma = gamma

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        z1, z2 = self.global_views(embeddings)
        s, v, c = vicreg_terms(z1, z2, self.gamma)
        loss = self.invariance_weight * s + self.variance_weight * v + self.covariance_weight * c
        stats = self.stats(z1, z2) | {"invariance": s.detach(), "variance": v.detach(), "covariance": c.detach()}
        return ObjectiveOutput(loss, stats)
