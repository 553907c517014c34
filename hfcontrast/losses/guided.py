"""Guided negatives (GISTEmbed, Solatorio 2024, "GISTEmbed: Guided In-sample Selection of Training Negatives
for Text Embedding Fine-tuning").

A frozen guide model scores every candidate against the query; a candidate the guide finds more similar to
the query than the query's own positive is probably a false negative, and is ignored. With the guide's cosine
``g_ij = cos(G(q_i), G(c_j))`` and ``p(i)`` the positive column of row ``i``, candidate ``j != p(i)`` is
ignored when

* ``g_ij > g_ip(i) - m`` (``absolute`` margin ``m``; ``m = 0`` is the paper's rule), or
* ``g_ij > g_ip(i) * (1 - m)`` (``relative`` margin).

The mask is row-local, so :class:`~hfcontrast.losses.ColumnRoles` builds it one chunk of rows at a time from
the ``O((N + M) D_g)`` guide embeddings, never holding an ``N x M`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

MarginStrategy = Literal["absolute", "relative"]


def guided_false_negatives(
    guide_scores: Tensor, positive_index: Tensor, margin: float = 0.0, strategy: MarginStrategy = "absolute"
) -> Tensor:
    """Bool ``[N, M]``: ``True`` where the guide scores candidate ``j`` above row ``i``'s positive (less the
    margin); never the positive itself. ``guide_scores`` is ``[N, M]``, ``positive_index`` ``[N]``."""
    own = guide_scores.gather(1, positive_index.long()[:, None])
    threshold = own - margin if strategy == "absolute" else own * (1.0 - margin)
    flagged = guide_scores > threshold
    columns = torch.arange(guide_scores.shape[1], device=guide_scores.device)[None, :]
    return flagged & (columns != positive_index.long()[:, None])


@dataclass(frozen=True)
class GuidedNegatives:
    """The guide's embeddings of the ``N`` query rows and the ``M`` candidate columns (in the columns' order),
    and the margin rule (see the module)."""

    rows: Tensor
    columns: Tensor
    margin: float = 0.0
    strategy: MarginStrategy = "absolute"

    def __post_init__(self) -> None:
        if self.strategy not in ("absolute", "relative"):
            raise ValueError(f"the guide's margin strategy must be 'absolute' or 'relative', got {self.strategy!r}")
        if self.rows.dim() != 2 or self.columns.dim() != 2 or self.rows.shape[1] != self.columns.shape[1]:
            raise ValueError(
                f"guide embeddings must be [rows, D] and [columns, D], got {tuple(self.rows.shape)} and "
                f"{tuple(self.columns.shape)}"
            )
        with torch.no_grad():
            dtype = torch.promote_types(self.rows.dtype, torch.float32)
            rows, columns = self.rows.to(dtype), self.columns.to(self.rows.device, dtype)
            object.__setattr__(self, "rows", F.normalize(rows, dim=-1))
            object.__setattr__(self, "columns", F.normalize(columns, dim=-1))

    def mask(self, start: int, end: int, positive_index: Tensor) -> Tensor:
        """:func:`guided_false_negatives` for rows ``start .. end - 1`` (their ``positive_index``)."""
        device = positive_index.device
        scores = self.rows[start:end].to(device) @ self.columns.to(device).T
        return guided_false_negatives(scores, positive_index, self.margin, self.strategy)
