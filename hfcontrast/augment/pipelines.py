"""Composed view pipelines (``PIL.Image -> Tensor[3, H, W]``) and the published recipes.

* :func:`simclr_pipeline` -- Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
  Representations" (crop 0.08-1, flip, jitter 0.8s/0.8s/0.8s/0.2s with p=0.8, grayscale 0.2, blur 0.5).
* :func:`mocov2_pipeline` -- Chen et al. 2020b, "Improved Baselines with Momentum Contrastive Learning"
  (crop 0.2-1, jitter 0.4/0.4/0.4/0.1 with p=0.8, grayscale 0.2, blur 0.5, flip).
* :func:`byol_pipelines` -- Grill et al. 2020: two asymmetric views (blur 1.0/0.1, solarize 0.0/0.2).
* :func:`eval_pipeline` -- deterministic resize + center crop for evaluation.

Random pipelines are built from a :class:`ViewParams`, which the kornia backend
(:mod:`hfcontrast.augment.kornia_aug`) reads to build the same augmentation on batched tensors.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image

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
    to_tensor,
)


@dataclass(frozen=True)
class ViewParams:
    """Every knob of the standard random view, in application order.

    ``RandomResizedCrop(size, crop_scale, crop_ratio) -> flip(flip_p) -> ColorJitter(...) with jitter_p
    -> grayscale(grayscale_p) -> GaussianBlur(blur_p, blur_sigma) -> Solarize(solarize_p)
    -> to_tensor -> Normalize(mean, std)``. A probability of 0 drops the step.
    """

    size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: int = 128
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.transforms()  # the transforms check the remaining ranges

    def transforms(self) -> list[Transform]:
        """The PIL steps these parameters describe (without tensor conversion and normalisation)."""
        steps: list[Transform] = [
            RandomResizedCrop(self.size, self.crop_scale, self.crop_ratio, self.interpolation)
        ]
        if self.flip_p > 0:
            steps.append(RandomHorizontalFlip(self.flip_p))
        jitter = (self.brightness, self.contrast, self.saturation, self.hue)
        if self.jitter_p > 0 and any(j > 0 for j in jitter):
            steps.append(ColorJitter(*jitter, p=self.jitter_p))
        if self.grayscale_p > 0:
            steps.append(RandomGrayscale(self.grayscale_p))
        if self.blur_p > 0:
            steps.append(GaussianBlur(self.blur_p, self.blur_sigma))
        if self.solarize_p > 0:
            steps.append(Solarize(self.solarize_p, self.solarize_threshold))
        return steps


class ViewPipeline:
    """``PIL.Image`` -> ``float32`` tensor ``[3, H, W]``: PIL transforms, then ``to_tensor`` and ``Normalize``.

    Randomness comes from the ``rng`` passed to ``__call__`` (the collator passes its own); without one the
    pipeline uses its own ``random.Random(seed)`` (which every ``DataLoader`` worker would copy unchanged, so
    pass an ``rng`` there, as :class:`~hfcontrast.collators.images.MultiViewCollator` does). ``params`` is set when the pipeline was built from a
    :class:`ViewParams` (needed to build the kornia equivalent).
    """

    def __init__(
        self,
        transforms: Sequence[Transform],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        *,
        params: ViewParams | None = None,
        seed: int | None = None,
    ) -> None:
        self.transforms = list(transforms)
        self.normalize = Normalize(mean, std)
        self.params = params
        self.rng = random.Random(seed)

    @classmethod
    def from_params(cls, params: ViewParams, *, seed: int | None = None) -> ViewPipeline:
        """Build the standard random view described by ``params``."""
        return cls(params.transforms(), params.mean, params.std, params=params, seed=seed)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.normalize.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.normalize.std

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        rng = self.rng if rng is None else rng
        if image.mode != "RGB":
            image = image.convert("RGB")
        for transform in self.transforms:
            image = transform(image, rng)
        return self.normalize(to_tensor(image))

    def __repr__(self) -> str:
        steps = ", ".join(type(t).__name__ for t in self.transforms)
        return f"{type(self).__name__}([{steps}], mean={self.mean}, std={self.std})"


def simclr_pipeline(
    size: int = 224,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    jitter_strength: float = 1.0,
    jitter_p: float = 0.8,
    grayscale_p: float = 0.2,
    blur_p: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    flip_p: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
) -> ViewPipeline:
    """SimCLR view (Chen et al. 2020): jitter ``b=c=s=0.8*s``, ``h=0.2*s``. Use ``blur_p=0`` for CIFAR."""
    params = ViewParams(
        size=size,
        crop_scale=crop_scale,
        flip_p=flip_p,
        jitter_p=jitter_p,
        grayscale_p=grayscale_p,
        blur_p=blur_p,
        blur_sigma=blur_sigma,
        mean=_rgb(mean, "mean"),
        std=_rgb(std, "std"),
        brightness=0.8 * jitter_strength,
        contrast=0.8 * jitter_strength,
        saturation=0.8 * jitter_strength,
        hue=0.2 * jitter_strength,
    )
    return ViewPipeline.from_params(params, seed=seed)


def mocov2_pipeline(
    size: int = 224,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    jitter_p: float = 0.8,
    grayscale_p: float = 0.2,
    blur_p: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    flip_p: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
) -> ViewPipeline:
    """MoCo v2 view (Chen et al. 2020b, "aug+" of the MoCo v2 paper)."""
    params = ViewParams(
        size=size,
        crop_scale=crop_scale,
        flip_p=flip_p,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        jitter_p=jitter_p,
        grayscale_p=grayscale_p,
        blur_p=blur_p,
        blur_sigma=blur_sigma,
        mean=_rgb(mean, "mean"),
        std=_rgb(std, "std"),
    )
    return ViewPipeline.from_params(params, seed=seed)


def byol_pipelines(
    size: int = 224,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
) -> tuple[ViewPipeline, ViewPipeline]:
    """BYOL's asymmetric pair (Grill et al. 2020): jitter 0.4/0.4/0.2/0.1 p=0.8, grayscale 0.2, and
    blur p=1.0 / 0.1, solarize p=0.0 / 0.2 for the first / second view."""
    first = ViewParams(
        size=size,
        crop_scale=crop_scale,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        jitter_p=0.8,
        grayscale_p=0.2,
        blur_p=1.0,
        solarize_p=0.0,
        mean=_rgb(mean, "mean"),
        std=_rgb(std, "std"),
    )
    second = replace(first, blur_p=0.1, solarize_p=0.2)
    other_seed = None if seed is None else seed + 1
    return ViewPipeline.from_params(first, seed=seed), ViewPipeline.from_params(second, seed=other_seed)


def local_crop_pipeline(
    global_pipeline: ViewPipeline, size: int, crop_scale: tuple[float, float] = (0.05, 0.4)
) -> ViewPipeline:
    """A multi-crop local view (Caron et al. 2020, SwAV): the global pipeline's augmentation at the smaller
    ``size``, cropping a smaller area fraction ``crop_scale`` (SwAV / DINO: 96 px, 0.05-0.4 of 224 px)."""
    if global_pipeline.params is None:
        raise ValueError("local_crop_pipeline needs a pipeline built from ViewParams (ViewPipeline.from_params)")
    return ViewPipeline.from_params(replace(global_pipeline.params, size=size, crop_scale=crop_scale))


def eval_pipeline(
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    resize_size: int | None = None,
    crop_fraction: float = 0.875,
    interpolation: str = "bilinear",
) -> ViewPipeline:
    """Deterministic evaluation view: shorter side to ``resize_size`` (default ``round(size / crop_fraction)``,
    i.e. 256 for 224), then the central ``size x size`` crop."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    resize_to = round(size / crop_fraction) if resize_size is None else resize_size
    if resize_to < size:
        raise ValueError(f"resize_size ({resize_to}) must be >= size ({size})")
    return ViewPipeline([Resize(resize_to, interpolation), CenterCrop(size)], mean, std)


def _rgb(values: Any, name: str) -> tuple[float, float, float]:
    """Three floats from a sequence (or one float for all channels)."""
    if isinstance(values, int | float):
        return (float(values),) * 3
    seq = [float(v) for v in values]
    if len(seq) == 1:
        seq = seq * 3
    if len(seq) != 3:
        raise ValueError(f"{name} needs 3 values (RGB), got {values!r}")
    return seq[0], seq[1], seq[2]


def normalization_from_processor(
    processor: Any,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(image_mean, image_std)`` of a Hugging Face image processor (or a processor wrapping one).

    Example: ``mean, std = normalization_from_processor(AutoImageProcessor.from_pretrained(name))`` and
    ``simclr_pipeline(mean=mean, std=std)``.
    """
    source = processor
    if getattr(source, "image_mean", None) is None and getattr(source, "image_processor", None) is not None:
        source = source.image_processor
    mean, std = getattr(source, "image_mean", None), getattr(source, "image_std", None)
    if mean is None or std is None:
        raise ValueError(
            f"{type(processor).__name__} has no image_mean/image_std; pass mean= and std= explicitly"
        )
    return _rgb(mean, "image_mean"), _rgb(std, "image_std")


def view_pipelines(
    kind: str,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    crop_min_scale: float | None = None,
    jitter_strength: float = 0.4,
) -> list[ViewPipeline]:
    """Two training view pipelines of a method's paper (``kind``).

    ``light`` (the demo's, for small grayscale images such as Fashion-MNIST): random resized crop,
    flip and brightness/contrast jitter of ``jitter_strength`` with p 0.8, no colour, grayscale or blur;
    ``simclr`` / ``mocov2`` / ``byol``: the papers' pipelines (SimCLR's and MoCo v2's blur off below 64 pixels, as
    for CIFAR; BYOL's asymmetric blur kept at every size).
    """
    blur = 0.0 if size < 64 else 0.5
    if kind == "light":
        params = ViewParams(
            size=size, crop_scale=(crop_min_scale or 0.35, 1.0), brightness=jitter_strength,
            contrast=jitter_strength, saturation=0.0, hue=0.0, jitter_p=0.8, grayscale_p=0.0, blur_p=0.0,
            mean=_rgb(mean, "mean"), std=_rgb(std, "std"),
        )  # fmt: skip
        return [ViewPipeline.from_params(params)] * 2
    common: dict = {"size": size, "mean": mean, "std": std}
    if kind == "simclr":
        return [simclr_pipeline(crop_scale=(crop_min_scale or 0.08, 1.0), blur_p=blur, **common)] * 2
    if kind == "mocov2":
        return [mocov2_pipeline(crop_scale=(crop_min_scale or 0.2, 1.0), blur_p=blur, **common)] * 2
    if kind == "byol":
        return list(byol_pipelines(crop_scale=(crop_min_scale or 0.08, 1.0), **common))
    raise ValueError(f"augmentation must be light, simclr, mocov2 or byol, got {kind!r}")
