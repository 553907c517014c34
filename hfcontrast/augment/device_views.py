"""Views built on the training device: the dataloader ships raw images, kornia augments the batch there.

With Pillow, every view of every image is made on a CPU core in a dataloader worker; a GPU can
outrun many workers. :class:`DeviceViews` takes a batch whose ``images`` view holds ``uint8``
``[B, 3, H, W]`` pixels (:class:`~hfcontrast.collators.RawImageCollator`) and replaces it with the named
views, each drawn by a :class:`~hfcontrast.augment.kornia_aug.KorniaViewPipeline` on the batch's device.
The draws are seeded by ``(seed, step, micro-batch, view)``, so a resumed run draws the same views.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .pipelines import ViewPipeline

RAW_VIEW = "images"


class DeviceViews:
    """``batch["images"]["pixel_values"]`` (uint8) -> ``batch[name]["pixel_values"]`` for each view name.

    Args:
        pipelines: one Pillow :class:`ViewPipeline` built from ``ViewParams`` per view (or one for all);
            each becomes the same augmentation in kornia.
        names: the view names (``("query", "key")``).
        seed: the base of the per-batch seeds.
    """

    def __init__(self, pipelines: ViewPipeline | Sequence[ViewPipeline], names: Sequence[str] = ("query", "key"), seed: int = 0) -> None:
        from .kornia_aug import KorniaViewPipeline

        pipelines = [pipelines] * len(names) if isinstance(pipelines, ViewPipeline) else list(pipelines)
        if len(pipelines) != len(names):
            raise ValueError(f"got {len(pipelines)} pipelines for {len(names)} views")
        self.pipelines = [KorniaViewPipeline.from_pipeline(p) for p in pipelines]
        self.names, self.seed = tuple(names), int(seed)
        self._device: torch.device | None = None

    def _seed(self, step: int, micro: int, view: int) -> int:
        state = np.random.SeedSequence([self.seed, step, micro, view]).generate_state(1, dtype=np.uint64)
        return int(state[0] >> 1)

    def __call__(self, batch: Mapping[str, Any], *, step: int, micro: int = 0) -> dict[str, Any]:
        """The batch with its raw ``images`` view replaced by the augmented named views."""
        if RAW_VIEW not in batch:
            return dict(batch)
        out = {key: value for key, value in batch.items() if key != RAW_VIEW}
        pixels = batch[RAW_VIEW]["pixel_values"]
        if self._device != pixels.device:
            for pipeline in self.pipelines:
                pipeline.to(pixels.device)
            self._device = pixels.device
        images = pixels.float().div_(255.0) if not pixels.is_floating_point() else pixels
        for index, (name, pipeline) in enumerate(zip(self.names, self.pipelines)):
            out[name] = {"pixel_values": pipeline(images, seed=self._seed(step, micro, index))}
        return out
