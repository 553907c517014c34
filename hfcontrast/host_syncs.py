"""Count the host syncs of a piece of code: the points where the host waits for the device.

On a GPU, ``.item()``, ``bool(t)``, ``float(t)``, ``.tolist()``, boolean indexing and ``.nonzero()`` make
the host wait until every kernel queued before them has run, so the host stops queueing work while the
device drains. They are visible on a CPU too, as the ATen operators that read a tensor's values on the
host; :class:`HostSyncCounter` counts those operators with a ``TorchDispatchMode``:

* ``aten._local_scalar_dense``: ``.item()``, ``bool(t)``, ``int(t)``, ``float(t)``;
* ``aten.nonzero``: ``.nonzero()``, ``torch.where(mask)``;
* ``aten.index`` / ``aten.index_put`` with a boolean mask (``x[mask]``, ``x[mask] = v``): the mask's ``nonzero``
  runs inside the kernel, counted here as ``aten.index(bool)``;
* ``aten.equal``, ``aten.is_nonzero``;
* ``aten.masked_select``, ``aten._unique2``, ``aten.unique_consecutive`` and ``aten.unique_dim``, whose output
  size depends on the values.

``.tolist()`` and ``.numpy()`` on a CPU tensor read memory without an operator; on CUDA they copy to the
host first (``aten._to_copy``), which this counter, run on a CPU, cannot tell from a device-to-device copy:
keep them off the training step. The other way round, ``torch.tensor(value, device="cuda")`` copies a host
value to the device, which waits for the stream too; its ``aten.lift_fresh`` is counted apart, as
``literals`` (on a CPU run the literal may be harmless: a CPU tensor that stays on the CPU).

    with HostSyncCounter() as syncs:
        trainer.training_step(model, batch)
    print(syncs.total, syncs.by_site())
"""

from __future__ import annotations

import sys
import traceback
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = frozenset(
    {
        "aten._local_scalar_dense",
        "aten.nonzero",
        "aten.equal",
        "aten.is_nonzero",
        "aten.masked_select",
        "aten._unique2",
        "aten.unique_consecutive",
        "aten.unique_dim",
    }
)


_INDEXING = frozenset({"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"})


def _has_boolean_index(args: Any) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(getattr(index, "dtype", None) in (torch.bool, torch.uint8) for index in indices or ())


def _site() -> str:
    """The innermost frame outside torch and this module: ``package/file.py:line (function)``."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        path = frame.filename.replace("\\", "/")
        if "/torch/" in path or path.endswith("/host_syncs.py"):
            continue
        short = "/".join(path.split("/")[-2:])
        return f"{short}:{frame.lineno} ({frame.name})"
    return "?"


class HostSyncCounter(TorchDispatchMode):
    """Counts the operators of :data:`SYNC_OPS` run inside the ``with`` block.

    ``total``: how many; ``ops``: per operator; ``sites``: per call site (``record_sites=True``, the
    default, reads the Python stack at each sync: slow, and only at syncs)."""

    def __init__(self, record_sites: bool = True) -> None:
        super().__init__()
        self.record_sites = record_sites
        self.ops: Counter[str] = Counter()
        self.sites: Counter[str] = Counter()
        self.literal_sites: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def literals(self) -> int:
        """``torch.tensor(...)`` literals made inside the block (host values that a GPU run copies over)."""
        return sum(self.literal_sites.values())

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func.overloadpacket)
        if name == "aten.lift_fresh":
            self.literal_sites[_site() if self.record_sites else "?"] += 1
        elif name in SYNC_OPS or (name in _INDEXING and _has_boolean_index(args)):
            key = name if name in SYNC_OPS else f"{name}(bool)"
            self.ops[key] += 1
            if self.record_sites:
                self.sites[_site()] += 1
        return func(*args, **(kwargs or {}))

    def by_site(self) -> dict[str, int]:
        """``{site: count}``, most frequent first."""
        return dict(self.sites.most_common())

    def report(self, file: Any = None) -> None:
        """Print the total and the sites."""
        out = file or sys.stdout
        print(f"{self.total} host syncs", file=out)
        for site, count in self.sites.most_common():
            print(f"  {count:4d}  {site}", file=out)


def count_host_syncs(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, HostSyncCounter]:
    """``(fn(*args, **kwargs), counter)``."""
    with HostSyncCounter() as counter:
        result = fn(*args, **kwargs)
    return result, counter


__all__ = ["SYNC_OPS", "HostSyncCounter", "count_host_syncs"]
