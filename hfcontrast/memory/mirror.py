"""Scalars the host reads every step, kept as Python numbers and mirrored into checkpointed buffers.

A queue's fill level, a step counter or a momentum value is read on the host at every step (to slice a
queue, to pick a temperature, to decide a branch). Read from a device tensor, each read is a host sync
(``.item()``). Here the Python number is the one read; every write also goes to a 0-d buffer with
``fill_`` (a kernel, no sync), so ``state_dict`` and checkpoints carry it, and a ``load_state_dict`` of the
module (or of any module holding it) reads the buffers back into the Python numbers, once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_MIRRORS = "_host_scalars"


def _refresh(module: nn.Module, incompatible_keys: Any = None) -> None:
    mirrors: dict[str, int | float] = getattr(module, _MIRRORS)
    for name, value in mirrors.items():
        buffer = getattr(module, name)
        mirrors[name] = int(buffer.item()) if isinstance(value, int) else float(buffer.item())


def register_host_scalar(module: nn.Module, name: str, value: int | float) -> None:
    """A persistent 0-d buffer ``name`` (int64 for an ``int``, float32 for a ``float``) and its Python mirror,
    read with :func:`host_scalar` and written with :func:`set_host_scalar`."""
    if _MIRRORS not in module.__dict__:
        object.__setattr__(module, _MIRRORS, {})
        module.register_load_state_dict_post_hook(_refresh)
    dtype = torch.long if isinstance(value, int) else torch.float32
    module.register_buffer(name, torch.tensor(value, dtype=dtype))
    getattr(module, _MIRRORS)[name] = value


def host_scalar(module: nn.Module, name: str) -> Any:
    """The Python value of ``name`` (no device read)."""
    return getattr(module, _MIRRORS)[name]


def set_host_scalar(module: nn.Module, name: str, value: int | float) -> None:
    """Set the Python value and write it into the buffer (``fill_``: queued on the device, no sync)."""
    mirrors = getattr(module, _MIRRORS)
    mirrors[name] = type(mirrors[name])(value)
    getattr(module, name).fill_(value)


def refresh_host_scalars(module: nn.Module) -> None:
    """Read every mirrored buffer of ``module`` and its submodules back (after writing the buffers directly,
    e.g. a ``copy_`` from another process)."""
    for sub in module.modules():
        if _MIRRORS in sub.__dict__:
            _refresh(sub)
