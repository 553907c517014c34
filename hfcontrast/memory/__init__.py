"""Training memory for contrastive objectives: MoCo queue, momentum (EMA) update and schedule."""

from __future__ import annotations

from .mirror import host_scalar, refresh_host_scalars, register_host_scalar, set_host_scalar
from .momentum import cosine_momentum, ema_update_, make_momentum_copy
from .queue import EmbeddingQueue

__all__ = [
    "EmbeddingQueue", "cosine_momentum", "ema_update_", "host_scalar", "make_momentum_copy", "refresh_host_scalars",
    "register_host_scalar", "set_host_scalar",
]  # fmt: skip
