"""NNCLR (Dwibedi et al. 2021, "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning
of Visual Representations"): the positive is replaced by its nearest neighbour in a support queue.

``L_i = -log e^{NN(z_i) . p_i^+ / tau} / sum_k e^{NN(z_i) . p_k^+ / tau}`` (``loss="cross_view"``, the paper's
eq. 2), symmetrised over the two views, with ``NN(z) = argmax_{q in Q} cos(z, q)`` from the support queue ``Q``
(no gradient), ``z`` the view's embedding and ``p^+`` the other view's, gathered from every process (with
gradient). The default ``loss="nt_xent"`` is SimCLR's NT-Xent over ``[NN(z); p^+]`` (as lightly's NNCLR):
the rows of each view are negatives of each other too, ``2N - 2`` per row. With ``predictor_hidden_dim`` the
other view's embeddings go through the paper's prediction MLP first (``p^+ = g(z^+)``). The support queue
(an :class:`~hfcontrast.objectives.KeyQueue`, saved in checkpoints) is fed with the ``query`` view's
gathered embeddings after each optimizer step. Until it holds a batch, the embedding itself stands in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import gather
from ..models.heads import Predictor
from .base import ObjectiveOutput, embedding_width, scalar_stat
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .contrast import InfoNCEObjective
from .guide import Guide
from .simclr import nt_xent
from .state import KeyQueue


def nearest_neighbours(z: Tensor, support: Tensor) -> Tensor:
    """``support[argmax_j cos(z_i, support_j)]`` for each row (normalised, detached)."""
    z, support = F.normalize(z.detach().float(), dim=-1), F.normalize(support.float(), dim=-1)
    return support[(z @ support.T).argmax(dim=1)]


class NNCLR(InfoNCEObjective):
    """NNCLR over views ``query`` and ``key``; the ``query`` view's embeddings fill the support queue.

    Args:
        temperature: ``tau`` (NNCLR: 0.1).
        loss: ``"nt_xent"`` (``2N - 2`` negatives per row) or ``"cross_view"`` (the paper's ``N - 1``).
        support_size: rows of the support queue (NNCLR: 98,304).
        predictor_hidden_dim: hidden width of the prediction MLP (NNCLR: 4096); ``None``: no predictor.
        encoder: the model being trained, to size the queue (or ``embedding_dim``).
        gather: the other view's embeddings of every process are the columns.
        negatives: :class:`NegativeConfig` (DCL, chunked loss, Matryoshka ...).
        matryoshka / chunking: :class:`MatryoshkaConfig` (nested widths) and :class:`ChunkingConfig`
            (the loss a slice of rows at a time), as for every :class:`InfoNCEObjective`.
        guide: a :class:`~hfcontrast.objectives.Guide` (GISTEmbed); a row stands for its sample's view (not
            its nearest neighbour) in the guide's eyes.
    """

    online_views = ("query", "key")
    augmentation = "simclr"
    tag = "nnclr"
    support: KeyQueue
    predictor: Predictor | None

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        loss: Literal["nt_xent", "cross_view"] = "nt_xent",
        support_size: int = 16384,
        predictor_hidden_dim: int | None = None,
        encoder: nn.Module | None = None,
        embedding_dim: int | None = None,
        gather: bool = True,
        negatives: NegativeConfig | None = None,
        matryoshka: MatryoshkaConfig | None = None,
        chunking: ChunkingConfig | None = None,
        guide: Guide | None = None,
    ) -> None:
        super().__init__(
            "NNCLR", temperature, gather=gather, negatives=negatives, matryoshka=matryoshka, chunking=chunking, guide=guide
        )
        if loss not in ("nt_xent", "cross_view"):
            raise ValueError(f"loss must be 'nt_xent' or 'cross_view', got {loss!r}")
        self.loss = loss
        if support_size < 1:
            raise ValueError(f"support_size must be >= 1, got {support_size}")
        self.support_size, self.predictor_hidden_dim, self.embedding_dim = support_size, predictor_hidden_dim, embedding_dim
        if encoder is not None or embedding_dim is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The support queue and the optional predictor, as wide as the training-time embedding."""
        dim = embedding_width(encoder, self.embedding_dim, "NNCLR")
        self.support = KeyQueue(self.support_size, dim)
        self.predictor = Predictor(dim, self.predictor_hidden_dim) if self.predictor_hidden_dim else None

    def _direction(
        self, z: Tensor, other: Tensor, support: Tensor | None, batch: Mapping[str, Any], views: tuple[str, str]
    ) -> Any:
        rows = nearest_neighbours(z, support).to(z.dtype) if support is not None else z
        if self.loss == "nt_xent":
            return nt_xent(self, rows, other, batch, views)
        columns = gather(other, enabled=self.gather)
        mine = self.examples(batch, z.shape[0], z.device)
        guided = self.guided(batch, z.device, views[:1], views[1:])
        return self.contrast(rows, columns.tensor, self.roles(columns.labels(), mine, self.gathered(mine), **guided))

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        query, key = embeddings["query"], embeddings["key"]
        support = self.support.negatives() if len(self.support) >= query.shape[0] else None
        predicted_query, predicted_key = self.predictor.both(query, key) if self.predictor is not None else (query, key)
        first = self._direction(query, predicted_key, support, batch, ("query", "key"))
        second = self._direction(key, predicted_query, support, batch, ("key", "query"))
        if self.training:
            self.support.stage(query)
        stats = self.loss_stats(query, key, first)
        stats["support"] = scalar_stat(len(self.support), query)
        return ObjectiveOutput(0.5 * (first.loss + second.loss), stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        self.support.flush()
