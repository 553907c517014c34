"""All-reduce and broadcast: logging, the objective's own gradients, shared decisions (device-correct under NCCL)."""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.distributed as dist

from .groups import is_distributed, on_collective_device

T = TypeVar("T")


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum of a (detached) tensor over processes, on the collective's device; identity on one process."""
    if not is_distributed():
        return value
    value = on_collective_device(value.detach()).clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over processes, on the collective's device; identity on one process."""
    if not is_distributed():
        return value
    return all_reduce_sum(value) / dist.get_world_size()


def broadcast_tensor(value: torch.Tensor, source: int = 0) -> torch.Tensor:
    """Process ``source``'s tensor on every process (same shape and dtype everywhere), on the collective's
    device; identity on one process."""
    if not is_distributed():
        return value
    value = on_collective_device(value.detach()).clone()
    dist.broadcast(value, src=source)
    return value


def broadcast_object(value: T, source: int = 0) -> T:
    """Process ``source``'s ``value`` on every process (a decision one process makes for all of them);
    identity on one process."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]  # type: ignore[return-value]
