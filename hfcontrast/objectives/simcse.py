"""SimCSE (Gao et al. 2021): InfoNCE over (anchor, positive[, hard negative]) text views.

``L_i = -log e^{s(a_i,p_i)/tau} / (sum_j e^{s(a_i,p_j)/tau} + sum_j e^{s(a_i,n_j)/tau + w[i=j]} + sum_k e^{s(a_i,q_k)/tau})``

with ``p`` the positives and ``n`` the hard negatives of every process, and ``q`` the queue.

Unsupervised SimCSE feeds the same sentence as anchor and positive (dropout makes the views);
supervised SimCSE adds the contradiction as a hard negative with weight ``w`` (in logit space, as in
the SimCSE code). Positives and hard negatives are gathered from every process with gradient; an
optional queue adds ``K`` past positives as extra negatives, encoded by a momentum copy of the model
when ``momentum`` is given (MoCo-style, He et al. 2020).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import gather
from ..losses import Similarity
from .base import ObjectiveOutput, embedding_width
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .contrast import InfoNCEObjective
from .guide import Guide
from .state import KeyQueue, MomentumEncoder, check_momentum


class SimCSE(InfoNCEObjective):
    """In-batch (gathered) and queued negatives for text pairs; views ``anchor``, ``positive``, ``negative``.

    Args:
        temperature: softmax temperature ``tau > 0`` (SimCSE: 0.05).
        similarity: ``"cosine"`` or ``"dot"``.
        hard_negative_weight: SimCSE's ``w`` added to each anchor's own hard-negative logit.
        symmetric: also contrast positives against gathered anchors and average the two losses.
        gather: use negatives from every process (with gradient).
        queue_size: ``K`` past positives kept as extra negatives (0: none).
        encoder: the model being trained; needed when ``momentum`` is set (its EMA copy encodes
            positives) and to size the queue.
        embedding_dim: queue width; defaults to the encoder's ``train_embedding_dim``.
        momentum / final_momentum: EMA momentum of the key encoder and the end of its cosine schedule.
        negatives: :class:`NegativeConfig` (false-negative masking by ``batch["ids"]``, FNCL, debiased,
            hard-negative ``beta``, MoCHi on the queue, SupCon by ``batch["labels"]``, DCL, chunked loss).
            The hard negatives of the ``negative`` view have no id and no label: always negatives.
        matryoshka / chunking: :class:`MatryoshkaConfig` (nested widths) and :class:`ChunkingConfig`
            (the loss a slice of rows at a time), as for every :class:`InfoNCEObjective`.
        guide: a :class:`~hfcontrast.objectives.Guide` (GISTEmbed) masking the positives, hard negatives and
            queued keys it scores above each anchor's positive.
    """

    modality = "text"
    tag = "simcse"
    key_encoder: MomentumEncoder | None
    keys: KeyQueue | None

    def __init__(
        self,
        temperature: float = 0.05,
        *,
        similarity: Similarity = "cosine",
        hard_negative_weight: float = 0.0,
        symmetric: bool = False,
        gather: bool = True,
        queue_size: int = 0,
        encoder: nn.Module | None = None,
        embedding_dim: int | None = None,
        momentum: float | None = None,
        final_momentum: float | None = None,
        negatives: NegativeConfig | None = None,
        matryoshka: MatryoshkaConfig | None = None,
        chunking: ChunkingConfig | None = None,
        guide: Guide | None = None,
    ) -> None:
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        super().__init__(
            "SimCSE", temperature, similarity=similarity, gather=gather, negatives=negatives, matryoshka=matryoshka,
            chunking=chunking, guide=guide, has_queue=queue_size > 0,
        )  # fmt: skip
        self.hard_negative_weight, self.symmetric = hard_negative_weight, symmetric
        self.queue_size, self.embedding_dim = queue_size, embedding_dim
        self.momentum, self.final_momentum = momentum, final_momentum
        self.key_encoder, self.keys = None, None
        if momentum is not None:
            check_momentum(momentum, final_momentum)
            self.online_views = ("anchor", "negative")
        if encoder is not None or (momentum is None and (queue_size == 0 or embedding_dim is not None)):
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The momentum copy of ``encoder`` (with ``momentum``) and the queue (with ``queue_size``)."""
        if self.momentum is not None:
            if encoder is None:
                raise ValueError("momentum needs encoder=<the model being trained> to copy")
            self.key_encoder = MomentumEncoder(encoder, self.momentum, self.final_momentum)
        if self.queue_size > 0:
            dim = embedding_width(encoder, self.embedding_dim, "SimCSE with queue_size > 0")
            self.keys = KeyQueue(
                self.queue_size, dim, store_ids=self.negatives.queue_stores is not None, guide_dim=self.guide_width
            )

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        anchor = embeddings["anchor"]
        positive = self.key_encoder(batch["positive"]) if self.key_encoder is not None else embeddings["positive"]
        negative = embeddings.get("negative")
        mine = self.examples(batch, anchor.shape[0], anchor.device)
        theirs = self.gathered(mine)
        positives = gather(positive, enabled=self.gather)
        columns, between = [positives.tensor], []
        weighted: dict[str, Any] = {}
        if negative is not None:
            hard = gather(negative, enabled=self.gather).tensor
            columns.append(hard)
            between.append(hard.shape[0])
            if self.hard_negative_weight:  # each anchor's own hard negative, right after the positives
                weighted = {"weighted_index": positives.labels(positives.tensor.shape[0]), "weight": self.hard_negative_weight}
        queued = self.keys.negatives() if self.keys is not None else None
        stored = None
        if queued is not None:
            columns.append(queued.to(anchor.dtype))
            stored = self.keys.ids() if self.negatives.queue_stores and self.keys is not None else None
        queue_start = sum(c.shape[0] for c in columns[:-1]) if queued is not None else None
        views = ("positive", "negative") if negative is not None else ("positive",)
        queued_guides = self.keys.guide_negatives() if queued is not None and self.keys is not None else None
        guided = self.guided(batch, anchor.device, ("anchor",), views, queued_guides)
        roles = self.roles(positives.labels(), mine, theirs, *between, stored=stored, **weighted, **guided)
        out = self.contrast(anchor, torch.cat(columns) if len(columns) > 1 else columns[0], roles, queue_start=queue_start)
        loss = out.loss
        if self.symmetric:
            anchors = gather(anchor, enabled=self.gather)
            guided_back = self.guided(batch, anchor.device, ("positive",), ("anchor",))
            back = self.contrast(positive, anchors.tensor, self.roles(positives.labels(), mine, theirs, **guided_back))
            loss = 0.5 * (loss + back.loss)
        if self.keys is not None and self.training:
            guides = self.guide.views(batch, anchor.device, "positive")[0] if self.guide is not None else None
            self.keys.stage(positive, self.queue_values(mine), guides)
        return ObjectiveOutput(loss, self.loss_stats(anchor, positive, out))

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        if self.key_encoder is not None:
            self.key_encoder.update(model, step, max_steps)
        if self.keys is not None:
            self.keys.flush()
