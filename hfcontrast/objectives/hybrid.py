"""The supervised hybrid (the survey's "supervised mixed loss"): SupCon together with a classifier's cross-entropy.

``L_t = (1 - w_t) L_SupCon + w_t L_CE``, the weight moving from the contrastive term to the classifier over
training: ``w_t = t / T`` (``linear``) or ``(1 - cos(pi t / T)) / 2`` (``cosine``), ``t`` the optimizer steps done
and ``T`` the run's. SupCon (Khosla et al. 2020) is :class:`~hfcontrast.objectives.SimCLR` with same-label
positives; the cross-entropy is a linear classifier's over both views' embeddings, as Gunel et al. 2021
(*Supervised Contrastive Learning for Pre-trained Language Model Fine-tuning*) combine the two, here with a
schedule instead of their fixed weight. The weight is objective state (in every checkpoint), so a resumed run
continues the schedule where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..memory.mirror import host_scalar, register_host_scalar, set_host_scalar
from .base import ContrastiveObjective, ObjectiveOutput, embedding_width, scalar_stat
from .config import NegativeConfig
from .simclr import SimCLR

SCHEDULES = ("linear", "cosine", "constant")


def ce_weight(progress: float, schedule: str, constant: float = 0.5) -> float:
    """The cross-entropy's weight at ``progress = t / T`` in ``[0, 1]`` (``constant``: that weight throughout)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return progress
    if schedule == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    return constant


class SupervisedHybrid(ContrastiveObjective):
    """SupCon plus a linear classifier's cross-entropy over views ``query`` and ``key`` (labels: ``batch["labels"]``,
    which the collator emits with its ``label_column``).

    Args:
        num_classes: the classifier's classes (labels in ``[0, num_classes)``).
        temperature: SupCon's ``tau``.
        schedule: ``linear`` / ``cosine`` (``w`` from 0 to 1 over the run), or ``constant`` (``w = weight``).
        weight: the constant schedule's ``w``.
        embedding_dim / encoder: the width of the training-time embedding (the classifier's input).
        gather: SupCon's negatives and positives from every process, as :class:`SimCLR`'s.
    """

    online_views = ("query", "key")
    augmentation = "simclr"
    tag = "supcon-ce"
    classifier: nn.Linear

    def __init__(
        self,
        num_classes: int,
        temperature: float = 0.1,
        schedule: str = "linear",
        weight: float = 0.5,
        *,
        embedding_dim: int | None = None,
        encoder: nn.Module | None = None,
        gather: bool = True,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        super().__init__()
        self.num_classes, self.schedule, self.weight, self.embedding_dim = num_classes, schedule, weight, embedding_dim
        self.supcon = SimCLR(temperature, gather=gather, negatives=NegativeConfig(supervised=True))
        register_host_scalar(self, "ce_weight", ce_weight(0.0, schedule, weight))
        if encoder is not None or embedding_dim is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The linear classifier, as wide as the training-time embedding."""
        self.classifier = nn.Linear(embedding_width(encoder, self.embedding_dim, "SupervisedHybrid"), self.num_classes)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        contrast = self.supcon(embeddings, batch)
        labels = batch["labels"].to(embeddings["query"].device)
        logits = self.classifier(torch.cat([embeddings["query"], embeddings["key"]]).to(self.classifier.weight.dtype))
        targets = torch.cat([labels, labels])
        cross_entropy = F.cross_entropy(logits, targets)
        w = host_scalar(self, "ce_weight")
        loss = (1.0 - w) * contrast.loss + w * cross_entropy
        stats = contrast.stats | {
            "supcon": contrast.loss.detach(), "cross_entropy": cross_entropy.detach(), "ce_weight": scalar_stat(w, loss),
            "class_top1": (logits.detach().argmax(-1) == targets).float().mean(),
        }  # fmt: skip
        return ObjectiveOutput(loss, stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        """The weight for the next step: ``w(step / max_steps)``."""
        set_host_scalar(self, "ce_weight", ce_weight(step / max(max_steps, 1), self.schedule, self.weight))
