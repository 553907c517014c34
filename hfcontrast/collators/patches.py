"""CPC's patch grid in the collator: each image's ``query`` view cut into a ``G x G`` grid of overlapping square
patches, the view ``patches`` (``[B G G, 3, p, p]``, row-major per image), as Hénaff et al. 2020 cut theirs."""

from __future__ import annotations

from typing import Any

from torch import Tensor

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
        patches = cut_patch_grid(batch["query"]["pixel_values"], self.grid, self.patch)
        out = {k: v for k, v in batch.items() if not isinstance(v, dict)}
        out["patches"] = {"pixel_values": patches}
        return out


def cut_patch_grid(pixels: Tensor, grid: int, patch: int) -> Tensor:
    """``[B, C, H, H]`` images as their ``grid x grid`` grids of ``patch`` px patches, ``(H - patch) / (grid - 1)``
    px apart: ``[B grid grid, C, patch, patch]``, row-major per image."""
    side = pixels.shape[-1]
    if pixels.shape[-2] != side or (side - patch) % (grid - 1):
        raise ValueError(f"a {grid} x {grid} grid of {patch} px patches does not tile "
                         f"{tuple(pixels.shape[-2:])} images: (side - patch) must divide by grid - 1")  # fmt: skip
    stride = (side - patch) // (grid - 1)
    tiles = pixels.unfold(2, patch, stride).unfold(3, patch, stride)  # [B, C, G, G, p, p]
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, pixels.shape[1], patch, patch).contiguous()
