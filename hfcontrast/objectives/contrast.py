"""What every InfoNCE-family objective (SimCSE, SimCLR, MoCo, CLIP) does the same way.

An objective of this family only lays out its columns (gathered positives, hard negatives, a queue)
and says which column is each row's positive; :class:`InfoNCEObjective` turns the batch's ``ids`` /
``labels`` into :class:`~hfcontrast.losses.ColumnRoles` and calls the engine
(:func:`~hfcontrast.losses.contrastive_loss`) with the :class:`NegativeConfig`. One code path per
objective, whatever the options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..distributed import gather_detached
from ..losses import ColumnRoles, LossOutput, Similarity, contrastive_loss, draw_mochi, matryoshka_loss
from .base import ContrastiveObjective, pair_stats, scalar_stat
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .guide import Guide


@dataclass(frozen=True)
class Examples:
    """Per-row ``ids`` (duplicate masking) and ``labels`` (SupCon) of a batch, ``None`` when unused."""

    ids: Tensor | None = None
    labels: Tensor | None = None


def _batch_column(batch: Mapping[str, Any], key: str, rows: int, device: torch.device, why: str) -> Tensor:
    value = batch.get(key)
    if not isinstance(value, Tensor) or value.is_floating_point() or value.shape != (rows,):
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{why} needs integer batch[{key!r}] of shape ({rows},) from the collator, got {got}")
    return value.to(device).long()


def column_values(*parts: Tensor | int | None, device: torch.device) -> Tensor | None:
    """Concatenate per-column ids/labels; an ``int`` part is that many ``-1`` (no id). ``None`` if the first
    part is ``None`` (the option is off)."""
    if not parts or parts[0] is None:
        return None
    pieces = []
    for part in parts:
        if isinstance(part, int):
            pieces.append(torch.full((part,), -1, dtype=torch.long, device=device))
        elif part is not None:
            pieces.append(part.to(device).long())
    return torch.cat(pieces)


class InfoNCEObjective(ContrastiveObjective):
    """Base of the InfoNCE-family objectives: temperature, similarity, gathering, negative handling.

    Args:
        owner: the objective's name, for error messages.
        temperature: ``tau > 0``, or ``None`` when the objective reads it from the model (CLIP).
        similarity: ``"cosine"`` or ``"dot"``.
        gather: use the embeddings of every process as columns (with gradient).
        negatives: the :class:`NegativeConfig` (default: plain InfoNCE).
        matryoshka: a :class:`MatryoshkaConfig`: the loss summed over nested prefixes of the embeddings.
        chunking: a :class:`ChunkingConfig`: the loss computed a slice of rows at a time.
        guide: a :class:`~hfcontrast.objectives.guide.Guide` (GISTEmbed): candidates its frozen model scores
            above the row's positive are ignored, in the batch, across processes and in the queue.
        has_queue: whether the objective keeps a queue (MoCHi needs one).
    """

    def __init__(
        self,
        owner: str,
        temperature: float | None,
        *,
        similarity: Similarity = "cosine",
        gather: bool = True,
        negatives: NegativeConfig | None = None,
        matryoshka: MatryoshkaConfig | None = None,
        chunking: ChunkingConfig | None = None,
        guide: Guide | None = None,
        has_queue: bool = False,
    ) -> None:
        super().__init__()
        if guide is not None and not isinstance(guide, Guide):
            raise TypeError(f"guide must be a hfcontrast.objectives.Guide, got {type(guide).__name__}")
        self.guide = guide
        self.negatives = negatives or NegativeConfig()
        self.negatives.check(owner, temperature=temperature, has_queue=has_queue, similarity=similarity)
        self.matryoshka, self.chunking = matryoshka, chunking
        self.temperature, self.similarity, self.gather = temperature, similarity, gather

    def examples(self, batch: Mapping[str, Any], rows: int, device: torch.device) -> Examples:
        """This process's ``batch["ids"]`` / ``batch["labels"]``, as far as the negative handling uses them."""
        config = self.negatives
        ids = _batch_column(batch, "ids", rows, device, "NegativeConfig.mask_duplicates") if config.mask_duplicates else None
        labels = _batch_column(batch, "labels", rows, device, "NegativeConfig.supervised") if config.supervised else None
        return Examples(ids, labels)

    def gathered(self, mine: Examples) -> Examples:
        """The examples of every process, aligned with the gathered embeddings (no gradient)."""
        if not self.gather:
            return mine
        return Examples(*(None if v is None else gather_detached(v) for v in (mine.ids, mine.labels)))

    @property
    def guide_width(self) -> int | None:
        """The width of the guide's embeddings a queue stores with its keys (``None``: no guide)."""
        return self.guide.width if self.guide is not None else None

    def guided(
        self,
        batch: Mapping[str, Any],
        device: torch.device,
        rows: tuple[str, ...],
        columns: tuple[str, ...],
        queued: Tensor | None = None,
    ) -> dict[str, Any]:
        """The ``guide`` field of :class:`ColumnRoles` for the rows of views ``rows`` (stacked) against the
        column blocks of views ``columns`` (gathered like the embeddings) then ``queued`` (the queue's guide
        embeddings); ``{}`` without a guide."""
        if self.guide is None:
            return {}
        row_guides = torch.cat(self.guide.views(batch, device, *rows))
        blocks = self.guide.views(batch, device, *columns, gather=self.gather)
        return {"guide": self.guide.negatives(row_guides, *blocks, queued)}

    def queue_values(self, mine: Examples) -> Tensor | None:
        """What a queue stores with this batch's keys (see :attr:`NegativeConfig.queue_stores`)."""
        return mine.labels if self.negatives.supervised else mine.ids

    def roles(
        self,
        positive_index: Tensor,
        mine: Examples,
        columns: Examples,
        *between: int,
        stored: Tensor | None = None,
        **fields: Any,
    ) -> ColumnRoles:
        """Roles of columns ``[column examples; between (-1 each); stored queue values]`` for rows ``mine``;
        ``fields`` are the other :class:`ColumnRoles` fields (``self_index``, ``paired_columns``,
        ``weighted_index``, ``weight``). The indices are the objectives' arange layouts
        (``Gathered.labels``), so the engine does not read them back (``indices_in_range``)."""
        device = positive_index.device
        return ColumnRoles(
            positive_index=positive_index,
            query_ids=mine.ids,
            candidate_ids=column_values(columns.ids, *between, stored, device=device),
            query_labels=mine.labels,
            candidate_labels=column_values(columns.labels, *between, stored, device=device),
            indices_in_range=True,
            **fields,
        )

    def contrast(
        self,
        rows: Tensor,
        columns: Tensor,
        roles: ColumnRoles,
        *,
        temperature: float | Tensor | None = None,
        queue_start: int | None = None,
    ) -> LossOutput:
        """The engine with this objective's options; MoCHi mixes the columns ``queue_start ..`` (the queue);
        with ``matryoshka`` the engine's loss is summed over the nested prefixes of the embeddings."""
        config = self.negatives
        mochi = None
        if config.mochi and queue_start is not None and queue_start < columns.shape[0]:
            mochi = draw_mochi(
                rows.shape[0], config.mochi_n, config.mochi_s, config.mochi_s_prime, queue_start, device=rows.device
            )
        tau = self.temperature if temperature is None else temperature
        assert tau is not None

        def engine(query: Tensor, candidates: Tensor) -> LossOutput:
            return contrastive_loss(
                query, candidates, roles, temperature=tau, similarity=self.similarity, fncl=config.fncl,
                fncl_top_k=config.fncl_top_k, hard_negative_beta=config.hard_negative_beta,
                tau_plus=config.debiased_tau_plus, decoupled=config.decoupled, mochi=mochi,
                chunk_size=self.chunking.rows if self.chunking is not None else None,
            )  # fmt: skip

        if self.matryoshka is not None:  # the same rows and columns, the loss summed over nested prefixes
            return matryoshka_loss(engine, rows, columns, self.matryoshka.dims, self.matryoshka.weights)
        return engine(rows, columns)

    def loss_stats(self, rows: Tensor, positives: Tensor, out: LossOutput) -> dict[str, Tensor]:
        """Alignment and uniformity of the pairs, the engine's top-1 and negatives, the temperature."""
        stats = pair_stats(rows, positives, None, None)
        stats["top1"], stats["negatives"] = out.stats["top1"], out.stats["negatives"]
        if self.temperature is not None:
            stats["temperature"] = scalar_stat(self.temperature, rows)
        return stats
