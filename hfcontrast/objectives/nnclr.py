"""NNCLR (Dwibedi et al. 2021, "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning
of Visual Representations"): the positive is replaced by its nearest neighbour in a support queue.

``L_i = -log e^{NN(z_i) . p_i^+ / tau} / sum_k e^{NN(z_i) . p_k^+ / tau}``, symmetrised over the two views,
with ``NN(z) = argmax_{q in Q} cos(z, q)`` from the support queue ``Q`` (no gradient), ``z`` the view's
embedding and ``p^+`` the other view's, gathered from every process (with gradient). The support queue
(an :class:`~hfcontrast.objectives.KeyQueue`, saved in checkpoints) is fed with the ``query`` view's
gathered embeddings after each optimizer step. Until it holds a batch, the embedding itself stands in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import gather
from .base import ObjectiveOutput, embedding_width
from .config import NegativeConfig
from .contrast import InfoNCEObjective
from .state import KeyQueue


def nearest_neighbours(z: Tensor, support: Tensor) -> Tensor:
    """``support[argmax_j cos(z_i, support_j)]`` for each row (normalised, detached)."""
    z, support = F.normalize(z.detach().float(), dim=-1), F.normalize(support.float(), dim=-1)
    return support[(z @ support.T).argmax(dim=1)]


class NNCLR(InfoNCEObjective):
    """NNCLR over views ``query`` and ``key``; the ``query`` view's embeddings fill the support queue.

    Args:
        temperature: ``tau`` (NNCLR: 0.1).
        support_size: rows of the support queue (NNCLR: 98,304).
        encoder: the model being trained, to size the queue (or ``embedding_dim``).
        gather: the other view's embeddings of every process are the columns.
        negatives: :class:`NegativeConfig` (DCL, chunked loss, Matryoshka ...).
    """

    online_views = ("query", "key")

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        support_size: int = 16384,
        encoder: nn.Module | None = None,
        embedding_dim: int | None = None,
        gather: bool = True,
        negatives: NegativeConfig | None = None,
    ) -> None:
        super().__init__("NNCLR", temperature, gather=gather, negatives=negatives)
        if support_size < 1:
            raise ValueError(f"support_size must be >= 1, got {support_size}")
        self.support = KeyQueue(support_size, embedding_width(encoder, embedding_dim, "NNCLR"))

    def _direction(self, z: Tensor, other: Tensor, support: Tensor | None, batch: Mapping[str, Any]) -> Any:
        columns = gather(other, enabled=self.gather)
        rows = nearest_neighbours(z, support).to(z.dtype) if support is not None else z
        mine = self.examples(batch, z.shape[0], z.device)
        return self.contrast(rows, columns.tensor, self.roles(columns.labels(), mine, self.gathered(mine)))

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        query, key = embeddings["query"], embeddings["key"]
        support = self.support.negatives() if len(self.support) >= query.shape[0] else None
        first = self._direction(query, key, support, batch)
        second = self._direction(key, query, support, batch)
        if self.training:
            self.support.stage(query)
        stats = self.loss_stats(query, key, first)
        stats["support"] = torch.tensor(float(len(self.support)), device=query.device)
        return ObjectiveOutput(0.5 * (first.loss + second.loss), stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        self.support.flush()
