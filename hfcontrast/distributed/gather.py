"""Cross-process gather with gradient, and the label offset of this process's rows.

Every objective that needs negatives from other processes calls :func:`gather_with_grad` and uses the
returned offset as the label offset of its local rows. Without an initialised process group both
functions are no-ops, so the same objective code runs on one process.

Why the gradients match a single process over the concatenated batch: rank ``r`` computes the loss of
its own rows ``L_r`` against the gathered columns. The backward of the gather sums, on each rank, the
gradient that every rank's ``L_r`` sends to that rank's embeddings. DDP then averages the parameter
gradients over ranks, giving ``(1/W) sum_r dL_r/dtheta``, which is the gradient of the mean of the local
losses, i.e. of the global mean loss when every rank holds the same number of rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .groups import is_distributed, on_collective_device

_EQUAL_BATCHES: ContextVar[bool] = ContextVar("hfcontrast_equal_batches", default=False)


@contextlib.contextmanager
def equal_batches(enabled: bool = True) -> Iterator[None]:
    """Within the block every process gathers the same number of rows (accelerate's ``even_batches``,
    which :class:`~hfcontrast.trainer.ContrastiveTrainer` turns into this): gathers then skip the
    exchange of sizes, one collective and one host synchronisation fewer per gather."""
    token = _EQUAL_BATCHES.set(enabled)
    try:
        yield
    finally:
        _EQUAL_BATCHES.reset(token)


def _gather_sizes(local_rows: int, device: torch.device) -> list[int]:
    if _EQUAL_BATCHES.get():
        return [local_rows] * dist.get_world_size()
    size = torch.tensor([local_rows], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient for the local slice."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        max_rows = max(sizes)
        padded = tensor
        if tensor.shape[0] < max_rows:
            pad = tensor.new_zeros((max_rows - tensor.shape[0], *tensor.shape[1:]))
            padded = torch.cat([tensor, pad])
        buckets = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buckets, padded.contiguous())
        return torch.cat([bucket[:rows] for bucket, rows in zip(buckets, sizes)])

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        grad = grad_output.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``tensor`` from every process along dim 0, keeping the autograd graph.

    Returns ``(gathered, offset)`` where ``offset`` is the index of this process's first row inside
    ``gathered`` (``rank * local_batch`` for equal batches): the label offset for local-loss
    formulations. Local batches may differ in size. The result lives on the process group's device
    (:func:`~hfcontrast.distributed.groups.collective_device`). Without a process group: ``(tensor, 0)``.
    """
    if not is_distributed():
        return tensor, 0
    tensor = on_collective_device(tensor)
    sizes = _gather_sizes(tensor.shape[0], tensor.device)
    offset = sum(sizes[: dist.get_rank()])
    if not tensor.requires_grad:
        with torch.no_grad():
            return _GatherWithGrad.apply(tensor, sizes), offset
    return _GatherWithGrad.apply(tensor, sizes), offset


def gather_detached(tensor: torch.Tensor) -> torch.Tensor:
    """Gather without gradient (e.g. momentum keys going into a queue)."""
    with torch.no_grad():
        gathered, _ = gather_with_grad(tensor.detach())
    return gathered


@dataclass(frozen=True)
class Gathered:
    """Rows of every process (``tensor``), this process's ``rows`` of them starting at ``offset``."""

    tensor: torch.Tensor
    offset: int
    rows: int

    def labels(self, shift: int = 0) -> torch.Tensor:
        """Column index of each local row in ``tensor`` (``arange(rows) + offset``), plus ``shift``
        (the start of this block among a loss's columns): the positive index of local-loss forms."""
        return torch.arange(self.rows, device=self.tensor.device) + (self.offset + shift)


def gather(tensor: torch.Tensor, *, enabled: bool = True) -> Gathered:
    """:func:`gather_with_grad` as a :class:`Gathered` (``enabled=False``: this process's rows only)."""
    if not enabled:
        return Gathered(tensor, 0, tensor.shape[0])
    gathered, offset = gather_with_grad(tensor)
    return Gathered(gathered, offset, tensor.shape[0])
