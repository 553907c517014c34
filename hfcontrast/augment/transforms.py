"""Single image transforms on ``PIL.Image`` (RGB) with an explicit ``random.Random``.

Every random transform is a small callable ``transform(image, rng) -> image``; all randomness is drawn
from ``rng``, so the same seed gives the same view. Deterministic transforms accept (and ignore) ``rng``
so that every step of a pipeline has one signature.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


class Transform(Protocol):
    """A step of a view pipeline: ``PIL.Image`` in, ``PIL.Image`` out, randomness from ``rng``."""

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image: ...


def _check_p(p: float, name: str = "p") -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return float(p)


def _check_range(values: Sequence[float], name: str, *, low: float = 0.0) -> tuple[float, float]:
    if len(values) != 2 or not low <= values[0] <= values[1]:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {tuple(values)}")
    return float(values[0]), float(values[1])


def _resample(name: str) -> Image.Resampling:
    if name not in _RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {name!r}")
    return _RESAMPLE[name]


class RandomResizedCrop:
    """Crop a random area fraction and aspect ratio, then resize to ``size x size`` (SimCLR, Inception).

    Area fraction ``s ~ U(scale)`` and ``log(aspect) ~ U(log ratio)``; up to 10 tries for a crop that fits,
    else a center crop of the whole image clamped to ``ratio``.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)
        self.scale = _check_range(scale, "scale")
        if self.scale[1] > 1.0 or self.scale[0] <= 0.0:
            raise ValueError(f"scale must lie in (0, 1], got {scale}")
        self.ratio = _check_range(ratio, "ratio")
        if self.ratio[0] <= 0.0:
            raise ValueError(f"ratio must be positive, got {ratio}")
        self.interpolation = interpolation
        self._resample = _resample(interpolation)

    def get_params(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """Return ``(left, top, crop_width, crop_height)`` for an image of the given size."""
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, width - w), rng.randint(0, height - h), w, h
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        left, top, w, h = self.get_params(image.width, image.height, rng)
        # crop, then resize: Pillow's ``resize(box=...)`` would blend in the pixels around the box at its edges
        return image.crop((left, top, left + w, top + h)).resize((self.size, self.size), self._resample)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = _check_p(p)

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() < self.p:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


def adjust_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue of an RGB image by ``shift`` turns (``shift`` in [-0.5, 0.5]) through HSV."""
    if shift == 0.0:
        return image
    hsv = np.array(image.convert("HSV"), dtype=np.uint8)
    # Pillow stores hue as round-down(255 * turns), so one full turn is 255 steps.
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 255
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


class ColorJitter:
    """With probability ``p``, jitter brightness, contrast, saturation and hue in a random order.

    Factors are drawn from ``U(max(0, 1 - x), 1 + x)`` for brightness/contrast/saturation (applied with
    ``PIL.ImageEnhance``) and the hue shift from ``U(-hue, hue)`` turns (applied in HSV). A strength of 0
    leaves that property untouched, so ``ColorJitter(0, 0, 0, 0)`` is the identity.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        p: float = 1.0,
    ) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = (
            float(brightness),
            float(contrast),
            float(saturation),
            float(hue),
        )
        self.p = _check_p(p)

    @staticmethod
    def _factor(strength: float, rng: random.Random) -> float:
        return rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength)

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() >= self.p:
            return image
        order = [0, 1, 2, 3]
        rng.shuffle(order)
        for step in order:
            if step == 0 and self.brightness > 0:
                image = ImageEnhance.Brightness(image).enhance(self._factor(self.brightness, rng))
            elif step == 1 and self.contrast > 0:
                image = ImageEnhance.Contrast(image).enhance(self._factor(self.contrast, rng))
            elif step == 2 and self.saturation > 0:
                image = ImageEnhance.Color(image).enhance(self._factor(self.saturation, rng))
            elif step == 3 and self.hue > 0:
                image = adjust_hue(image, rng.uniform(-self.hue, self.hue))
        return image


class RandomGrayscale:
    """With probability ``p``, replace the image by its luma (ITU-R 601-2), kept as 3 equal channels."""

    def __init__(self, p: float = 0.2) -> None:
        self.p = _check_p(p)

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() < self.p:
            return image.convert("L").convert("RGB")
        return image


class GaussianBlur:
    """With probability ``p``, blur with a Gaussian of standard deviation ``sigma ~ U(sigma)`` pixels."""

    def __init__(self, p: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.p = _check_p(p)
        self.sigma = _check_range(sigma, "sigma")

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() < self.p:
            # Pillow's GaussianBlur ``radius`` is the standard deviation of the kernel.
            return image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*self.sigma)))
        return image


class Solarize:
    """With probability ``p``, invert every pixel value ``>= threshold`` (BYOL's second view)."""

    def __init__(self, p: float = 0.2, threshold: int = 128) -> None:
        self.p = _check_p(p)
        if not 0 <= threshold <= 256:
            raise ValueError(f"threshold must be in [0, 256], got {threshold}")
        self.threshold = int(threshold)

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        if rng.random() < self.p:
            return ImageOps.solarize(image, self.threshold)
        return image


class Resize:
    """Deterministic: resize so that the shorter side equals ``size``, keeping the aspect ratio."""

    def __init__(self, size: int, interpolation: str = "bilinear") -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)
        self._resample = _resample(interpolation)

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        w, h = image.size
        if min(w, h) == self.size:
            return image
        if w <= h:
            new = (self.size, max(1, round(h * self.size / w)))
        else:
            new = (max(1, round(w * self.size / h)), self.size)
        return image.resize(new, self._resample)


class CenterCrop:
    """Deterministic: the central ``size x size`` square (padded with black if the image is smaller)."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        w, h = image.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` -> ``float32`` tensor ``[3, H, W]`` in ``[0, 1]``."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


class Normalize:
    """Per-channel ``(x - mean) / std`` on a ``[3, H, W]`` (or ``[B, 3, H, W]``) tensor."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got mean={tuple(mean)} std={tuple(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = self._mean.to(device=tensor.device, dtype=tensor.dtype)
        std = self._std.to(device=tensor.device, dtype=tensor.dtype)
        return (tensor - mean) / std
