"""The process group as the objectives see it: size, rank, and the device its collectives run on.

NCCL (and the other accelerator-only backends) refuses CPU tensors, while gloo, which the CPU tests
use, accepts any. :func:`collective_device` is where a tensor must live before a collective; every
collective in :mod:`hfcontrast.distributed` moves its input there, so a statistic created on the CPU
cannot break a multi-GPU run that a CPU test would pass.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

#: Backends that only take accelerator tensors, and the device type each needs.
ACCELERATOR_BACKENDS = {"nccl": "cuda", "xccl": "xpu", "hccl": "hpu"}


def is_distributed() -> bool:
    """True when a default process group is initialised (and has more than one process)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def _accelerator_device(kind: str) -> torch.device:
    """This process's current device of type ``kind`` (``cuda``, ``xpu``, ``hpu``)."""
    return torch.device(kind, getattr(torch, kind).current_device())


def collective_device(tensor: torch.Tensor) -> torch.device:
    """The device a collective over ``tensor`` runs on: its own, unless the backend only takes
    accelerator tensors (NCCL: the current CUDA device). Mixed backends (``cpu:gloo,cuda:nccl``)
    take either, so the tensor stays where it is."""
    kind = ACCELERATOR_BACKENDS.get(str(dist.get_backend()).lower())
    if kind is None or tensor.device.type == kind:
        return tensor.device
    return _accelerator_device(kind)


def on_collective_device(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` moved (with its autograd history) to :func:`collective_device`."""
    return tensor.to(collective_device(tensor))
