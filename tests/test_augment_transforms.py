"""Pillow transforms and view pipelines: documented statistics, shapes, normalisation, reproducibility."""

from __future__ import annotations

import ast
import math
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import hfcontrast.augment
from hfcontrast.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorJitter,
    GaussianBlur,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    Solarize,
    ViewPipeline,
    adjust_hue,
    byol_pipelines,
    eval_pipeline,
    mocov2_pipeline,
    normalization_from_processor,
    simclr_pipeline,
    to_tensor,
)


def coord_image(width: int, height: int) -> Image.Image:
    """R encodes x, G encodes y (exact for sizes <= 256), B constant."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[..., 0] = np.arange(width, dtype=np.uint8)[None, :]
    array[..., 1] = np.arange(height, dtype=np.uint8)[:, None]
    array[..., 2] = 50
    return Image.fromarray(array)


def noise_image(size: int = 16, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def binomial_ok(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count / n - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def area_fractions(crop: RandomResizedCrop, size: int, n: int, seed: int = 0) -> np.ndarray:
    rng = random.Random(seed)
    fractions = []
    for _ in range(n):
        _, _, w, h = crop.get_params(size, size, rng)
        fractions.append(w * h / size**2)
    return np.array(fractions)


def test_random_resized_crop_area_uniform_when_every_try_fits() -> None:
    # scale * max(ratio) = 0.5 * 4/3 < 1: the first try always fits, so s ~ U(0.08, 0.5), mean 0.29.
    fractions = area_fractions(RandomResizedCrop(32, scale=(0.08, 0.5)), 200, 4000)
    assert fractions.min() >= 0.08 * 0.95 and fractions.max() <= 0.5 * 1.05
    assert abs(fractions.mean() - 0.29) < 4 * (0.42 / math.sqrt(12)) / math.sqrt(4000) + 0.003


def test_random_resized_crop_area_default_scale_matches_rejection_expectation() -> None:
    # Square image: a try (s, a) fits iff s <= exp(-|log a|). With L = log(4/3), u = |log a| ~ U(0, L):
    # P(fit) = ((1 - e^-L)/L - lo) / (1 - lo),  E[s; fit] = ((1 - e^-2L)/(2L) - lo^2) / (2 (1 - lo)).
    lo, L = 0.08, math.log(4 / 3)
    p_fit = ((1 - math.exp(-L)) / L - lo) / (1 - lo)
    s_fit = ((1 - math.exp(-2 * L)) / (2 * L) - lo**2) / (2 * (1 - lo))
    fallback = (1 - p_fit) ** 10  # the fallback crop is the whole (square) image
    expected = (1 - fallback) * s_fit / p_fit + fallback
    fractions = area_fractions(RandomResizedCrop(32), 200, 4000, seed=1)
    assert fractions.min() >= 0.08 * 0.95 and fractions.max() <= 1.0
    assert abs(fractions.mean() - expected) < 4 * 0.26 / math.sqrt(4000) + 0.003


def test_random_resized_crop_fallback_is_center_crop_clamped_to_ratio() -> None:
    crop = RandomResizedCrop(8, scale=(0.9, 1.0))
    assert crop.get_params(1000, 10, random.Random(0)) == ((1000 - 13) // 2, 0, 13, 10)
    assert crop.get_params(10, 1000, random.Random(0)) == (0, (1000 - 13) // 2, 10, 13)


def test_random_resized_crop_output_comes_from_sampled_box() -> None:
    crop = RandomResizedCrop(16, scale=(0.05, 0.3), interpolation="nearest")
    image = coord_image(200, 150)
    for seed in range(20):
        left, top, w, h = crop.get_params(200, 150, random.Random(seed))
        out = np.asarray(crop(image, random.Random(seed)))
        assert out.shape == (16, 16, 3)
        assert left <= out[..., 0].min() and out[..., 0].max() < left + w
        assert top <= out[..., 1].min() and out[..., 1].max() < top + h


@pytest.mark.parametrize("size", [12, 28, 5])
def test_random_resized_crop_bilinear_reads_no_pixel_outside_the_box(size: int) -> None:
    """Up- or down-sampling, the view holds only the crop's pixels (as torchvision's crop-then-resize):
    a black box in a white image stays black. (Resizing with Pillow's ``box=`` instead blends in the
    neighbouring pixels at the edges: up to 112 of 255 for a 6 px box upsampled to 12 px.)"""
    crop = RandomResizedCrop(size, scale=(0.05, 0.14))
    for seed in range(30):
        left, top, w, h = crop.get_params(28, 28, random.Random(seed))
        pixels = np.full((28, 28), 255, dtype=np.uint8)
        pixels[top : top + h, left : left + w] = 0
        out = np.asarray(crop(Image.fromarray(pixels).convert("RGB"), random.Random(seed)))
        assert out.shape == (size, size, 3) and out.max() == 0, (seed, (left, top, w, h), out.max())


def test_flip_frequency_and_content() -> None:
    image, mirrored = coord_image(5, 2), np.asarray(coord_image(5, 2))[:, ::-1]
    flip, rng, n = RandomHorizontalFlip(0.3), random.Random(0), 2000
    flipped = 0
    for _ in range(n):
        out = np.asarray(flip(image, rng))
        if np.array_equal(out, mirrored):
            flipped += 1
        else:
            assert np.array_equal(out, np.asarray(image))
    assert binomial_ok(flipped, n, 0.3)


def test_grayscale_frequency_keeps_three_equal_channels() -> None:
    image, gray, rng, n = noise_image(4), RandomGrayscale(0.2), random.Random(0), 2000
    count = 0
    for _ in range(n):
        out = gray(image, rng)
        array = np.asarray(out)
        assert out.mode == "RGB" and array.shape == (4, 4, 3)
        if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]):
            count += 1
        else:
            assert np.array_equal(array, np.asarray(image))
    assert binomial_ok(count, n, 0.2)


def test_color_jitter_with_zero_strength_is_identity() -> None:
    image, jitter, rng = noise_image(), ColorJitter(0, 0, 0, 0, p=1.0), random.Random(0)
    for _ in range(20):
        assert np.array_equal(np.asarray(jitter(image, rng)), np.asarray(image))


def test_color_jitter_brightness_range_and_probability() -> None:
    image = Image.new("RGB", (4, 4), (100, 100, 100))
    jitter, rng = ColorJitter(brightness=0.5, p=0.5), random.Random(0)
    values = np.array([np.asarray(jitter(image, rng))[0, 0, 0] for _ in range(1000)], dtype=float)
    assert values.min() >= 50 and values.max() <= 150
    assert binomial_ok(int((values == 100).sum()), 1000, 0.5)  # untouched iff not applied (a.s.)
    assert abs(values.mean() - 100) < 3


def test_color_jitter_changes_image_and_keeps_mode() -> None:
    image = noise_image()
    out = ColorJitter(0.8, 0.8, 0.8, 0.2, p=1.0)(image, random.Random(3))
    assert out.mode == "RGB" and out.size == image.size
    assert not np.array_equal(np.asarray(out), np.asarray(image))


def test_adjust_hue_half_turn_maps_red_to_cyan() -> None:
    out = np.asarray(adjust_hue(Image.new("RGB", (2, 2), (255, 0, 0)), 0.5))[0, 0]
    assert out[0] <= 5 and out[1] >= 250 and out[2] >= 250


def test_blur_and_solarize() -> None:
    checker = Image.fromarray(((np.indices((16, 16)).sum(0) % 2) * 255).astype(np.uint8)).convert("RGB")
    rng = random.Random(0)
    assert np.array_equal(np.asarray(GaussianBlur(p=0.0)(checker, rng)), np.asarray(checker))
    blurred = np.asarray(GaussianBlur(p=1.0, sigma=(1.0, 2.0))(checker, rng)).astype(float)
    assert blurred.std() < 0.5 * np.asarray(checker).astype(float).std()
    image = Image.fromarray(np.array([[[200, 100, 128]]], dtype=np.uint8))
    assert np.asarray(Solarize(p=1.0)(image, rng)).tolist() == [[[55, 100, 127]]]


def test_to_tensor_and_normalize_on_constant_image() -> None:
    color = (10, 128, 250)
    pipeline = ViewPipeline([], IMAGENET_MEAN, IMAGENET_STD)
    out = pipeline(Image.new("RGB", (5, 3), color))
    assert out.shape == (3, 3, 5) and out.dtype == torch.float32
    for c in range(3):
        expected = (color[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((3, 5), expected), atol=1e-6)
    raw = to_tensor(Image.new("RGB", (2, 2), color))
    assert raw.dtype == torch.float32 and raw.max() <= 1.0 and raw.min() >= 0.0


@pytest.mark.parametrize("factory", [simclr_pipeline, mocov2_pipeline])
def test_factory_output_shape_and_dtype(factory) -> None:  # type: ignore[no-untyped-def]
    out = factory(size=24, seed=0)(Image.new("L", (40, 30), 90))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32


def test_factory_parameters() -> None:
    simclr = simclr_pipeline(jitter_strength=0.5).params
    assert simclr is not None
    assert (simclr.brightness, simclr.contrast, simclr.saturation, simclr.hue) == (0.4, 0.4, 0.4, 0.1)
    assert (simclr.crop_scale, simclr.jitter_p, simclr.grayscale_p, simclr.blur_p) == (
        (0.08, 1.0),
        0.8,
        0.2,
        0.5,
    )
    moco = mocov2_pipeline().params
    assert moco is not None
    assert (moco.crop_scale, moco.brightness, moco.hue, moco.jitter_p) == ((0.2, 1.0), 0.4, 0.1, 0.8)
    first, second = byol_pipelines()
    assert first.params is not None and second.params is not None
    assert (first.params.blur_p, first.params.solarize_p) == (1.0, 0.0)
    assert (second.params.blur_p, second.params.solarize_p) == (0.1, 0.2)
    no_blur = simclr_pipeline(blur_p=0.0)
    assert "GaussianBlur" not in repr(no_blur) and "ColorJitter" in repr(no_blur)


def test_same_seed_same_views_different_seed_different_views() -> None:
    image = noise_image(32)
    assert torch.equal(simclr_pipeline(size=16, seed=7)(image), simclr_pipeline(size=16, seed=7)(image))
    pipeline = simclr_pipeline(size=16)
    assert torch.equal(pipeline(image, random.Random(5)), pipeline(image, random.Random(5)))
    assert not torch.equal(pipeline(image, random.Random(5)), pipeline(image, random.Random(6)))


def test_eval_pipeline_is_deterministic_resize_then_center_crop() -> None:
    pipeline = eval_pipeline(size=8, mean=(0, 0, 0), std=(1, 1, 1))
    assert isinstance(pipeline.transforms[0], Resize) and pipeline.transforms[0].size == round(8 / 0.875)
    image = coord_image(40, 20)
    out = pipeline(image)
    assert out.shape == (3, 8, 8) and torch.equal(out, pipeline(image))
    assert eval_pipeline(224).transforms[0].size == 256  # type: ignore[attr-defined]


def test_normalization_from_processor() -> None:
    processor = SimpleNamespace(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    assert normalization_from_processor(processor) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    wrapper = SimpleNamespace(image_processor=processor, tokenizer=None)
    assert normalization_from_processor(wrapper) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert normalization_from_processor(SimpleNamespace(image_mean=0.5, image_std=0.5)) == (
        (0.5,) * 3,
        (0.5,) * 3,
    )
    with pytest.raises(ValueError, match="image_mean"):
        normalization_from_processor(SimpleNamespace())


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.7)
    with pytest.raises(ValueError, match="p must be"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="grayscale_p"):
        simclr_pipeline(grayscale_p=-0.1)
    assert "ColorJitter" not in repr(simclr_pipeline(jitter_strength=0.0))
    with pytest.raises(ValueError, match="std"):
        ViewPipeline([], std=(0.0, 1.0, 1.0))


def test_augment_package_does_not_import_kornia_eagerly() -> None:
    # Static check (a subprocess import of torch would be slow): only kornia_aug imports kornia, and only
    # inside a function; the package reaches kornia_aug only through a module __getattr__.
    package = Path(hfcontrast.augment.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module-level statements only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            assert not any(n.split(".")[0] in ("kornia", "kornia_aug") for n in names), path.name
    assert hfcontrast.augment.KorniaViewPipeline.__name__ == "KorniaViewPipeline"


def test_missing_kornia_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from hfcontrast.augment import kornia_aug

    monkeypatch.setitem(sys.modules, "kornia.augmentation", None)
    with pytest.raises(ImportError, match=r"pip install hfcontrast\[kornia\]"):
        kornia_aug.KorniaViewPipeline()
