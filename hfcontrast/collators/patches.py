"""CPC's patch grid in the collator: each image's ``query`` view cut into a ``G x G`` grid of overlapping square
patches, the view ``patches`` (``[B G G, 3, p, p]``, row-major per image), as Hénaff et al. 2020 cut theirs."""

from __future__ import annotations

from typing import Any

from .images import MultiViewCollator
from .wrapping import WrappingCollator


class PatchGridCollator(WrappingCollator):
    """``inner``'s ``query`` view as the patch grid ``patches`` (and ``patch_grid``: ``G``); ``inner``'s other views
    are left out. ``patch``: the patches' side; ``grid``: ``G``, the stride ``(H - patch) / (G - 1)``."""

    def __init__(self, inner: MultiViewCollator, grid: int = 6, patch: int = 8) -> None:
        if grid < 2 or patch < 1:
            raise ValueError(f"a patch grid needs grid >= 2 and patch >= 1, got grid={grid}, patch={patch}")
        self.inner, self.grid, self.patch = inner, grid, patch

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        pixels = batch["query"]["pixel_values"]
        side = pixels.shape[-1]
        if pixels.shape[-2] != side or (side - self.patch) % (self.grid - 1):
            raise ValueError(f"a {self.grid} x {self.grid} grid of {self.patch} px patches does not tile "
                             f"{tuple(pixels.shape[-2:])} images: (side - patch) must divide by grid - 1")  # fmt: skip
        stride = (side - self.patch) // (self.grid - 1)
        tiles = pixels.unfold(2, self.patch, stride).unfold(3, self.patch, stride)  # [B, 3, G, G, p, p]
        patches = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, pixels.shape[1], self.patch, self.patch)
        out = {k: v for k, v in batch.items() if not isinstance(v, dict)}
        out["patches"] = {"pixel_values": patches.contiguous()}
        return out
