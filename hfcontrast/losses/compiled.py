"""The pure losses, compiled with ``torch.compile`` on request.

:func:`compilable` marks a loss function; inside :func:`compiled_losses` (which ``ContrastiveTrainer`` enters
with ``torch_compile=True``) a call runs that function compiled with the given backend and mode, one compiled
version per function and setting, shapes made dynamic by dynamo after their first change (a queue that fills up,
a batch of other lengths). Outside the block, and inside a function being compiled already (a loss calling
another, or a compiled caller), the plain function runs, so nothing is compiled twice. The losses read no
tensor value on the host while compiling (:func:`~hfcontrast.losses._checks.checking_values` is off there): no
data-dependent graph break.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import torch

F = TypeVar("F", bound=Callable[..., Any])
_OPTIONS: ContextVar[tuple[str, str | None] | None] = ContextVar("hfcontrast_compiled_losses", default=None)


@contextlib.contextmanager
def compiled_losses(backend: str = "inductor", mode: str | None = None) -> Iterator[None]:
    """Within the block, :func:`compilable` losses run compiled (``torch.compile(fn, backend=..., mode=...)``)."""
    token = _OPTIONS.set((backend, mode))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


def compilable(fn: F) -> F:
    """Mark a pure loss function: compiled inside :func:`compiled_losses`, plain elsewhere."""
    compiled: dict[tuple[str, str | None], Callable[..., Any]] = {}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        options = _OPTIONS.get()
        if options is None:
            return fn(*args, **kwargs)
        if options not in compiled:
            compiled[options] = torch.compile(fn, backend=options[0], mode=options[1])
        return compiled[options](*args, **kwargs)

    return cast(F, wrapper)
