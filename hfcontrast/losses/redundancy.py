"""Redundancy-reduction losses (no negatives): Barlow Twins and VICReg, over the embeddings of two views.

Both read statistics of the whole batch (per-dimension means, variances, cross-correlations), so under several
processes the caller passes the **global** batch, gathered with gradient
(:func:`~hfcontrast.distributed.gather_with_grad`): every process then computes the same loss, the gather's
backward sums each process's gradient for its rows, and DDP's average of the parameter gradients gives exactly the
single-process gradient over the concatenated batch (not ``1 / world_size`` of it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_embeddings, upcast
from .compiled import compilable


def _pair(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    check_embeddings("z1", z1)
    check_embeddings("z2", z2, z1.shape[1])
    if z1.shape[0] != z2.shape[0] or z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 need the same batch of two or more rows, got {z1.shape[0]} and {z2.shape[0]}")
    a, b = upcast(z1, z2)
    return a, b


def _off_diagonal(matrix: Tensor) -> Tensor:
    n = matrix.shape[0]
    return matrix.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


@compilable
def barlow_twins_loss(z1: Tensor, z2: Tensor, lambda_offdiag: float = 5e-3, eps: float = 1e-5) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1): with each dimension standardised over the batch (mean 0,
    variance 1, the biased variance plus ``eps`` as the authors' ``BatchNorm1d(affine=False)``) and
    ``C = z1ᵀ z2 / N`` the cross-correlation matrix,

    ``L = sum_i (1 - C_ii)² + λ sum_{i≠j} C_ij²``   (paper: ``λ = 5e-3``).
    """
    a, b = _pair(z1, z2)
    a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + eps)
    b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + eps)
    c = a.T @ b / a.shape[0]
    on = (torch.diagonal(c) - 1).pow(2).sum()
    return on + lambda_offdiag * _off_diagonal(c).pow(2).sum()


def vicreg_terms(z1: Tensor, z2: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """VICReg's three terms (Bardes et al. 2022, eqs. 1-5), as the authors' code computes them:

    * invariance ``s = mean_{b,k} (z1_bk - z2_bk)²``;
    * variance ``v = ½ [mean_k relu(gamma - sqrt(Var z1_k + eps)) + mean_k relu(gamma - sqrt(Var z2_k + eps))]``
      (``Var`` unbiased; the paper's sum of the two terms, halved in the authors' code);
    * covariance ``c = (1/d) sum_{i≠j} Cov(z1)_ij² + (1/d) sum_{i≠j} Cov(z2)_ij²``, ``Cov(z) = (z - z̄)ᵀ (z - z̄) / (N - 1)``.
    """
    a, b = _pair(z1, z2)
    invariance = (a - b).pow(2).mean()
    a, b = a - a.mean(0), b - b.mean(0)
    variance = 0.5 * sum(torch.relu(gamma - torch.sqrt(x.var(0) + eps)).mean() for x in (a, b))
    n, d = a.shape
    covariance = sum(_off_diagonal(x.T @ x / (n - 1)).pow(2).sum() / d for x in (a, b))
    return invariance, variance, covariance  # type: ignore[return-value]


@compilable
def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """VICReg (Bardes et al. 2022, eq. 6): ``lambda s + mu v + nu c`` over :func:`vicreg_terms` (paper: 25, 25, 1)."""
    s, v, c = vicreg_terms(z1, z2, gamma, eps)
    return invariance_weight * s + variance_weight * v + covariance_weight * c
