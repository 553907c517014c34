"""Image datasets for the vision recipes: Fashion-MNIST from its idx files (the offline default),
scikit-learn's ``load_digits`` (a fallback needing no download), and user data (an ``imagefolder``
directory, a csv/json file of image paths, or a Hub dataset).

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) comes from Debian/Ubuntu's ``dataset-fashion-mnist``
package, which installs the four idx files under ``/usr/share/datasets/fashion-mnist``
(``apt-get install -y dataset-fashion-mnist``); ``$HFCONTRAST_FASHION_MNIST`` points elsewhere.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image
from transformers import ConvNextImageProcessorPil, PreTrainedConfig, ResNetConfig

from .augment import ViewParams, ViewPipeline, byol_pipelines, eval_pipeline, mocov2_pipeline, simclr_pipeline

logger = logging.getLogger(__name__)

FASHION_MNIST_ENV = "HFCONTRAST_FASHION_MNIST"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# Per-channel statistics of the Fashion-MNIST training images (grayscale, repeated for RGB).
FASHION_MNIST_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_MNIST_STD = (0.3530, 0.3530, 0.3530)
FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_SPLIT_FILES = {"train": "train", "test": "t10k"}
# idx type codes (http://yann.lecun.com/exdb/mnist/): data type of the payload, big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxFormatError(ValueError):
    """An idx file whose header or length does not describe its contents."""


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (``.gz`` or plain) into an array of its declared type and shape.

    Header: two zero bytes, a type code (``0x08`` = unsigned byte, ...), the number of dimensions
    ``d``, then ``d`` big-endian 32-bit sizes; the payload follows in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError(f"{path}: not an idx file (the magic number must start with two zero bytes)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise IdxFormatError(f"{path}: unknown idx type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise IdxFormatError(f"{path}: truncated header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxFormatError(
            f"{path}: header says shape {shape} of {dtype} ({expected} bytes) but the payload has "
            f"{len(data) - header} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """``root``, else ``$HFCONTRAST_FASHION_MNIST``, else ``/usr/share/datasets/fashion-mnist``."""
    return Path(root or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {folder}. Install the data with "
        f"`apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), or set {FASHION_MNIST_ENV} to a "
        "folder holding the four idx files, or pass --train_file / --dataset_name"
    )


def has_fashion_mnist(root: str | os.PathLike[str] | None = None) -> bool:
    """True when all four Fashion-MNIST idx files are present."""
    folder = fashion_mnist_dir(root)
    stems = [f"{p}-{kind}" for p in _SPLIT_FILES.values() for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    return all((folder / stem).is_file() or (folder / f"{stem}.gz").is_file() for stem in stems)


def _png(array: np.ndarray) -> bytes:
    """Uncompressed PNG (zlib level 0): about 3x faster to write than the default, 60000 28x28
    Fashion-MNIST images take 4 s instead of 11 s and 53 MB in memory."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def images_to_dataset(
    images: np.ndarray, labels: np.ndarray, label_names: Sequence[str] | None = None
) -> datasets.Dataset:
    """``uint8 [N, H, W]`` (or ``[N, H, W, 3]``) and ``[N]`` integer labels -> a ``Dataset`` with an
    ``image`` column (``datasets.Image``, decoded to PIL) and a ``label`` column (``ClassLabel``)."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    names = list(label_names) if label_names else [str(i) for i in range(int(labels.max(initial=0)) + 1)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    rows = [{"bytes": _png(image), "path": None} for image in images]
    return datasets.Dataset.from_dict({"image": rows, "label": labels.astype(np.int64).tolist()}, features=features)


def _limit(images: np.ndarray, labels: np.ndarray, max_samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (images, labels) if max_samples is None else (images[:max_samples], labels[:max_samples])


def fashion_mnist_arrays(
    split: str = "train", root: str | os.PathLike[str] | None = None, *, max_samples: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``train`` (60000) or ``test`` (10000): ``uint8 [N, 28, 28]`` images, ``[N]`` labels."""
    if split not in _SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_FILES)}, got {split!r}")
    folder = fashion_mnist_dir(root)
    prefix = _SPLIT_FILES[split]
    images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0] or images.dtype != np.uint8:
        raise IdxFormatError(
            f"{folder}: {split} images {images.dtype}{images.shape} and labels {labels.shape} do not match"
        )
    return _limit(images, labels, max_samples)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None, *, max_samples: int | None = None
) -> datasets.Dataset:
    """Fashion-MNIST ``train`` (60000 rows) or ``test`` (10000) as a ``Dataset`` of 28x28 grayscale PIL
    images and ``label`` (10 classes, :data:`FASHION_MNIST_LABELS`); ``max_samples`` keeps the first N."""
    return images_to_dataset(*fashion_mnist_arrays(split, root, max_samples=max_samples), FASHION_MNIST_LABELS)


def digits_arrays(split: str = "train", *, size: int = 28, max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``load_digits`` (1797 8x8 digits, 10 classes; no download) upscaled to ``size``
    pixels; every 5th image is ``test`` (360), the rest ``train`` (1437)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the digits fallback needs scikit-learn: pip install 'hfcontrast[demo]'") from error
    if split not in _SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_FILES)}, got {split!r}")
    digits = load_digits()
    keep = (np.arange(len(digits.target)) % 5 == 0) == (split == "test")
    images = [Image.fromarray((image * (255 / 16)).astype(np.uint8)) for image in digits.images[keep]]
    resized = np.stack([np.asarray(im.resize((size, size), Image.Resampling.BILINEAR)) for im in images])
    return _limit(resized, digits.target[keep], max_samples)


def load_digits_dataset(split: str = "train", *, size: int = 28, max_samples: int | None = None) -> datasets.Dataset:
    """:func:`digits_arrays` as a ``Dataset`` of PIL images and ``label``."""
    return images_to_dataset(*digits_arrays(split, size=size, max_samples=max_samples))


def array_rows(images: np.ndarray, labels: np.ndarray) -> list[dict]:
    """``[{"image": uint8 array, "label": int}]``: a kNN memory bank that every evaluation embeds without
    Arrow row access or PNG decoding (a quarter of the CPU time of a ``Dataset``)."""
    return [{"image": image, "label": int(label)} for image, label in zip(images, labels)]


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
            "pass --image_column"
        )
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def with_index_column(dataset: datasets.Dataset, name: str = "row_index") -> datasets.Dataset:
    """Set column ``name`` to each row's position (the per-row augmentation seeds of
    :class:`~hfcontrast.collators.MultiViewCollator`, which make a resumed run exact)."""
    if name in dataset.column_names:
        dataset = dataset.remove_columns(name)
    return dataset.add_column(name, list(range(len(dataset))))


def _labels_as_classes(train: datasets.Dataset, test: datasets.Dataset, column: str) -> tuple[datasets.Dataset, ...]:
    """String labels (csv/json) -> ``ClassLabel`` ids shared by both splits (kNN needs integers)."""
    if isinstance(train.features[column], datasets.ClassLabel):
        if not isinstance(test.features[column], datasets.ClassLabel):
            test = test.cast_column(column, train.features[column])
        return train, test
    feature = train.features[column]
    if not isinstance(feature, datasets.Value) or feature.dtype not in ("string", "large_string"):
        return train, test
    names = sorted(set(train[column]) | set(test[column]))
    ids = {name: i for i, name in enumerate(names)}

    def encode(split: datasets.Dataset) -> datasets.Dataset:
        features = split.features.copy()
        features[column] = datasets.ClassLabel(names=names)
        return split.map(lambda row: {column: ids[row[column]]}, features=features)

    return encode(train), encode(test)


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
    test = None
    if validation_file:
        test = load_image_dataset(validation_file, max_samples=max_eval_samples, **kwargs)
    elif dataset_name:
        for split in ("test", "validation"):
            try:
                test = load_image_dataset(None, dataset_name, split=split, max_samples=max_eval_samples, **kwargs)
                break
            except ValueError:  # no such split
                continue
    name = dataset_name or Path(str(train_file)).name
    if test is None or not label_column or label_column not in train.column_names or label_column not in test.column_names:
        logger.warning("no labelled test split (--validation_file with a %r column): no kNN evaluation", label_column)
        return ImageSplits(train, None, None, name)
    train, test = _labels_as_classes(train, test, label_column)
    return ImageSplits(train, train, test, name)


def knn_subset(rows: Sequence[dict] | datasets.Dataset, size: int | None, seed: int = 0) -> Sequence[dict]:
    """A seeded random subset of ``size`` rows, in dataset order (all rows when ``size`` is None or not smaller)."""
    if size is None or size >= len(rows):
        return rows
    order = np.sort(np.random.default_rng(seed).permutation(len(rows))[:size])
    return rows.select(order) if isinstance(rows, datasets.Dataset) else [rows[int(i)] for i in order]


def demo_backbone_config() -> PreTrainedConfig:
    """The demo's small ResNet: a 32-channel stem, basic blocks, one per stage, widths 32/64/128/256,
    RGB input (a 256-d pooled feature)."""
    return ResNetConfig(
        num_channels=3, embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], layer_type="basic"
    )


def view_pipelines(
    kind: str,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    crop_min_scale: float | None = None,
    jitter_strength: float = 0.4,
) -> list[ViewPipeline]:
    """Two training view pipelines.

    ``light`` (the demo's, for small grayscale images such as Fashion-MNIST): random resized crop,
    flip and brightness/contrast jitter of ``jitter_strength`` with p 0.8, no colour, grayscale or blur;
    ``simclr`` / ``mocov2`` / ``byol``: the papers' pipelines (blur off below 64 pixels, as for CIFAR).
    """
    blur = 0.0 if size < 64 else 0.5
    if kind == "light":
        params = ViewParams(
            size=size, crop_scale=(crop_min_scale or 0.35, 1.0), brightness=jitter_strength,
            contrast=jitter_strength, saturation=0.0, hue=0.0, jitter_p=0.8, grayscale_p=0.0, blur_p=0.0,
            mean=_rgb(mean), std=_rgb(std),
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
