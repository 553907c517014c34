"""Image view pipelines: Pillow transforms with explicit RNGs, and an optional batched kornia backend.

``KorniaViewPipeline`` is imported lazily (``from hfcontrast.augment import KorniaViewPipeline`` or
``hfcontrast.augment.kornia_aug``) so that kornia is only needed when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .pipelines import (
    ViewParams,
    ViewPipeline,
    byol_pipelines,
    eval_pipeline,
    local_crop_pipeline,
    mocov2_pipeline,
    normalization_from_processor,
    simclr_pipeline,
    view_pipelines,
)
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    ColorJitter,
    GaussianBlur,
    Normalize,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    Solarize,
    Transform,
    adjust_hue,
    to_tensor,
)

if TYPE_CHECKING:
    from .kornia_aug import KorniaViewPipeline

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CenterCrop",
    "ColorJitter",
    "GaussianBlur",
    "KorniaViewPipeline",
    "Normalize",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "Solarize",
    "Transform",
    "ViewParams",
    "ViewPipeline",
    "adjust_hue",
    "byol_pipelines",
    "eval_pipeline",
    "local_crop_pipeline",
    "mocov2_pipeline",
    "normalization_from_processor",
    "simclr_pipeline",
    "to_tensor",
    "view_pipelines",
]


def __getattr__(name: str) -> Any:
    if name == "KorniaViewPipeline":
        from .kornia_aug import KorniaViewPipeline

        return KorniaViewPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
