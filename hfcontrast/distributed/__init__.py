"""Distributed bookkeeping (gather with gradient, rank offsets), written once for every objective."""

from .gather import all_reduce_mean, gather_detached, gather_with_grad, is_distributed, rank, world_size

__all__ = ["all_reduce_mean", "gather_detached", "gather_with_grad", "is_distributed", "rank", "world_size"]
