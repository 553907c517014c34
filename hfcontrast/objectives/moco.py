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

from ..distributed import gather
from ..losses import LossOutput, Similarity, mixed_positive_loss
from ..models.heads import Predictor
from .base import ObjectiveOutput, embedding_width, scalar_stat
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .contrast import InfoNCEObjective
from .guide import Guide
from .state import KeyQueue, MomentumEncoder, check_momentum

_DEFAULTS = {"v2": (0.999, None), "v3": (0.99, 1.0)}


class MoCo(InfoNCEObjective):
    """Momentum Contrast over views ``query`` and ``key``; momentum encoder, queue and predictor live here.

    Args:
        encoder: the model being trained (copied once as the momentum/key encoder).
        version: ``"v2"`` (queue of negatives) or ``"v3"`` (predictor, symmetric in-batch loss).
        temperature: ``tau > 0`` (v2 paper: 0.2; v3: 0.2 for ViT, 1.0 for ResNet).
        queue_size: ``K`` queued negatives (v2 only; default 65536).
        momentum / final_momentum: EMA momentum and the end of its cosine schedule. ``None``: the
            version's default, v2: 0.999 constant; v3: 0.99 -> 1.0. Pass equal values for a constant.
        embedding_dim: width of the training-time embedding (queue / predictor); default the encoder's
            ``train_embedding_dim``.
        predictor_hidden_dim: hidden width of the v3 predictor (paper: 4096).
        similarity: ``"cosine"`` (the papers' normalised embeddings) or ``"dot"``.
        gather: v3: keys of every process are negatives.
        mask_duplicate_ids: v2: store ``batch["ids"]`` with the queued keys and drop queued keys of the
            query's own image from its negatives (they are false negatives on small datasets). The
            same as ``negatives=NegativeConfig(mask_duplicates=True)``.
        negatives: :class:`NegativeConfig` (false-negative masking by ``batch["ids"]``, FNCL, debiased,
            hard-negative ``beta``, MoCHi on the v2 queue, SupCon by ``batch["labels"]`` with labels
            stored in the queue, DCL, chunked loss). v2: the positive is the own key; the other in-batch
            keys stay out of the loss, as in the paper.
        matryoshka / chunking: :class:`MatryoshkaConfig` (nested widths) and :class:`ChunkingConfig`
            (the loss a slice of rows at a time), as for every :class:`InfoNCEObjective`.
        guide: a :class:`~hfcontrast.objectives.Guide` (GISTEmbed) run on both views; v2's queue stores its
            embeddings of the keys.
        mix_weight: v2, i-Mix (Lee et al. 2021), when the batch has a ``mixed`` view
            (:class:`~hfcontrast.collators.mixing.MixingCollator`): ``L + w L_mix``, the mixed rows against the
            keys and the queue (:func:`~hfcontrast.losses.mixed_positive_loss`).
    """

    key_encoder: MomentumEncoder
    keys: KeyQueue | None
    predictor: Predictor | None

    def __init__(
        self,
        encoder: nn.Module | None = None,
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
        negatives: NegativeConfig | None = None,
        matryoshka: MatryoshkaConfig | None = None,
        chunking: ChunkingConfig | None = None,
        guide: Guide | None = None,
        mix_weight: float = 1.0,
    ) -> None:
        if version not in _DEFAULTS:
            raise ValueError(f"version must be 'v2' or 'v3', got {version!r}")
        if version == "v3" and (queue_size or mask_duplicate_ids):
            raise ValueError("MoCo v3 has no queue: leave queue_size and mask_duplicate_ids unset")
        negatives = negatives or NegativeConfig()
        if mask_duplicate_ids and not negatives.mask_duplicates:
            negatives = replace(negatives, mask_duplicates=True)
        super().__init__(
            f"MoCo {version}", temperature, similarity=similarity, gather=gather, negatives=negatives, matryoshka=matryoshka, chunking=chunking,
            guide=guide, has_queue=version == "v2",
        )  # fmt: skip
        self.version, self.mask_duplicate_ids = version, mask_duplicate_ids
        self.augmentation, self.tag = ("mocov2", "moco-v2") if version == "v2" else ("byol", "moco-v3")
        base, final = _DEFAULTS[version]
        self.momentum = base if momentum is None else momentum
        self.final_momentum = final if final_momentum is None else final_momentum
        check_momentum(self.momentum, self.final_momentum)
        self.queue_size = (65536 if queue_size is None else int(queue_size)) if version == "v2" else 0
        if version == "v2" and self.queue_size < 1:
            raise ValueError(f"MoCo v2 needs queue_size >= 1, got {self.queue_size}")
        self.embedding_dim, self.predictor_hidden_dim = embedding_dim, predictor_hidden_dim
        self.keys, self.predictor = None, None
        self.mix_weight = mix_weight
        self.online_views = ("query", "mixed") if version == "v2" else ("query", "key")
        if encoder is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The momentum copy of ``encoder`` and the v2 queue or the v3 predictor, as wide as its embedding."""
        if encoder is None:
            raise ValueError("MoCo copies the model being trained as its key encoder: bind it to the model")
        dim = embedding_width(encoder, self.embedding_dim, "MoCo")
        self.key_encoder = MomentumEncoder(encoder, self.momentum, self.final_momentum)
        if self.version == "v2":
            self.keys = KeyQueue(
                self.queue_size, dim, store_ids=self.negatives.queue_stores is not None, guide_dim=self.guide_width
            )
        else:
            self.predictor = Predictor(dim, self.predictor_hidden_dim)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        if self.version == "v2":
            return self._forward_v2(embeddings["query"], batch, embeddings.get("mixed"))
        return self._forward_v3(embeddings["query"], embeddings["key"], batch)

    def _forward_v2(self, query: Tensor, batch: Mapping[str, Any], mixed: Tensor | None = None) -> ObjectiveOutput:
        """Columns ``[keys; queue]``: the own key is the positive, the other in-batch keys are ignored."""
        assert self.keys is not None
        key = self.key_encoder(batch["key"])
        n = query.shape[0]
        mine = self.examples(batch, n, query.device)
        queued = self.keys.negatives()
        stored = self.keys.ids() if queued is not None and self.negatives.queue_stores else None
        guided, guides = {}, None
        if self.guide is not None:  # the in-batch keys are this process's (not gathered), then the queue
            query_guides, guides = self.guide.views(batch, query.device, "query", "key")
            queued_guides = self.keys.guide_negatives() if queued is not None else None
            guided = {"guide": self.guide.negatives(query_guides, guides, queued_guides)}
        positive = torch.arange(n, device=query.device)
        roles = self.roles(positive, mine, mine, stored=stored, paired_columns=n, **guided)
        columns = key if queued is None else torch.cat([key, queued.to(key.dtype)])
        out = self.contrast(query, columns, roles, queue_start=n if queued is not None else None)
        stats, loss = self._stats(query, key, out), out.loss
        if mixed is not None:  # i-Mix: the mixed view against the keys and the queue, its two sources' keys positive
            positive_b = torch.as_tensor(batch["mix_partner"]).to(query.device)
            mix = mixed_positive_loss(mixed, columns, positive, positive_b, batch["mix_lambda"].to(query.device),
                                      float(self.temperature or 0.2))  # fmt: skip
            stats["mix_loss"], loss = mix.detach(), loss + self.mix_weight * mix
        if self.training:
            self.keys.stage(key, self.queue_values(mine), guides)
        return ObjectiveOutput(loss, stats)

    def _contrast(self, query: Tensor, key: Tensor, batch: Mapping[str, Any], views: tuple[str, str]) -> LossOutput:
        """v3: one direction, ``query`` rows (of view ``views[0]``) against the keys (``views[1]``) of every process."""
        keys = gather(key, enabled=self.gather)
        mine = self.examples(batch, query.shape[0], query.device)
        guided = self.guided(batch, query.device, views[:1], views[1:])
        return self.contrast(query, keys.tensor, self.roles(keys.labels(), mine, self.gathered(mine), **guided))

    def _forward_v3(self, view1: Tensor, view2: Tensor, batch: Mapping[str, Any]) -> ObjectiveOutput:
        assert self.predictor is not None
        q1, q2 = self.predictor.both(view1, view2)
        k1, k2 = self.key_encoder.embed_views(batch, ("query", "key"))
        first, second = self._contrast(q1, k2, batch, ("query", "key")), self._contrast(q2, k1, batch, ("key", "query"))
        loss = 2.0 * float(self.temperature or 0.0) * (first.loss + second.loss)
        return ObjectiveOutput(loss, self._stats(q1, k2, first))

    def _stats(self, query: Tensor, key: Tensor, out: LossOutput) -> dict[str, Tensor]:
        stats = self.loss_stats(query, key, out)
        stats["momentum"] = scalar_stat(self.key_encoder.momentum, query)
        return stats

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        self.key_encoder.update(model, step, max_steps)
        if self.keys is not None:
            self.keys.flush()
