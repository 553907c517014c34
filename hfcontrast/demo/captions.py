"""Captions for image-text training from labelled images: class names, prompt templates, attributes.

The CLIP recipe's offline default pairs Fashion-MNIST images with captions built from the class name
and varied templates (``"a photo of a {}."``). Zero-shot evaluation uses :data:`HELD_OUT_TEMPLATES`,
which share no template with :data:`TRAIN_TEMPLATES`: the accuracy measures transfer to unseen
prompts, not recall of the training sentences.

Class names alone make every image of a class share its captions, so image-text retrieval would be
all ties. :func:`pixel_attributes` therefore describes each image by two properties read from its
pixels, each in three levels per class (tertiles within the class): its tone (mean intensity of the
object) and its size (fraction of the frame it covers). ``"a light, large sneaker"`` then names a
few images, not a tenth of the data; :func:`unique_description_pairs` keeps one image per description
for a retrieval set where every caption has exactly one correct image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
from PIL import Image

from .fashion_mnist import fashion_mnist_dir, idx_file, load_fashion_mnist, read_idx

#: Prompt-friendly Fashion-MNIST class names, in label order (``fashion_mnist.FASHION_MNIST_LABELS``).
FASHION_MNIST_CLASS_NAMES = (
    "t-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
#: Templates of the training captions.
TRAIN_TEMPLATES = (
    "a photo of a {}.",
    "a black and white picture of a {}.",
    "a low resolution photo of a {}.",
    "a grayscale image of a {}.",
    "a small picture of a {}.",
    "a {} on a black background.",
    "a pixelated photo of a {}.",
    "this is a {}.",
)
#: Templates never used in training: zero-shot prompts and retrieval queries.
HELD_OUT_TEMPLATES = (
    "an image of a {}.",
    "a product photo of the {}.",
    "a blurry photo of a {}.",
    "a cropped picture of the {}.",
    "a close-up photo of a {}.",
    "a thumbnail of a {}.",
)
TONES = ("dark", "grey", "light")
SIZES = ("small", "medium-sized", "large")
#: Pixels above this grayscale value (of 255) are the object (Fashion-MNIST: a light item on black).
FOREGROUND_THRESHOLD = 25


def fill(template: str, name: str) -> str:
    """``template`` with ``{}`` replaced by ``name``."""
    if "{}" not in template:
        raise ValueError(f"template {template!r} has no '{{}}' placeholder")
    return template.replace("{}", name)


def _levels(values: np.ndarray, labels: np.ndarray, n_levels: int) -> np.ndarray:
    """Per-class quantile bin (0 .. n_levels - 1) of each value: each class splits into equal thirds."""
    levels = np.zeros(values.shape[0], dtype=np.int64)
    for label in np.unique(labels):
        members = labels == label
        edges = np.quantile(values[members], np.linspace(0, 1, n_levels + 1)[1:-1])
        levels[members] = np.searchsorted(edges, values[members], side="right")
    return levels


def _tone_and_cover(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean foreground value and foreground fraction of grayscale images ``[N, H, W]``."""
    mask = gray > FOREGROUND_THRESHOLD
    count = mask.sum(axis=(1, 2))
    total = np.where(mask, gray, 0).sum(axis=(1, 2), dtype=np.float64)
    return total / np.maximum(count, 1), count / float(gray.shape[1] * gray.shape[2])


def pixel_attributes(
    images: Sequence[Any] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(tone, size)`` levels in ``{0, 1, 2}`` for each image (indices into :data:`TONES` / :data:`SIZES`).

    ``images``: grayscale ``uint8 [N, H, W]``, or a sequence of images of any size and mode. tone: mean
    value of the object's pixels (above :data:`FOREGROUND_THRESHOLD`); size: the fraction of the frame
    they cover. Levels are tertiles within each class.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        tone, cover = _tone_and_cover(images)
    else:
        tone, cover = np.zeros(len(images)), np.zeros(len(images))
        for i, image in enumerate(images):
            gray = image.convert("L") if isinstance(image, Image.Image) else image
            tone[i : i + 1], cover[i : i + 1] = _tone_and_cover(np.asarray(gray)[None])
    label_array = np.asarray(labels, dtype=np.int64)
    return _levels(tone, label_array, len(TONES)), _levels(cover, label_array, len(SIZES))


def describe(class_name: str, tone: int, size: int) -> str:
    """``"light, large sneaker"``."""
    return f"{TONES[tone]}, {SIZES[size]} {class_name}"


def caption_dataset(
    dataset: datasets.Dataset,
    class_names: Sequence[str],
    templates: Sequence[str] = TRAIN_TEMPLATES,
    *,
    image_column: str = "image",
    label_column: str = "label",
    caption_column: str = "caption",
    attributes: bool = True,
    pixels: np.ndarray | None = None,
) -> datasets.Dataset:
    """Add ``caption_column`` (a list of captions per image) and ``description`` to a labelled dataset.

    Each image gets ``fill(t, class_name)`` for every template ``t``; with ``attributes`` also
    ``fill(t, description)`` with ``description = describe(class_name, tone, size)`` (see
    :func:`pixel_attributes`), so that half of its captions say what sets it apart within its class.
    Without ``attributes`` the description is the class name. ``pixels``: the images as a grayscale
    ``uint8 [N, H, W]`` array, to skip decoding them for the attributes.
    """
    for template in templates:
        fill(template, "x")
    if label_column not in dataset.column_names:
        raise ValueError(f"no label column {label_column!r} to caption (columns: {dataset.column_names})")
    labels = np.asarray(dataset[label_column], dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"labels must be in [0, {len(class_names) - 1}] (one per class name)")
    if pixels is not None and len(pixels) != len(dataset):
        raise ValueError(f"pixels has {len(pixels)} images for {len(dataset)} rows")
    if attributes:
        tone, size = pixel_attributes(dataset[image_column] if pixels is None else pixels, labels)
        descriptions = [describe(class_names[c], int(t), int(s)) for c, t, s in zip(labels, tone, size)]
    else:
        descriptions = [class_names[c] for c in labels]
    per_class = [[fill(t, name) for t in templates] for name in class_names]
    captions = [
        per_class[c] + ([fill(t, d) for t in templates] if attributes else [])
        for c, d in zip(labels, descriptions)
    ]
    for name in (caption_column, "description"):
        if name in dataset.column_names:
            dataset = dataset.remove_columns(name)
    dataset = dataset.add_column("description", descriptions)
    feature = datasets.Sequence(datasets.Value("string"))
    return dataset.add_column(caption_column, captions, feature=feature)  # type: ignore[call-arg]


def unique_description_pairs(
    dataset: datasets.Dataset,
    template: str = HELD_OUT_TEMPLATES[0],
    *,
    caption_column: str = "caption",
    max_pairs: int | None = None,
) -> datasets.Dataset:
    """A retrieval set: the first image of each distinct ``description`` (of :func:`caption_dataset`),
    captioned ``fill(template, description)``, so each caption has exactly one correct image."""
    first: dict[str, int] = {}
    for i, description in enumerate(dataset["description"]):
        first.setdefault(description, i)
    rows = sorted(first.values())[:max_pairs]
    pairs = dataset.select(rows)
    if caption_column in pairs.column_names:
        pairs = pairs.remove_columns(caption_column)
    return pairs.add_column(caption_column, [fill(template, d) for d in pairs["description"]])


def fashion_mnist_captions(
    split: str = "train", root: str | None = None, *, max_samples: int | None = None, attributes: bool = True
) -> datasets.Dataset:
    """Fashion-MNIST ``split`` (``hfcontrast.demo.fashion_mnist``) with :func:`caption_dataset`'s columns, the
    attributes read from the idx arrays (no image decoding)."""
    dataset = load_fashion_mnist(split, root, max_samples=max_samples)
    prefix = "train" if split == "train" else "t10k"
    pixels = read_idx(idx_file(fashion_mnist_dir(root), f"{prefix}-images-idx3-ubyte"))[: len(dataset)]
    return caption_dataset(dataset, FASHION_MNIST_CLASS_NAMES, attributes=attributes, pixels=pixels)


def first_caption_pairs(
    dataset: datasets.Dataset, caption_column: str = "caption", *, max_pairs: int | None = None
) -> datasets.Dataset:
    """A retrieval set from captioned rows: each row's first caption (of a list) as its only caption."""
    if max_pairs is not None:
        dataset = dataset.select(range(min(max_pairs, len(dataset))))
    captions = [c[0] if isinstance(c, list | tuple) else c for c in dataset[caption_column]]
    return dataset.remove_columns(caption_column).add_column(caption_column, captions)
