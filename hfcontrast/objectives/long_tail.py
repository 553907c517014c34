"""Supervised contrastive objectives for long-tailed classes: KCL (Kang et al. 2021) and BCL (Zhu et al. 2022),
over views ``query`` and ``key`` and the labels the collator emits (``batch["labels"]``).

Both losses read the whole batch's classes, so under several processes they see the **global** batch: the
embeddings gathered with gradient, the labels without, the same loss on every process (whose gradient DDP's
average turns into one process's over the concatenated batch, as for Barlow Twins). Their state is in every
checkpoint, so a resumed run continues exactly: KCL's draws are seeded by ``(seed, optimizer step)``; BCL's class
centres are buffers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import gather_detached, gather_with_grad, is_distributed
from ..losses.long_tail import bcl_loss, kcl_loss
from ..memory.mirror import host_scalar, register_host_scalar, set_host_scalar
from .base import ContrastiveObjective, ObjectiveOutput, embedding_width, pair_stats


class _LongTail(ContrastiveObjective):
    online_views = ("query", "key")
    augmentation = "simclr"

    def __init__(self, temperature: float, gather: bool) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__()
        self.temperature, self.gather = temperature, gather

    def global_batch(self, embeddings: Mapping[str, Tensor], batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """``(features [B, 2, D], labels [B])`` over every process's rows (the features with gradient)."""
        if "labels" not in batch:
            raise KeyError(f"{type(self).__name__} needs batch['labels']: give the collator a label_column")
        z1, z2 = embeddings["query"], embeddings["key"]
        labels = batch["labels"].to(z1.device)
        if self.gather:
            z1, z2, labels = gather_with_grad(z1)[0], gather_with_grad(z2)[0], gather_detached(labels)
        return torch.stack([z1, z2], dim=1), labels.to(z1.device)

    @staticmethod
    def stats(features: Tensor) -> dict[str, Tensor]:
        return pair_stats(features[:, 0], features[:, 1], None, None)


class KCL(_LongTail):
    """KCL: SupCon with ``k`` positives of the anchor's class drawn at random besides its other view
    (:func:`~hfcontrast.losses.long_tail.kcl_loss`).

    Args:
        k: positives drawn per anchor (paper: 6).
        temperature: ``tau``.
        seed: the draws' seed; each optimizer step draws anew, from ``(seed, step)``.
        gather: the positives and the denominator from every process's rows.
    """

    tag = "kcl"

    def __init__(self, k: int = 6, temperature: float = 0.1, *, seed: int = 0, gather: bool = True) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        super().__init__(temperature, gather)
        self.k, self.seed = k, seed
        register_host_scalar(self, "step", 0)
        self.bind()  # nothing depends on the model

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        features, labels = self.global_batch(embeddings, batch)
        rows = features.shape[0] * features.shape[1]
        generator = torch.Generator(device=features.device).manual_seed(self.seed * 1_000_003 + host_scalar(self, "step"))
        noise = torch.rand(rows, rows, generator=generator, device=features.device)
        return ObjectiveOutput(kcl_loss(features, labels, self.k, noise, self.temperature), self.stats(features))

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        set_host_scalar(self, "step", step)


class BCL(_LongTail):
    """BCL: class-averaged denominators with a prototype per class in every batch
    (:func:`~hfcontrast.losses.long_tail.bcl_loss`). The prototypes are class centres: each class's mean embedding
    (unit length) over the batches, an exponential moving average updated after every optimizer step; a class
    takes part once it has been seen. (The paper learns its prototypes from a classifier's weights, trained with a
    logit-adjusted cross-entropy branch; this is its contrastive branch with moving-average centres.)

    Args:
        num_classes: classes (labels in ``[0, num_classes)``).
        temperature: ``tau``.
        centre_momentum: ``m`` in ``c_j <- normalize(m c_j + (1 - m) mean_j)``.
        embedding_dim / encoder: the training-time embedding's width (the centres').
        gather: the batch and the centres' update from every process's rows.
    """

    tag = "bcl"
    centres: Tensor
    seen: Tensor
    _sums: Tensor
    _counts: Tensor

    def __init__(
        self,
        num_classes: int,
        temperature: float = 0.1,
        centre_momentum: float = 0.9,
        *,
        embedding_dim: int | None = None,
        encoder: nn.Module | None = None,
        gather: bool = True,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= centre_momentum < 1.0:
            raise ValueError(f"centre_momentum must be in [0, 1), got {centre_momentum}")
        super().__init__(temperature, gather)
        self.num_classes, self.centre_momentum, self.embedding_dim = num_classes, centre_momentum, embedding_dim
        if encoder is not None or embedding_dim is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The class centres (state) and the sums staged for the next update (not state: empty at a checkpoint)."""
        width = embedding_width(encoder, self.embedding_dim, "BCL")
        self.register_buffer("centres", torch.zeros(self.num_classes, width))
        self.register_buffer("seen", torch.zeros(self.num_classes, dtype=torch.bool))
        self.register_buffer("_sums", torch.zeros(self.num_classes, width), persistent=False)
        self.register_buffer("_counts", torch.zeros(self.num_classes), persistent=False)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        if not self.gather and is_distributed():
            raise ValueError("BCL(gather=False) on several processes: each would move its own class centres apart")
        features, labels = self.global_batch(embeddings, batch)
        centres = self.centres.to(features.device)
        loss = bcl_loss(features, labels, self.num_classes, centres, self.seen.to(features.device), self.temperature)
        if self.training:  # stage this batch's class sums for the update after the step
            onehot = F.one_hot(labels.long(), self.num_classes).float().repeat(features.shape[1], 1)
            rows = F.normalize(features.detach().float().transpose(0, 1).reshape(onehot.shape[0], -1), dim=-1)
            self._sums += (onehot.T @ rows).to(self._sums)
            self._counts += onehot.sum(0).to(self._counts)
        stats = self.stats(features) | {"classes_seen": self.seen.float().sum().to(loss)}
        return ObjectiveOutput(loss, stats)

    @torch.no_grad()
    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        """``c_j <- normalize(m c_j + (1 - m) mean_j)`` for each class in the step's batches (a first sighting:
        ``normalize(mean_j)``)."""
        present = self._counts > 0
        mean = self._sums / self._counts.clamp(min=1)[:, None]
        momentum = torch.where(self.seen, self.centre_momentum, 0.0)[:, None]
        updated = F.normalize(momentum * self.centres + (1 - momentum) * mean, dim=-1)
        self.centres.copy_(torch.where(present[:, None], updated, self.centres))
        self.seen |= present
        self._sums.zero_()
        self._counts.zero_()
