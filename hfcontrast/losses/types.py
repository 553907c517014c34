"""Shared result type and literal aliases for the pure loss functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

Similarity = Literal["cosine", "dot"]
Reduction = Literal["mean", "sum", "none"]


@dataclass
class LossOutput:
    """Result of a loss function.

    ``loss`` is a scalar for ``reduction="mean"|"sum"`` and ``[N]`` for ``"none"``.
    ``logits`` (fp32 or wider) and ``labels`` are the classification problem the loss solved
    (``None`` when the loss has none); ``stats`` holds extra named tensors (e.g. per-direction
    losses), detached unless documented otherwise.
    """

    loss: Tensor
    logits: Tensor | None = None
    labels: Tensor | None = None
    stats: dict[str, Tensor] = field(default_factory=dict)
