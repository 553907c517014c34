"""Distributed bookkeeping (gather with gradient, rank offsets, reductions), written once for every objective.

This is the only package that calls ``torch.distributed`` collectives; each moves its input to the
process group's device first (:func:`collective_device`), as NCCL requires.
"""

from .gather import Gathered, equal_batches, gather, gather_detached, gather_with_grad
from .groups import collective_device, is_distributed, rank, world_size
from .reduce import all_reduce_mean, all_reduce_sum, broadcast_object, broadcast_tensor

__all__ = [
    "Gathered",
    "all_reduce_mean",
    "all_reduce_sum",
    "broadcast_object",
    "broadcast_tensor",
    "collective_device",
    "equal_batches",
    "gather",
    "gather_detached",
    "gather_with_grad",
    "is_distributed",
    "rank",
    "world_size",
]
