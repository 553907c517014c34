"""Diagnostics for a quality gap against a peer: give the peer our crops, or exactly our batches.

* ``pipeline_transform``: our Pillow pipelines as the peer's per-image transform (same distribution, the
  peer's own random stream): separates the augmentation from the loss and the loop;
* ``recording`` + ``replayed``: our collator saves every batch it builds, in order; the peer then trains on
  exactly those tensors. With the same initial weights, the two loss curves must agree from the first step
  (to float rounding) if the two implementations compute the same thing.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any


def pipeline_transform(view: Any, local: Any | None, local_crops: int, seed: int) -> Any:
    """``image -> [global, global, local x local_crops]`` from our pipelines, with one seeded stream."""
    rng = random.Random(seed)

    def transform(image: Any) -> list[Any]:
        crops = [view(image, rng), view(image, rng)]
        return crops + ([local(image, rng) for _ in range(local_crops)] if local is not None else [])

    return transform


def recording(collator: Any, folder: Path) -> Any:
    """``collator``, also saving each batch's views (in ``collator.view_names`` order) to ``folder``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    count = [0]

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collator(features)
        torch.save([batch[n]["pixel_values"] for n in collator.view_names], folder / f"batch_{count[0]:05d}.pt")
        count[0] += 1
        return batch

    return collate


def replayed(folder: Path) -> list[Any]:
    """The batches ``recording`` saved, in order (a list of view tensors per batch)."""
    import torch

    return [torch.load(f) for f in sorted(folder.glob("batch_*.pt"))]
