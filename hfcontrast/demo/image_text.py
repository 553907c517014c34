"""The CLIP recipe's data: the offline default pairs Fashion-MNIST with captions built from class names and
pixel attributes (:mod:`hfcontrast.demo.captions`); user data is an image-caption file, an imagefolder or a
Hub dataset. And the demo's image tower."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import ViTConfig

from . import captions
from .images import load_image_dataset


@dataclass
class ImageTextData:
    """Training pairs, evaluation images (zero-shot), retrieval pairs, class names, the data's name."""

    train: Any
    evaluation: Any
    pairs: Any
    class_names: list[str] | None
    name: str


def load_image_text_data(
    *,
    train_source: str | None,
    dataset_name: str | None,
    validation_file: str | None,
    image_column: str,
    caption_column: str,
    label_column: str,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    seed: int,
) -> ImageTextData:
    """The CLIP recipe's data; with no source, captioned Fashion-MNIST (train / test splits)."""
    if not (dataset_name or train_source):
        train = captions.fashion_mnist_captions("train", max_samples=max_train_samples)
        test = captions.fashion_mnist_captions("test", max_samples=max_eval_samples)
        classes = list(captions.FASHION_MNIST_CLASS_NAMES)
        return ImageTextData(train, test, captions.unique_description_pairs(test), classes, "fashion_mnist")

    def load(source: str | None, name: str | None, limit: int | None) -> Any:
        data = load_image_dataset(source, name, image_column=image_column, max_samples=limit)
        feature = data.features.get(label_column)
        if caption_column not in data.column_names:
            if not hasattr(feature, "names"):
                raise ValueError(f"no caption column {caption_column!r} and no class-label column "
                                 f"{label_column!r} to build captions from (columns: {data.column_names})")  # fmt: skip
            data = captions.caption_dataset(data, feature.names, image_column=image_column, attributes=False,
                                            label_column=label_column, caption_column=caption_column)  # fmt: skip
        return data

    train = load(train_source, dataset_name, max_train_samples)
    if validation_file:
        evaluation = load(validation_file, None, max_eval_samples)
    else:
        held_out = min(max_eval_samples or 1000, 1000, max(2, len(train) // 20))
        split = train.train_test_split(test_size=held_out, seed=seed)
        train, evaluation = split["train"], split["test"]
    feature = evaluation.features.get(label_column)
    names = list(feature.names) if hasattr(feature, "names") else None
    if "description" in evaluation.column_names:  # captions built from class names: one image per class
        pairs = captions.unique_description_pairs(evaluation, caption_column=caption_column)
    else:
        pairs = captions.first_caption_pairs(evaluation, caption_column)
    return ImageTextData(train, evaluation, pairs, names, dataset_name or train_source or "")


def demo_vision_config() -> ViTConfig:
    """The demo's image tower: a 4-layer ViT, patch 4, on 28x28 images (128 wide)."""
    return ViTConfig(image_size=28, patch_size=4, num_channels=3, hidden_size=128, num_hidden_layers=4,
                     num_attention_heads=4, intermediate_size=256)  # fmt: skip
