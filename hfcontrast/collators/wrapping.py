"""A collator that adds views to another's batch and is that collator in every other respect."""

from __future__ import annotations

from typing import Any

from .images import MultiViewCollator


class WrappingCollator:
    """Builds on ``inner``'s batch; every attribute it does not set (``row_spec``, ``set_epoch``, ``epoch``,
    ``eval_collator``, ...) is ``inner``'s, so the trainer's row checks and epoch callback see the inner collator."""

    inner: MultiViewCollator

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)
