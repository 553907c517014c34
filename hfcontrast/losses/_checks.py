"""Private validation / dtype helpers shared by the loss functions.

Checks of a tensor's *values* (an index range, a temperature held in a tensor, every row having a positive)
read the device from the host: a host sync each. They run by default, so a direct call of a loss fails with a
clear message; :func:`value_checks` turns them off for a block, which ``ContrastiveTrainer`` does on every
training step after the first (the first step validates the set-up once).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor

from .types import Reduction

_CHECK_VALUES: ContextVar[bool] = ContextVar("hfcontrast_check_values", default=True)


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Within the block, the losses check tensor values (``True``, the default) or skip those checks."""
    token = _CHECK_VALUES.set(enabled)
    try:
        yield
    finally:
        _CHECK_VALUES.reset(token)


def checking_values() -> bool:
    """Whether checks that read tensor values on the host run here (see :func:`value_checks`); never while
    ``torch.compile`` traces a loss (a host read would break its graph)."""
    if torch.compiler.is_compiling():
        return False
    return _CHECK_VALUES.get()


def check_positive(name: str, value: float | Tensor) -> None:
    """Raise ``ValueError`` unless ``value`` (a float or single-element tensor) is > 0 (NaN is rejected)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a scalar (0-dim tensor or float), got shape {tuple(value.shape)}"
            )
        if not checking_values():
            return
        number = float(value.detach())
    else:
        number = float(value)
    if math.isnan(number) or number <= 0:
        raise ValueError(f"{name} must be > 0, got {number}")


def check_embeddings(name: str, x: Tensor, dim: int | None = None) -> None:
    """Require a floating ``[rows, dim]`` tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [batch, dim], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has embedding dim {x.shape[1]}, expected {dim}")


def compute_dtype(*xs: Tensor) -> torch.dtype:
    """Common floating dtype of ``xs``, at least fp32 (half / bfloat16 -> fp32, fp64 stays fp64)."""
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


def upcast(*xs: Tensor) -> tuple[Tensor, ...]:
    """Cast ``xs`` to their common compute dtype (see ``compute_dtype``)."""
    dtype = compute_dtype(*xs)
    return tuple(x.to(dtype) for x in xs)


def reduce(values: Tensor, reduction: Reduction) -> Tensor:
    """Apply ``mean`` / ``sum`` / ``none`` to a per-row loss vector."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def default_arange(name: str, n: int, upper: int, symbol: str, device: torch.device) -> Tensor:
    """The default index ``arange(n)`` of ``name`` into ``upper`` columns (``symbol``: their count's letter)."""
    if upper < n:
        raise ValueError(f"{name} defaults to arange(N) which needs {symbol} >= N, got N={n}, {symbol}={upper}")
    return torch.arange(n, device=device)


def check_index(name: str, index: Tensor, length: int, upper: int, upper_name: str) -> None:
    """Require a 1-D integer ``index`` of ``length`` entries, each in ``[0, upper)``."""
    if not isinstance(index, Tensor) or index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64/int32 tensor")
    if index.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(index.shape)}")
    if length and checking_values() and (int(index.min()) < 0 or int(index.max()) >= upper):
        raise ValueError(
            f"{name} values must lie in [0, {upper}) ({upper_name}), "
            f"got range [{int(index.min())}, {int(index.max())}]"
        )
