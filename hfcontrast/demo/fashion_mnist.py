"""The image demos' data: Fashion-MNIST from its idx files (the offline default) and scikit-learn's
``load_digits`` (a fallback needing no download or system package).

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) comes from Debian/Ubuntu's ``dataset-fashion-mnist``
package, which installs the four idx files under ``/usr/share/datasets/fashion-mnist``
(``apt-get install -y dataset-fashion-mnist``); ``$HFCONTRAST_FASHION_MNIST`` points elsewhere.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

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


def idx_file(folder: Path, stem: str) -> Path:
    """``folder/stem.gz`` or ``folder/stem``, or an error that says how to install the data."""
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {folder}. Install it with "
        "`sudo apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), or set "
        f"{FASHION_MNIST_ENV} to a folder holding the four idx files, or run the demo on scikit-learn's "
        "digits (no download): demo_dataset='digits', or pass train_file / dataset_name"
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
    images = read_idx(idx_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
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
