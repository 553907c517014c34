"""MoCo-style embedding queue (He et al., 2020, "Momentum Contrast for Unsupervised Visual
Representation Learning") kept as a ring buffer of persistent buffers.

The queue holds the keys of the last ``size`` enqueued rows. Because every piece of state
(``embeddings``, ``ptr``, ``filled`` and optionally ``ids``) is a persistent buffer, the queue is
saved in ``objective.state_dict()`` and restored on resume, and it follows ``.to(device)``. ``ptr`` and
``filled`` are read on the host as Python ints (:mod:`hfcontrast.memory.mirror`), never from the device.

Slot order
----------
Keys are written one after another starting at slot ``ptr`` and wrapping around, exactly as if
they were written one at a time. Hence:

* while the queue is not full, the valid slots are ``0 .. filled-1`` in insertion order (oldest
  first), and ``ptr == filled``;
* once full, every slot is valid; the oldest key is at slot ``ptr`` and the newest at
  ``(ptr - 1) % size``.

:meth:`EmbeddingQueue.get` returns the valid keys in **slot order** (deterministic; oldest-first
order, if needed, is ``get().roll(-int(queue.ptr), 0)`` once full). Contrastive losses treat the
queue as an unordered set of negatives, so slot order is all they need.

No torch.distributed here: callers enqueue keys that they have already gathered across ranks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mirror import host_scalar, register_host_scalar, set_host_scalar

__all__ = ["EmbeddingQueue"]


class EmbeddingQueue(nn.Module):
    """Ring buffer of the last ``size`` keys ``[size, dim]`` (float32), optionally with row ids.

    Buffers (all persistent, so all in ``state_dict``):

    * ``embeddings``: ``[size, dim]`` float32, zeros in empty slots;
    * ``ptr``: long scalar, the next slot to write;
    * ``filled``: long scalar, the number of valid slots (``min(size, keys enqueued so far)``);
    * ``ids``: ``[size]`` long, ``-1`` for "no id" (only when ``store_ids=True``).

    The queue starts empty (never random-initialised): losses see only ``get()``, i.e. the
    ``filled`` valid keys, so no fake negatives are ever used. Any ``size >= 1`` works; the batch
    size need not divide it.
    """

    embeddings: Tensor
    ptr: Tensor
    filled: Tensor
    ids: Tensor | None

    def __init__(self, size: int, dim: int, store_ids: bool = False) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"EmbeddingQueue size must be an int >= 1, got {size!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"EmbeddingQueue dim must be an int >= 1, got {dim!r}")
        self.size = size
        self.dim = dim
        self.store_ids = bool(store_ids)
        self.register_buffer("embeddings", torch.zeros(size, dim, dtype=torch.float32))
        # Read on the host every step: Python ints, mirrored into the checkpointed buffers (no .item()).
        register_host_scalar(self, "ptr", 0)
        register_host_scalar(self, "filled", 0)
        if self.store_ids:
            self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        else:
            self.register_buffer("ids", None)

    @torch.no_grad()
    def enqueue(self, keys: Tensor, ids: Tensor | None = None) -> None:
        """Write ``keys [b, dim]`` (and ``ids [b]``) at ``ptr``, wrapping around.

        Keys are detached and cast to the buffer dtype (float32). If ``b > size`` only the last
        ``size`` keys (the newest) are kept, landing in the slots they would occupy had all ``b``
        been written one by one; ``ptr`` advances by ``b`` (mod ``size``) and
        ``filled = min(size, filled + b)``. With ``store_ids=True`` and ``ids=None`` the new slots
        get id ``-1``. Sync-free: the slots come from the host's copy of ``ptr``.
        """
        if not isinstance(keys, Tensor):
            raise TypeError(f"enqueue: keys must be a torch.Tensor, got {type(keys).__name__}")
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"enqueue: keys must have shape [batch, {self.dim}], got {list(keys.shape)}")
        if not keys.is_floating_point():
            raise TypeError(f"enqueue: keys must be a real floating tensor, got dtype {keys.dtype}")
        b = keys.shape[0]
        if ids is not None:
            if not self.store_ids:
                raise ValueError("enqueue: ids were given but this queue was built with store_ids=False")
            if not isinstance(ids, Tensor):
                raise TypeError(f"enqueue: ids must be a torch.Tensor, got {type(ids).__name__}")
            if ids.dim() != 1 or ids.shape[0] != b:
                raise ValueError(
                    f"enqueue: ids must have shape [{b}] to match keys {list(keys.shape)}, "
                    f"got {list(ids.shape)}"
                )
            if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise TypeError(f"enqueue: ids must be an integer tensor, got dtype {ids.dtype}")
        if b == 0:
            return
        n = min(b, self.size)
        device = self.embeddings.device
        new_keys = keys.detach()[b - n :].to(device=device, dtype=self.embeddings.dtype)
        # The kept keys are the last n of b written from ptr: they start at slot ptr + (b - n).
        ptr = host_scalar(self, "ptr")
        slots = (torch.arange(n, device=device) + (ptr + b - n)) % self.size
        self.embeddings.index_copy_(0, slots, new_keys)
        if self.ids is not None:
            if ids is None:
                new_ids = torch.full((n,), -1, dtype=torch.long, device=device)
            else:
                new_ids = ids.detach()[b - n :].to(device=device, dtype=torch.long)
            self.ids.index_copy_(0, slots, new_ids)
        set_host_scalar(self, "ptr", (ptr + b) % self.size)
        set_host_scalar(self, "filled", min(self.size, host_scalar(self, "filled") + b))

    def get(self) -> Tensor:
        """Valid keys ``[filled, dim]`` in slot order (see module docstring), no grad.

        Returns a copy, so a later :meth:`enqueue` (an in-place write) cannot invalidate an
        autograd graph that used the returned tensor (the MoCo ``queue.clone().detach()`` idiom).
        """
        return self.embeddings[: len(self)].detach().clone()

    def get_ids(self) -> Tensor:
        """Ids ``[filled]`` of the valid keys, aligned with :meth:`get` (``-1`` = no id)."""
        if self.ids is None:
            raise ValueError("get_ids: this queue was built with store_ids=False")
        return self.ids[: len(self)].detach().clone()

    def valid_mask(self) -> Tensor:
        """Bool ``[size]``: True for slots that hold an enqueued key (the first ``filled`` slots)."""
        return torch.arange(self.size, device=self.filled.device) < self.filled

    def __len__(self) -> int:
        return int(host_scalar(self, "filled"))

    @property
    def is_full(self) -> bool:
        """True once ``size`` keys have been enqueued since the last :meth:`reset`."""
        return len(self) == self.size

    @torch.no_grad()
    def reset(self) -> None:
        """Empty the queue: zero embeddings, ``ptr = filled = 0``, ids ``-1``."""
        self.embeddings.zero_()
        set_host_scalar(self, "ptr", 0)
        set_host_scalar(self, "filled", 0)
        if self.ids is not None:
            self.ids.fill_(-1)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, store_ids={self.store_ids}, filled={len(self)}"
