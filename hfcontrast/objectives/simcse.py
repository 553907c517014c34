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

from ..distributed import gather_with_grad
from ..losses import LossOutput, Similarity, info_nce
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats, scalar_stat
from .options import NegativeOptions, example_roles, gathered
from .state import KeyQueue, MomentumEncoder


def _local(tensor: Tensor) -> tuple[Tensor, int]:
    return tensor, 0


class SimCSE(ContrastiveObjective):
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
        embedding_dim: queue width; defaults to ``encoder.config.train_embedding_dim``.
        momentum / final_momentum: EMA momentum of the key encoder and the end of its cosine schedule.
        options: :class:`NegativeOptions` (false-negative masking by ``batch["ids"]``, FNCL, debiased,
            hard-negative ``beta``, MoCHi on the queue, SupCon by ``batch["labels"]``, DCL, chunked loss).
            The hard negatives of the ``negative`` view have no id and no label: always negatives.
    """

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
        options: NegativeOptions | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.temperature, self.similarity = temperature, similarity
        self.hard_negative_weight, self.symmetric, self.gather = hard_negative_weight, symmetric, gather
        self.options = options or NegativeOptions()
        self.options.check("SimCSE", has_queue=queue_size > 0, similarity=similarity)
        self.key_encoder: MomentumEncoder | None = None
        if momentum is not None:
            if encoder is None:
                raise ValueError("momentum needs encoder=<the model being trained> to copy")
            self.key_encoder = MomentumEncoder(encoder, momentum, final_momentum)
            self.online_views = ("anchor", "negative")
        self.keys: KeyQueue | None = None
        if queue_size > 0:
            if embedding_dim is None:
                config = getattr(encoder, "config", None)
                embedding_dim = getattr(config, "train_embedding_dim", None)
            if embedding_dim is None:
                raise ValueError("queue_size > 0 needs embedding_dim (or encoder with config.train_embedding_dim)")
            self.keys = KeyQueue(queue_size, int(embedding_dim), store_ids=self.options.queue_stores is not None)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        anchor = embeddings["anchor"]
        positive = self.key_encoder(batch["positive"]) if self.key_encoder is not None else embeddings["positive"]
        negative = embeddings.get("negative")
        gather = gather_with_grad if self.gather else _local
        candidates, offset = gather(positive)
        labels = torch.arange(anchor.shape[0], device=anchor.device) + offset
        extra: list[Tensor] = []
        if negative is not None:
            extra.append(gather(negative)[0])
        queued = self.keys.negatives() if self.keys is not None else None
        if queued is not None:
            extra.append(queued.to(anchor.dtype))
        weight = self.hard_negative_weight if negative is not None else 0.0
        if self.options.active:
            hard = extra[0].shape[0] if negative is not None else 0
            loss, out = self._options_loss(anchor, positive, candidates, extra, hard, labels, weight, batch)
        else:
            out = info_nce(
                anchor,
                candidates,
                labels,
                temperature=self.temperature,
                similarity=self.similarity,
                extra_negatives=torch.cat(extra) if extra else None,
                extra_negative_weight=weight,
                hard_negative_index=labels if weight else None,
            )
            loss = out.loss
            if self.symmetric:
                anchors, _ = gather(anchor)
                back = info_nce(positive, anchors, labels, temperature=self.temperature, similarity=self.similarity)
                loss = 0.5 * (loss + back.loss)
        if self.keys is not None and self.training:
            self.keys.stage(positive, self.options.queue_values(batch, anchor.shape[0], anchor.device))
        stats = pair_stats(anchor, positive, out.logits, labels)
        stats["temperature"] = scalar_stat(self.temperature, anchor)
        if out.logits is not None:
            stats["negatives"] = scalar_stat(out.logits.shape[1] - 1, anchor)
        else:
            stats["top1"], stats["negatives"] = out.stats["top1"], out.stats["negatives"]
        return ObjectiveOutput(loss, stats)

    def _options_loss(
        self,
        anchor: Tensor,
        positive: Tensor,
        candidates: Tensor,
        extra: list[Tensor],
        hard: int,
        labels: Tensor,
        weight: float,
        batch: Mapping[str, Any],
    ) -> tuple[Tensor, LossOutput]:
        """Columns ``[gathered positives; hard gathered negatives; queue]`` under :class:`NegativeOptions`."""
        options, device, n = self.options, anchor.device, anchor.shape[0]
        ids, classes = options.example_ids(batch, n, device), options.example_labels(batch, n, device)
        all_ids, all_classes = gathered(ids, self.gather), gathered(classes, self.gather)
        total = candidates.shape[0]
        has_queue = self.keys is not None and len(self.keys) > 0
        queued = self.keys.ids() if self.keys is not None and has_queue and options.queue_stores else None
        roles = example_roles(
            labels, ids, classes, all_ids, all_classes, hard,
            stored=queued, weighted_index=labels + total if weight else None, weight=weight,
        )  # fmt: skip
        columns = torch.cat([candidates, *extra]) if extra else candidates
        queue_start = total + hard if has_queue else None
        out = options.contrast(
            anchor, columns, roles, temperature=self.temperature, similarity=self.similarity, queue_start=queue_start
        )
        if not self.symmetric:
            return out.loss, out
        anchors, _ = gather_with_grad(anchor) if self.gather else (anchor, 0)
        back_roles = example_roles(labels, ids, classes, all_ids, all_classes)
        back = options.contrast(positive, anchors, back_roles, temperature=self.temperature, similarity=self.similarity)
        return 0.5 * (out.loss + back.loss), out

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        if self.key_encoder is not None:
            self.key_encoder.update(model, step, max_steps)
        if self.keys is not None:
            self.keys.flush()
