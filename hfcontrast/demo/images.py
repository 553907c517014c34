"""Image data for the vision recipes: user data (an ``imagefolder`` directory, a csv/json file of image
paths, or a Hub dataset) or the demo's, the kNN splits, and the view pipelines of each method."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image
from transformers import ConvNextImageProcessorPil, PreTrainedConfig, ResNetConfig, ViTConfig

from ..augment import ViewPipeline, eval_pipeline
from .fashion_mnist import (
    FASHION_MNIST_LABELS,
    array_rows,
    digits_arrays,
    fashion_mnist_arrays,
    images_to_dataset,
)

logger = logging.getLogger(__name__)


def _resolve_paths(dataset: datasets.Dataset, column: str, base: Path) -> datasets.Dataset:
    """Relative image paths in a csv/json file are relative to that file's folder."""
    if column not in dataset.column_names or not isinstance(dataset[0][column], str):
        return dataset

    def resolve(row: dict) -> dict:
        value = row[column]
        return {column: value if os.path.isabs(value) else str(base / value)}

    return dataset.map(resolve)


def load_image_dataset(
    train_file: str | None = None,
    dataset_name: str | None = None,
    *,
    split: str = "train",
    image_column: str = "image",
    max_samples: int | None = None,
) -> datasets.Dataset:
    """A labelled (or unlabelled) image dataset for training or evaluation.

    * ``train_file`` a directory: ``datasets``' ``imagefolder`` (class sub-folders become ``label``);
    * ``train_file`` a ``.csv``/``.tsv``/``.json(l)`` file: rows with an image path column (relative
      paths are resolved against the file's folder) and optionally a label column;
    * ``dataset_name``: a Hub dataset (needs network), split ``split``.
    """
    if train_file:
        path = Path(train_file)
        if path.is_dir():
            dataset = datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
        else:
            suffix = path.suffix.lower()
            builders = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
            if suffix not in builders or not path.is_file():
                raise ValueError(f"{train_file}: expected an image folder or a .csv/.tsv/.json/.jsonl file")
            kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
            dataset = datasets.load_dataset(builders[suffix], data_files=str(path), split="train", **kwargs)
            dataset = _resolve_paths(dataset, image_column, path.parent)
    elif dataset_name:
        dataset = datasets.load_dataset(dataset_name, split=split)
    else:
        raise ValueError("pass a train file/folder or a dataset name")
    if len(dataset) == 0:
        raise ValueError(f"the image data {train_file or dataset_name} has no rows")
    if image_column not in dataset.column_names:
        raise ValueError(
            f"{train_file or dataset_name}: no image column {image_column!r} (columns: {dataset.column_names}); "
            "pass image_column"
        )
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def load_test_split(
    validation_file: str | None, dataset_name: str | None, *, image_column: str, max_samples: int | None
) -> datasets.Dataset | None:
    """The labelled rows a kNN evaluation tests on: ``validation_file``, else the Hub dataset's ``test`` or
    ``validation`` split; ``None`` without either."""
    if validation_file:
        return load_image_dataset(validation_file, image_column=image_column, max_samples=max_samples)
    for split in ("test", "validation") if dataset_name else ():
        try:
            return load_image_dataset(None, dataset_name, split=split, image_column=image_column, max_samples=max_samples)
        except ValueError:  # no such split
            continue
    return None


def _is_text(feature: object) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def _labels_as_classes(
    train: datasets.Dataset, test: datasets.Dataset, column: str, *, train_name: str = "the training data",
    test_name: str = "the test split",
) -> tuple[datasets.Dataset, datasets.Dataset]:  # fmt: skip
    """String labels (csv/json) -> ``ClassLabel`` ids shared by both splits (kNN needs integers). Class names
    tested against a ``ClassLabel`` take its ids, encoded here (datasets 4.x cannot cast names); a name that is not
    one of its classes is an error."""
    feature = train.features[column]
    if isinstance(feature, datasets.ClassLabel):
        if isinstance(test.features[column], datasets.ClassLabel):
            return train, test
        if not _is_text(test.features[column]):
            return train, test.cast_column(column, feature)
        names = list(feature.names)
        unknown = sorted(set(test[column]) - set(names))
        if unknown:
            raise ValueError(f"{test_name}: labels {unknown[:5]} are not classes of {train_name} {names[:20]}")
        return train, _encode_names(test, column, names)
    if not _is_text(feature):
        return train, test
    names = sorted(set(train[column]) | set(test[column]))
    return _encode_names(train, column, names), _encode_names(test, column, names)


def _encode_names(split: datasets.Dataset, column: str, names: list[str]) -> datasets.Dataset:
    ids = {name: i for i, name in enumerate(names)}
    features = split.features.copy()
    features[column] = datasets.ClassLabel(names=names)
    return split.map(lambda row: {column: ids[row[column]]}, features=features)


@dataclass
class ImageSplits:
    """``train``: rows to augment; ``knn_train`` / ``knn_test``: labelled rows for kNN (a ``Dataset``, or
    decoded rows for the small demo sets; ``None`` without labels or a test split); ``name``: the
    data's name for the model card."""

    train: datasets.Dataset
    knn_train: Sequence[dict] | None
    knn_test: Sequence[dict] | None
    name: str
    demo: bool = False


def load_image_splits(
    *,
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    demo_dataset: str = "fashion_mnist",
    image_column: str = "image",
    label_column: str | None = "label",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> ImageSplits:
    """The training rows and the labelled kNN memory bank (the training rows) and test rows.

    With neither ``train_file`` nor ``dataset_name``: the offline demo, ``fashion_mnist`` (train 60000 /
    test 10000, see :func:`load_fashion_mnist`) or ``digits`` (:func:`load_digits_dataset`). Otherwise
    :func:`load_image_dataset`; the test rows come from ``validation_file``, else from the Hub dataset's
    ``test`` or ``validation`` split.
    """
    if not train_file and not dataset_name:
        if demo_dataset not in ("fashion_mnist", "digits"):
            raise ValueError(f"demo_dataset must be 'fashion_mnist' or 'digits', got {demo_dataset!r}")
        arrays = fashion_mnist_arrays if demo_dataset == "fashion_mnist" else digits_arrays
        names = FASHION_MNIST_LABELS if demo_dataset == "fashion_mnist" else None
        train_images, train_labels = arrays("train", max_samples=max_train_samples)
        test_images, test_labels = arrays("test", max_samples=max_eval_samples)
        train = images_to_dataset(train_images, train_labels, names)
        knn_train, knn_test = array_rows(train_images, train_labels), array_rows(test_images, test_labels)
        return ImageSplits(train, knn_train, knn_test, demo_dataset, demo=True)
    kwargs = {"image_column": image_column}
    train = load_image_dataset(train_file, dataset_name, split="train", max_samples=max_train_samples, **kwargs)
    test = load_test_split(validation_file, dataset_name, image_column=image_column, max_samples=max_eval_samples)
    name = dataset_name or Path(str(train_file)).name
    if test is None or not label_column or label_column not in train.column_names or label_column not in test.column_names:
        logger.warning("no labelled test split (validation_file with a %r column): no kNN evaluation", label_column)
        return ImageSplits(train, None, None, name)
    train, test = _labels_as_classes(train, test, label_column, train_name=name, test_name=validation_file or name)
    return ImageSplits(train, train, test, name)


def knn_subset(rows: Sequence[dict] | datasets.Dataset, size: int | None, seed: int = 0) -> Sequence[dict]:
    """A seeded random subset of ``size`` rows, in dataset order (all rows when ``size`` is None or not smaller)."""
    if size is None or size >= len(rows):
        return rows
    order = np.sort(np.random.default_rng(seed).permutation(len(rows))[:size])
    return rows.select(order) if isinstance(rows, datasets.Dataset) else [rows[int(i)] for i in order]


def demo_backbone_config(kind: str = "resnet", image_size: int = 28) -> PreTrainedConfig:
    """The demo's small backbones. ``resnet``: a 32-channel stem, basic blocks, one per stage, widths
    32/64/128/256 (a 256-d pooled feature); ``vit``: ``image_size`` px (the views' side, so that the exported
    ``ViTModel`` takes its processor's images as they are), 4 px patches, 4 layers, 4 heads, width 64."""
    if kind == "vit":
        return ViTConfig(
            image_size=image_size, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=256,
        )  # fmt: skip
    if kind != "resnet":
        raise ValueError(f"demo backbone must be resnet or vit, got {kind!r}")
    return ResNetConfig(
        num_channels=3, embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], layer_type="basic"
    )


def _rgb(values: Sequence[float]) -> tuple[float, float, float]:
    seq = [float(v) for v in values] * (3 if len(values) == 1 else 1)
    return seq[0], seq[1], seq[2]


def eval_view(
    size: int, mean: Sequence[float], std: Sequence[float], crop_fraction: float = 1.0
) -> tuple[ViewPipeline, ConvNextImageProcessorPil]:
    """The deterministic evaluation view (shorter side to ``size / crop_fraction``, centre ``size`` crop)
    and the equivalent ``transformers`` image processor, saved with the exported model."""
    pipeline = eval_pipeline(size, _rgb(mean), _rgb(std), resize_size=round(size / crop_fraction))
    processor = ConvNextImageProcessorPil(
        size={"shortest_edge": size}, crop_pct=crop_fraction, resample=Image.Resampling.BILINEAR,
        image_mean=list(_rgb(mean)), image_std=list(_rgb(std)),
    )  # fmt: skip
    return pipeline, processor
