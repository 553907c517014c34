"""Training memory for contrastive objectives: MoCo queue, momentum (EMA) update and schedule."""

from __future__ import annotations

from .momentum import cosine_momentum, ema_update_, make_momentum_copy
from .queue import EmbeddingQueue

__all__ = ["EmbeddingQueue", "cosine_momentum", "ema_update_", "make_momentum_copy"]
