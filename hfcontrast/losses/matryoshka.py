"""Matryoshka representation learning (Kusupati et al. 2022, "Matryoshka Representation Learning").

One embedding trained so that every prefix of it is an embedding too:

``L_MRL = sum_m w_m * L(q[:, :d_m], c[:, :d_m])``

for nested widths ``d_1 > d_2 > ...`` and weights ``w_m`` (default 1 each). The similarity of each
prefix is computed on the prefix itself (cosine normalises the prefix), which is what a user who
truncates the exported embedding to ``d_m`` gets. The embeddings are computed once; only the loss is
repeated per width, so GradCache caches them once as well.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from torch import Tensor

from .compiled import compilable
from .types import LossOutput


def check_matryoshka(dims: Sequence[int], weights: Sequence[float] | None, width: int | None = None) -> None:
    """Widths strictly decreasing and positive, one positive weight per width, none wider than ``width``."""
    if not dims:
        raise ValueError("MatryoshkaConfig.dims is empty; give the nested widths, e.g. 384,256,128,64")
    if any(d < 1 for d in dims) or any(a <= b for a, b in itertools.pairwise(dims)):
        raise ValueError(f"MatryoshkaConfig.dims must be positive and strictly decreasing, got {list(dims)}")
    if weights is not None and (len(weights) != len(dims) or any(w <= 0 for w in weights)):
        raise ValueError(f"MatryoshkaConfig.weights needs one weight > 0 per width {list(dims)}, got {list(weights)}")
    if width is not None and dims[0] > width:
        raise ValueError(f"MatryoshkaConfig.dims {list(dims)}: {dims[0]} is wider than the embedding ({width})")


@compilable
def matryoshka_loss(
    loss: Callable[[Tensor, Tensor], LossOutput],
    rows: Tensor,
    columns: Tensor,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
) -> LossOutput:
    """``sum_m w_m * loss(rows[:, :d_m], columns[:, :d_m]).loss``; the statistics are the widest prefix's,
    plus ``loss_dim_<d>`` per width (detached)."""
    check_matryoshka(dims, weights, rows.shape[-1])
    total: Tensor | None = None
    first: LossOutput | None = None
    per_dim = {}
    for m, dim in enumerate(dims):
        out = loss(rows[..., :dim], columns[..., :dim])
        first = first or out
        weighted = out.loss * (1.0 if weights is None else float(weights[m]))
        total = weighted if total is None else total + weighted
        per_dim[f"loss_dim_{dim}"] = out.loss.detach()
    assert total is not None and first is not None
    return LossOutput(total, first.logits, first.labels, {**first.stats, **per_dim})
