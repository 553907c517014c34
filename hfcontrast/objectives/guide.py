"""Frozen models an objective reads but never trains: a distillation teacher, a GISTEmbed guide.

Their embeddings come from the batch when the collator passes them (``batch["<prefix>_<view>"]``, computed
once ahead of time and cached: :func:`hfcontrast.distillation.add_teacher_embeddings`), else from the model
run on the student's own views without gradient (then it must read the same inputs: the same tokenizer).
The model is a plain reference, not a submodule: never trained, never checkpointed, never exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import gather_detached
from ..losses import GuidedNegatives, MarginStrategy
from .base import Encoder, encode


class FrozenViews:
    """Embeddings of named views by a frozen ``model`` (or the batch's ``<prefix>_<view>`` tensors)."""

    def __init__(self, model: nn.Module | None, prefix: str, owner: str) -> None:
        if model is not None:
            model.requires_grad_(False).eval()
        self.model, self.prefix, self.owner = model, prefix, owner
        self._batch: Mapping[str, Any] | None = None
        self._embedded: dict[str, Tensor] = {}

    def __call__(self, view: str, batch: Mapping[str, Any], device: torch.device) -> Tensor:
        """``batch["<prefix>_<view>"]`` when the collator passes it, else the model on ``batch[view]`` (once per
        batch and view: an objective that reads a view twice runs the model once)."""
        if batch is not self._batch:
            self._batch, self._embedded = batch, {}
        if view not in self._embedded:
            self._embedded[view] = self._embed(view, batch, device)
        return self._embedded[view]

    def _embed(self, view: str, batch: Mapping[str, Any], device: torch.device) -> Tensor:
        given = batch.get(f"{self.prefix}_{view}")
        if isinstance(given, Tensor):
            return given.to(device)
        if self.model is None:
            raise ValueError(
                f"{self.owner} needs the {self.prefix}'s view {view!r}: batch['{self.prefix}_{view}'] from the "
                f"collator (embeddings computed ahead of time), or {self.prefix}=<an encoder>"
            )
        with torch.no_grad():
            self.model.to(device)
            return encode(self.model, {k: v.to(device) for k, v in batch[view].items()})


class Guide(FrozenViews):
    """GISTEmbed's guide (Solatorio 2024): candidates the guide scores above the row's positive (less a margin)
    are ignored, in the batch, across processes and in the queue (formula: :mod:`hfcontrast.losses.guided`).

    Pass it to any InfoNCE-family objective (``SimCSE(guide=Guide(model))``). Its embeddings of the objective's
    views come from ``batch["guide_<view>"]`` (``TextPairCollator(guide_embeddings=True)`` after
    :func:`~hfcontrast.distillation.add_teacher_embeddings` with ``prefix="guide"``) or from ``model``.

    Args:
        model: a frozen encoder (``model(**view, use_head=True).embeddings``) run on the objective's views.
        margin / margin_strategy: ignore ``j`` when ``g_ij > g_ip - margin`` (``"absolute"``) or
            ``g_ij > g_ip (1 - margin)`` (``"relative"``); ``margin=0`` is the paper's rule.
        dim: the width of the guide's embeddings, for an objective with a queue when ``model`` is ``None``.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        margin: float = 0.0,
        margin_strategy: MarginStrategy = "absolute",
        dim: int | None = None,
    ) -> None:
        super().__init__(model, "guide", "the guide (GISTEmbed)")
        if margin_strategy not in ("absolute", "relative"):
            raise ValueError(f"Guide.margin_strategy must be 'absolute' or 'relative', got {margin_strategy!r}")
        if margin < 0:
            raise ValueError(f"Guide.margin must be >= 0, got {margin}")
        self.margin, self.margin_strategy, self.dim = float(margin), margin_strategy, dim

    @property
    def width(self) -> int:
        """The width of the guide's embeddings (``dim``, else the model's ``train_embedding_dim``)."""
        if self.dim is not None:
            return int(self.dim)
        if isinstance(self.model, Encoder):
            return int(self.model.train_embedding_dim)
        raise ValueError("a queue stores the guide's embeddings of its keys: pass Guide(dim=<their width>)")

    def views(self, batch: Mapping[str, Any], device: torch.device, *names: str, gather: bool = False) -> list[Tensor]:
        """The guide's embeddings of views ``names``; with ``gather``, those of every process (no gradient)."""
        embedded = [self(name, batch, device).detach() for name in names]
        return [gather_detached(e) for e in embedded] if gather else embedded

    def negatives(self, rows: Tensor, *columns: Tensor | None) -> GuidedNegatives:
        """:class:`GuidedNegatives` of ``rows`` against the column blocks ``columns`` (in the loss's column order)."""
        blocks = [c.to(rows.device) for c in columns if c is not None]
        return GuidedNegatives(rows, torch.cat(blocks) if len(blocks) > 1 else blocks[0], self.margin, self.margin_strategy)
