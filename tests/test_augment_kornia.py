"""Kornia backend: same parameters, same documented statistics as the Pillow path, on batches."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("kornia")

from hfcontrast.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViewParams,
    ViewPipeline,
    mocov2_pipeline,
    simclr_pipeline,
)
from hfcontrast.augment.kornia_aug import KorniaViewPipeline, default_blur_kernel_size

ONLY_CROP = {"flip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}


def coord_batch(batch: int, size: int) -> torch.Tensor:
    """Channel 0 = x / (size - 1), channel 1 = y / (size - 1), channel 2 constant."""
    ramp = torch.linspace(0, 1, size)
    image = torch.stack(
        [
            ramp.view(1, size).expand(size, size),
            ramp.view(size, 1).expand(size, size),
            torch.full((size, size), 0.3),
        ]
    )
    return image.expand(batch, 3, size, size).contiguous()


def binomial_ok(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count / n - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_shape_dtype_and_normalisation() -> None:
    out = KorniaViewPipeline.simclr(size=16)(torch.rand(4, 3, 24, 20), seed=0)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32
    identity = KorniaViewPipeline(
        ViewParams(size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **ONLY_CROP)
    )
    color = torch.tensor([0.1, 0.5, 0.9])
    out = identity(color.view(1, 3, 1, 1).expand(2, 3, 8, 8).contiguous())
    expected = (color - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out, expected.view(1, 3, 1, 1).expand_as(out), atol=1e-5)


def test_crop_area_fraction_read_back_from_coordinates() -> None:
    size, n = 64, 600
    pipeline = KorniaViewPipeline(ViewParams(size=32, crop_scale=(0.08, 0.5), **ONLY_CROP))
    out = pipeline(coord_batch(n, size), seed=0, normalize=False)
    # align_corners=True: the output's corner pixels are the crop's corner pixels.
    width = (out[:, 0].amax((1, 2)) - out[:, 0].amin((1, 2))) * (size - 1) + 1
    height = (out[:, 1].amax((1, 2)) - out[:, 1].amin((1, 2))) * (size - 1) + 1
    area = width * height / size**2
    assert area.min() >= 0.08 * 0.95 and area.max() <= 0.5 * 1.05
    assert abs(area.mean().item() - 0.29) < 4 * (0.42 / math.sqrt(12)) / math.sqrt(n) + 0.005


def test_flip_frequency() -> None:
    n = 1000
    params = ViewParams(size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **{**ONLY_CROP, "flip_p": 0.3})
    out = KorniaViewPipeline(params)(coord_batch(n, 8), seed=1, normalize=False)
    first, last = out[:, 0, 0, 0], out[:, 0, 0, -1]
    flipped = int((first > last).sum())
    assert int((first < last).sum()) + flipped == n
    assert binomial_ok(flipped, n, 0.3)


def test_grayscale_frequency_gives_equal_channels() -> None:
    n = 1000
    params = ViewParams(
        size=4, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), **{**ONLY_CROP, "grayscale_p": 0.2}
    )
    images = torch.tensor([0.9, 0.2, 0.4]).view(1, 3, 1, 1).expand(n, 3, 4, 4).contiguous()
    out = KorniaViewPipeline(params)(images, seed=2, normalize=False)
    gray = torch.isclose(out[:, 0], out[:, 1]).all((1, 2)) & torch.isclose(out[:, 1], out[:, 2]).all((1, 2))
    assert torch.allclose(out[~gray], images[~gray], atol=1e-6)
    assert binomial_ok(int(gray.sum()), n, 0.2)


def test_seed_reproducible_and_global_rng_untouched() -> None:
    pipeline = KorniaViewPipeline.mocov2(size=8)
    images = torch.rand(3, 3, 12, 12)
    torch.manual_seed(123)
    a = pipeline(images, seed=5)
    after = torch.rand(1)
    torch.manual_seed(123)
    b = pipeline(images, seed=5)
    assert torch.equal(a, b) and torch.equal(after, torch.rand(1))
    assert not torch.equal(a, pipeline(images, seed=6))


def test_built_from_the_same_parameters_as_pillow_factories() -> None:
    assert KorniaViewPipeline.from_pipeline(simclr_pipeline(size=32, jitter_strength=0.5)).params == (
        simclr_pipeline(size=32, jitter_strength=0.5).params
    )
    assert KorniaViewPipeline.mocov2(size=32).params == mocov2_pipeline(size=32).params
    names = [type(m).__name__ for m in KorniaViewPipeline.simclr(size=32).augment]
    assert names == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "ColorJitter",
        "RandomGrayscale",
        "RandomGaussianBlur",
    ]
    assert default_blur_kernel_size(224) == 23 and default_blur_kernel_size(32) == 3
    with pytest.raises(ValueError, match="custom transform list"):
        KorniaViewPipeline.from_pipeline(ViewPipeline([]))


def test_rejects_bad_input() -> None:
    pipeline = KorniaViewPipeline(ViewParams(size=8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        pipeline(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="float"):
        pipeline(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
