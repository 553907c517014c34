"""MoCo v2 (He et al. 2020; Chen, Fan, Girshick, He 2020) and MoCo v3 (Chen, Xie, He 2021).

**v2**: query ``q = f_q(x^q)`` from the trained model, key ``k = f_k(x^k)`` from its momentum copy
(``theta_k <- m theta_k + (1 - m) theta_q``), negatives from a queue of past keys ``{k_j}``:

``L = -mean_i log exp(q_i.k_i/tau) / (exp(q_i.k_i/tau) + sum_j exp(q_i.k_j/tau))``  (cosine similarities)

Keys are gathered from every process and staged into the queue, which is updated after the optimizer
step (so every process holds the same queue). The other in-batch keys are *not* negatives, as in the
paper. Shuffling BN is not implemented (not needed on one process with the key views in one batch).

**v3**: both views go through the trained model and a predictor (``q1, q2``) and through the momentum
encoder (``k1, k2``); no queue, in-batch keys gathered from every process are the negatives:

``L = 2 tau (ctr(q1, k2) + ctr(q2, k1))``,  ``ctr(q, k) = CE(q k_all^T / tau, labels = arange(n) + rank offset)``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..distributed import gather_with_grad
from ..losses import LossOutput, Similarity, info_nce
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats, scalar_stat
from .byol import Predictor, momentum_embed, predict, resolve_embedding_dim
from .options import NegativeOptions, example_roles, gathered
from .state import KeyQueue, MomentumEncoder

_DEFAULTS = {"v2": (0.999, None), "v3": (0.99, 1.0)}


class MoCo(ContrastiveObjective):
    """Momentum Contrast over views ``query`` and ``key``; momentum encoder, queue and predictor live here.

    Args:
        encoder: the model being trained (copied once as the momentum/key encoder).
        version: ``"v2"`` (queue of negatives) or ``"v3"`` (predictor, symmetric in-batch loss).
        temperature: ``tau > 0`` (v2 paper: 0.2; v3: 0.2 for ViT, 1.0 for ResNet).
        queue_size: ``K`` queued negatives (v2 only; default 65536).
        momentum / final_momentum: EMA momentum and the end of its cosine schedule. ``None``: the
            version's default, v2: 0.999 constant; v3: 0.99 -> 1.0. Pass equal values for a constant.
        embedding_dim: width of the training-time embedding (queue / predictor); default
            ``encoder.config.train_embedding_dim``.
        predictor_hidden_dim: hidden width of the v3 predictor (paper: 4096).
        similarity: ``"cosine"`` (the papers' normalised embeddings) or ``"dot"``.
        gather: v3: keys of every process are negatives.
        mask_duplicate_ids: v2: store ``batch["ids"]`` with the queued keys and drop queued keys of the
            query's own image from its negatives (they are false negatives on small datasets). The
            same as ``options=NegativeOptions(false_negative_masking=True)``.
        options: :class:`NegativeOptions` (false-negative masking by ``batch["ids"]``, FNCL, debiased,
            hard-negative ``beta``, MoCHi on the v2 queue, SupCon by ``batch["labels"]`` with labels
            stored in the queue, DCL, chunked loss). v2: the positive is the own key; the other in-batch
            keys stay out of the loss, as in the paper.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        version: Literal["v2", "v3"] = "v2",
        temperature: float = 0.2,
        queue_size: int | None = None,
        momentum: float | None = None,
        final_momentum: float | None = None,
        embedding_dim: int | None = None,
        predictor_hidden_dim: int = 4096,
        similarity: Similarity = "cosine",
        gather: bool = True,
        mask_duplicate_ids: bool = False,
        options: NegativeOptions | None = None,
    ) -> None:
        super().__init__()
        if version not in _DEFAULTS:
            raise ValueError(f"version must be 'v2' or 'v3', got {version!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if version == "v3" and (queue_size or mask_duplicate_ids):
            raise ValueError("MoCo v3 has no queue: leave queue_size and mask_duplicate_ids unset")
        self.version, self.temperature, self.similarity = version, temperature, similarity
        self.options = options or NegativeOptions()
        if mask_duplicate_ids and not self.options.false_negative_masking:
            self.options = replace(self.options, false_negative_masking=True)
        self.options.check(f"MoCo {version}", has_queue=version == "v2", similarity=similarity)
        self.gather, self.mask_duplicate_ids = gather, mask_duplicate_ids
        base, final = _DEFAULTS[version]
        momentum = base if momentum is None else momentum
        final_momentum = final if final_momentum is None else final_momentum
        dim = resolve_embedding_dim(encoder, embedding_dim, "MoCo")
        self.key_encoder = MomentumEncoder(encoder, momentum, final_momentum)
        self.keys: KeyQueue | None = None
        self.predictor: Predictor | None = None
        if version == "v2":
            size = 65536 if queue_size is None else int(queue_size)
            if size < 1:
                raise ValueError(f"MoCo v2 needs queue_size >= 1, got {size}")
            self.keys = KeyQueue(size, dim, store_ids=self.options.queue_stores is not None)
            self.online_views = ("query",)
        else:
            self.predictor = Predictor(dim, predictor_hidden_dim)
            self.online_views = ("query", "key")

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        if self.version == "v2":
            return self._forward_v2(embeddings["query"], batch)
        return self._forward_v3(embeddings["query"], embeddings["key"], batch)

    def _forward_v2(self, query: Tensor, batch: Mapping[str, Any]) -> ObjectiveOutput:
        assert self.keys is not None
        key = self.key_encoder(batch["key"])
        n, device = query.shape[0], query.device
        queued = self.keys.negatives()
        labels = torch.arange(n, device=device)
        if self.options.active:
            out = self._options_v2(query, key, queued, batch)
        else:
            # Column i of the in-batch block is query i's positive; the other in-batch keys are masked.
            mask = ~torch.eye(n, dtype=torch.bool, device=device)
            out = info_nce(
                query,
                key,
                labels,
                temperature=self.temperature,
                similarity=self.similarity,
                extra_negatives=queued,
                candidate_mask=mask,
            )
        if self.training:
            self.keys.stage(key, self.options.queue_values(batch, n, device))
        stats = self._stats(query, key, out)
        stats["negatives"] = scalar_stat(len(self.keys), query)
        return ObjectiveOutput(out.loss, stats)

    def _options_v2(self, query: Tensor, key: Tensor, queued: Tensor | None, batch: Mapping[str, Any]) -> LossOutput:
        """Columns ``[keys; queue]``: the own key is the positive, the other keys are ignored (paired block)."""
        assert self.keys is not None
        options, n, device = self.options, query.shape[0], query.device
        ids, classes = options.example_ids(batch, n, device), options.example_labels(batch, n, device)
        stored = self.keys.ids() if queued is not None and options.queue_stores else None
        roles = example_roles(torch.arange(n, device=device), ids, classes, ids, classes, stored=stored, paired_columns=n)
        columns = key if queued is None else torch.cat([key, queued.to(key.dtype)])
        return options.contrast(
            query,
            columns,
            roles,
            temperature=self.temperature,
            similarity=self.similarity,
            queue_start=n if queued is not None else None,
        )

    def _contrast(self, query: Tensor, key: Tensor, batch: Mapping[str, Any]) -> LossOutput:
        keys, offset = gather_with_grad(key) if self.gather else (key, 0)
        labels = torch.arange(query.shape[0], device=query.device) + offset
        if not self.options.active:
            return info_nce(query, keys, labels, temperature=self.temperature, similarity=self.similarity)
        options, n, device = self.options, query.shape[0], query.device
        ids, classes = options.example_ids(batch, n, device), options.example_labels(batch, n, device)
        roles = example_roles(labels, ids, classes, gathered(ids, self.gather), gathered(classes, self.gather))
        return options.contrast(query, keys, roles, temperature=self.temperature, similarity=self.similarity)

    def _forward_v3(self, view1: Tensor, view2: Tensor, batch: Mapping[str, Any]) -> ObjectiveOutput:
        assert self.predictor is not None
        q1, q2 = predict(self.predictor, view1, view2)
        k1, k2 = momentum_embed(self.key_encoder, batch, ("query", "key"))
        first, second = self._contrast(q1, k2, batch), self._contrast(q2, k1, batch)
        loss = 2.0 * self.temperature * (first.loss + second.loss)
        stats = self._stats(q1, k2, first)
        if first.logits is not None:
            stats["negatives"] = scalar_stat(first.logits.shape[1] - 1, q1)
        return ObjectiveOutput(loss, stats)

    def _stats(self, query: Tensor, key: Tensor, out: LossOutput) -> dict[str, Tensor]:
        stats = pair_stats(query, key, out.logits, out.labels)
        if out.logits is None:
            stats["top1"], stats["negatives"] = out.stats["top1"], out.stats["negatives"]
        stats["temperature"] = scalar_stat(self.temperature, query)
        stats["momentum"] = self.key_encoder.current_momentum.detach().clone()
        return stats

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        self.key_encoder.update(model, step, max_steps)
        if self.keys is not None:
            self.keys.flush()
