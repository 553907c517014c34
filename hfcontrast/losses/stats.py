"""Representation statistics: alignment / uniformity (Wang & Isola 2020) and top-1 accuracy.

All accept detached inputs (e.g. under ``torch.no_grad()``); alignment and uniformity stay
differentiable so they can also be used as training objectives, as in the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, upcast


def alignment(x: Tensor, y: Tensor, alpha: float = 2.0) -> Tensor:
    """Alignment ``mean_i ||f(x_i) - f(y_i)||_2^alpha`` over positive pairs, ``f`` = L2 normalisation.

    Wang & Isola 2020, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere", eq. (the ``L_align`` loss). Lower is better.
    """
    check_embeddings("x", x)
    check_embeddings("y", y, x.shape[1])
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    x, y = upcast(x, y)
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """Uniformity ``log mean_{i<j} exp(-t ||f(x_i) - f(x_j)||_2^2)``, ``f`` = L2 normalisation.

    Wang & Isola 2020 (``L_uniform``), computed with ``logsumexp`` over the ``N(N-1)/2`` distinct
    pairs; squared distances use ``2 - 2 <f(x_i), f(x_j)>`` (clamped at 0), differentiable everywhere.
    Needs ``N >= 2``. Lower is better.
    """
    check_embeddings("x", x)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 rows, got {n}")
    if t <= 0:
        raise ValueError(f"t must be > 0, got {t}")
    (x,) = upcast(x)
    x = F.normalize(x, dim=-1)
    # Distances from the N x N Gram matrix: O(N^2) scalars, never N^2/2 rows of width D.
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    sq_dist = (2.0 - 2.0 * (x @ x.t())[i, j]).clamp_min(0.0)
    return torch.logsumexp(-t * sq_dist, dim=0) - math.log(sq_dist.numel())


@torch.no_grad()
def top1_accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of rows whose ``argmax`` logit is the label: ``mean_i [argmax_j l_ij == y_i]`` (fp32 scalar)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D [batch, classes], got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
    return (logits.argmax(dim=1) == labels.to(logits.device)).float().mean()


@torch.no_grad()
def collapse_std(z: Tensor) -> Tensor:
    """SimSiam's collapse monitor: mean over channels of the std of ``z / ||z||`` (``~1/sqrt(d)`` when
    healthy, ``0`` when collapsed; Chen & He 2021, fig. 2)."""
    return F.normalize(z.detach().float(), dim=-1).std(dim=0).mean()
