"""Objective state shared by every family: a momentum (EMA) encoder and a queue of past keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import gather_detached
from ..memory import (
    EmbeddingQueue,
    cosine_momentum,
    ema_update_,
    host_scalar,
    make_momentum_copy,
    register_host_scalar,
    set_host_scalar,
)
from .base import encode


def check_momentum(momentum: float, final_momentum: float | None) -> None:
    """``0 <= momentum <= final_momentum <= 1`` (``final_momentum`` None: constant ``momentum``)."""
    final = momentum if final_momentum is None else final_momentum
    if not 0.0 <= momentum <= final <= 1.0:
        raise ValueError(f"need 0 <= momentum <= final_momentum <= 1, got {momentum} and {final}")


class MomentumEncoder(nn.Module):
    """EMA copy of an encoder (He et al. 2020; Grill et al. 2020): ``theta_k <- m theta_k + (1-m) theta_q``.

    ``m`` follows BYOL's cosine schedule from ``momentum`` to ``final_momentum`` over training
    (constant when ``final_momentum`` is None). It is a submodule of the objective, so it is saved in
    trainer checkpoints, never wrapped by DDP and never exported with the model.
    """

    def __init__(self, online: nn.Module, momentum: float = 0.99, final_momentum: float | None = None) -> None:
        super().__init__()
        check_momentum(momentum, final_momentum)
        final = momentum if final_momentum is None else final_momentum
        self.encoder = make_momentum_copy(online)
        self.base_momentum, self.final_momentum = momentum, final
        register_host_scalar(self, "current_momentum", float(momentum))

    @torch.no_grad()
    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        self.encoder.train(self.training)
        return encode(self.encoder, inputs)

    @torch.no_grad()
    def embed_views(self, batch: Mapping[str, Any], names: Sequence[str]) -> list[Tensor]:
        """Embed views ``names`` of ``batch``, in one forward when they stack (as the trainer does for the
        online model, so both branches see the same BatchNorm batches)."""
        views = [batch[name] for name in names]
        keys = list(views[0])
        stackable = all(list(v) == keys for v in views) and all(
            v[k].shape[1:] == views[0][k].shape[1:] for v in views for k in keys
        )
        if not stackable:
            return [self(view) for view in views]
        merged = {k: torch.cat([view[k] for view in views]) for k in keys}
        sizes = [next(iter(view.values())).shape[0] for view in views]
        return list(torch.split(self(merged), sizes))

    @torch.no_grad()
    def update(self, online: nn.Module, step: int, max_steps: int) -> None:
        momentum = cosine_momentum(step, max_steps, self.base_momentum, self.final_momentum)
        ema_update_(self.encoder, online, momentum)
        set_host_scalar(self, "current_momentum", momentum)

    @property
    def momentum(self) -> float:
        """The momentum of the last update (the host's copy of ``current_momentum``)."""
        return float(host_scalar(self, "current_momentum"))


class KeyQueue(nn.Module):
    """An :class:`EmbeddingQueue` fed with keys gathered over processes, flushed after the optimizer step.

    ``stage`` collects the (gathered, detached) keys of each micro-batch; ``flush`` enqueues them once
    the step is taken, so every process holds the same queue and a gradient-accumulation step sees
    the same negatives in each of its micro-batches. With ``guide_dim`` a second queue holds a guide's
    embeddings of the same keys (GISTEmbed), in step with the first.
    """

    def __init__(self, size: int, dim: int, store_ids: bool = False, guide_dim: int | None = None) -> None:
        super().__init__()
        self.queue = EmbeddingQueue(size, dim, store_ids=store_ids)
        self.guides = EmbeddingQueue(size, guide_dim) if guide_dim is not None else None
        self._pending: list[tuple[Tensor, Tensor | None, Tensor | None]] = []

    def negatives(self) -> Tensor | None:
        return self.queue.get() if len(self.queue) else None

    def ids(self) -> Tensor | None:
        return self.queue.get_ids() if len(self.queue) else None

    def guide_negatives(self) -> Tensor | None:
        """The guide's embeddings of the queued keys, in the queue's order (``None`` without a guide)."""
        return self.guides.get() if self.guides is not None and len(self.guides) else None

    def stage(self, keys: Tensor, ids: Tensor | None = None, guides: Tensor | None = None) -> None:
        if (guides is None) != (self.guides is None):
            raise ValueError("a queue built with guide_dim stages the guide's embeddings with every key (and only then)")
        gathered_ids = gather_detached(ids) if ids is not None else None
        gathered_guides = gather_detached(guides) if guides is not None else None
        self._pending.append((gather_detached(keys), gathered_ids, gathered_guides))

    def flush(self) -> None:
        for keys, ids, guides in self._pending:
            self.queue.enqueue(keys, ids)
            if self.guides is not None and guides is not None:
                self.guides.enqueue(guides)
        self._pending.clear()

    def __len__(self) -> int:
        return len(self.queue)
