"""``hfcontrast.demo.fashion_mnist`` and ``hfcontrast.demo.images``: the idx parser on files written here, Fashion-MNIST (real files when
installed), the digits fallback, user image data, and the eval view / image processor pair."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version
from PIL import Image
from transformers import AutoImageProcessor

from hfcontrast.augment import view_pipelines
from hfcontrast.collators import ImageEvalCollator, with_index_column
from hfcontrast.demo.fashion_mnist import (
    FASHION_MNIST_ENV,
    FASHION_MNIST_LABELS,
    IdxFormatError,
    has_fashion_mnist,
    load_digits_dataset,
    load_fashion_mnist,
    read_idx,
)
from hfcontrast.demo.images import eval_view, load_image_dataset, load_image_splits


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The idx format written independently of the parser: magic (0, 0, type, ndim), sizes, payload."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_fashion_mnist(root: Path, n_train: int = 5, n_test: int = 3, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) * 3 % 10).astype(np.uint8)
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            path = root / f"{prefix}-{kind}{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(data) if gz else data)
        arrays[prefix] = images
        arrays[prefix + "_labels"] = labels
    return arrays


def test_read_idx_plain_gzip_and_wider_types(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(images)))
    for name in ("a", "a.gz"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
        np.testing.assert_array_equal(got, images)
    ints = np.array([[-3, 70000], [5, -1]], dtype=np.int32)
    (tmp_path / "b").write_bytes(idx_bytes(ints, code=0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), ints)
    floats = np.array([0.5, -2.25], dtype=np.float32)
    (tmp_path / "c").write_bytes(idx_bytes(floats, code=0x0D))
    np.testing.assert_array_equal(read_idx(tmp_path / "c"), floats)


def test_read_idx_rejects_malformed_files(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((2, 2), dtype=np.uint8))
    cases = {
        "magic": (b"\x01" + good[1:], "not an idx file"),
        "type": (good[:2] + b"\x07" + good[3:], "unknown idx type"),
        "short": (good[:-1], "payload has 3 bytes"),
        "long": (good + b"\x00", "payload has 5 bytes"),
        "header": (good[:6], "truncated header"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(IdxFormatError, match=message):
            read_idx(tmp_path / name)


AUTO_PROCESSOR_WITHOUT_TORCHVISION = Version(transformers.__version__) >= Version("5.18")


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_from_tiny_files(tmp_path: Path, gz: bool) -> None:
    arrays = write_fashion_mnist(tmp_path, gz=gz)
    assert has_fashion_mnist(tmp_path)
    train = load_fashion_mnist("train", tmp_path)
    assert len(train) == 5 and train.features["label"].names == list(FASHION_MNIST_LABELS)
    for i, row in enumerate(train):
        assert row["image"].mode == "L" and row["image"].size == (28, 28)
        np.testing.assert_array_equal(np.asarray(row["image"]), arrays["train"][i])
        assert row["label"] == arrays["train_labels"][i]
    test = load_fashion_mnist("test", tmp_path, max_samples=2)
    assert len(test) == 2 and test[1]["label"] == 3
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation", tmp_path)


def test_missing_fashion_mnist_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not has_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)
    write_fashion_mnist(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert len(load_fashion_mnist("test")) == 3  # the environment variable points at the files


@pytest.mark.fashion_mnist
def test_real_fashion_mnist() -> None:
    for split, n in (("train", 60000), ("test", 10000)):
        data = load_fashion_mnist(split)
        assert len(data) == n
        labels = np.asarray(data["label"])
        assert sorted(set(labels.tolist())) == list(range(10))
        assert np.bincount(labels).tolist() == [n // 10] * 10
        image = data[0]["image"]
        assert image.mode == "L" and image.size == (28, 28)


def test_digits_fallback() -> None:
    train, test = load_digits_dataset("train", size=16), load_digits_dataset("test", size=16)
    assert (len(train), len(test)) == (1437, 360)
    assert train[0]["image"].size == (16, 16) and set(test["label"]) == set(range(10))


def _png(path: Path, value: int) -> None:
    Image.fromarray(np.full((12, 10, 3), value, dtype=np.uint8)).save(path)


def test_user_image_data_folder_and_csv(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                _png(folder / f"{i}.png", 40 * i)
    folder_data = load_image_dataset(str(tmp_path / "train"))
    assert len(folder_data) == 6 and isinstance(folder_data.features["label"], datasets.ClassLabel)
    csv = tmp_path / "train.csv"  # relative paths, string labels
    csv.write_text("path,kind\n" + "".join(f"train/{c}/{i}.png,{c}\n" for c in ("cat", "dog") for i in range(3)))
    val = tmp_path / "val.csv"
    val.write_text("path,kind\nval/dog/0.png,dog\nval/cat/1.png,cat\n")
    splits = load_image_splits(
        train_file=str(csv), validation_file=str(val), image_column="path", label_column="kind"
    )
    assert splits.knn_train is not None and splits.knn_test is not None and not splits.demo
    assert splits.knn_test["kind"] == [1, 0] and splits.knn_train.features["kind"].names == ["cat", "dog"]
    assert Path(splits.train[0]["path"]).is_file()
    collated = ImageEvalCollator("path", "kind", eval_view(8, (0.5,), (0.5,))[0])([splits.knn_test[0]])
    assert collated["pixel_values"].shape == (1, 3, 8, 8)
    unlabelled = load_image_splits(train_file=str(csv), image_column="path", label_column="kind")
    assert unlabelled.knn_test is None  # no test split: no kNN evaluation
    with pytest.raises(ValueError, match="no image column"):
        load_image_dataset(str(csv), image_column="image")


def test_index_column() -> None:
    data = datasets.Dataset.from_dict({"x": [5, 6, 7], "row_index": [9, 9, 9]})
    assert with_index_column(data)["row_index"] == [0, 1, 2]
    assert with_index_column(data, "idx")["idx"] == [0, 1, 2]


@pytest.mark.parametrize(("size", "crop"), [(28, 1.0), (24, 0.875)])
def test_saved_image_processor_gives_the_evaluation_pixels(tmp_path: Path, size: int, crop: float) -> None:
    pipeline, processor = eval_view(size, (0.3, 0.3, 0.3), (0.35, 0.35, 0.35), crop)
    processor.save_pretrained(tmp_path)
    # AutoImageProcessor works without torchvision from transformers 5.18 (docs/compatibility.md).
    loader = AutoImageProcessor if AUTO_PROCESSOR_WITHOUT_TORCHVISION else type(processor)
    loaded = loader.from_pretrained(tmp_path)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)).convert("RGB")
    expected = pipeline(image)
    got = loaded(images=image, return_tensors="pt")["pixel_values"][0]
    assert got.shape == expected.shape == (3, size, size)
    tolerance = 0 if crop == 1.0 else 0.05  # resampling differs slightly between the two resize paths
    torch.testing.assert_close(got, expected, rtol=0, atol=tolerance + 1e-6)


@pytest.mark.parametrize("kind", ["light", "simclr", "mocov2", "byol"])
def test_view_pipelines(kind: str) -> None:
    pipelines = view_pipelines(kind, 16, (0.5,), (0.5,))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
    import random

    views = [p(image.convert("RGB"), random.Random(0)) for p in pipelines]
    assert len(views) == 2 and all(v.shape == (3, 16, 16) for v in views)
    with pytest.raises(ValueError, match="augmentation"):
        view_pipelines("strong", 16, (0.5,), (0.5,))
