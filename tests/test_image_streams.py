"""``--streaming`` in the image recipes (:mod:`hfcontrast.cli.image_streams`): a folder or a table of image paths read
as a stream gives the rows the map-style loader gives; the kNN bank is the stream's first labelled rows; the recipes
train from a stream, a corrupt image recorded by source, row and column."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from hfcontrast.cli.image_streams import image_stream, streamed_knn_splits
from hfcontrast.demo.images import load_image_dataset
from tests.launch import REPO_ROOT, run_python
from tests.test_recipe_clip import TINY_VIT
from tests.test_recipe_shards import _images, _validation


def _pixels(value: object) -> np.ndarray:
    if isinstance(value, dict):  # undecoded: {"bytes", "path"}
        value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
    elif isinstance(value, str):
        value = Image.open(value)
    assert isinstance(value, Image.Image)
    return np.asarray(value.convert("RGB"))


def test_a_streamed_folder_or_table_gives_the_rows_of_the_map_style_loader(tmp_path: Path) -> None:
    root = _images(tmp_path)
    (folder_name, folder), = image_stream(str(root / "images"), None, image_column="image").items()
    loaded = load_image_dataset(str(root / "images"))
    streamed = list(folder)
    assert folder_name == str(root / "images") and len(streamed) == len(loaded) == 48
    assert [r["label"] for r in streamed] == loaded["label"]
    for row, expected in zip(streamed, loaded, strict=True):
        np.testing.assert_array_equal(_pixels(row["image"]), _pixels(expected["image"]))

    (_, table), = image_stream(str(root / "captions.csv"), None, image_column="image", max_samples=7).items()
    rows, expected_rows = list(table), load_image_dataset(str(root / "captions.csv")).select(range(7))
    assert [r["image"] for r in rows] == expected_rows["image"]  # relative paths resolved against the file's folder
    assert [r["caption"] for r in rows] == expected_rows["caption"]


def test_a_streamed_runs_knn_bank_draws_from_the_whole_folder(tmp_path: Path) -> None:
    """The folder streams class by class (16 blue, 16 green, 16 red): its first 20 rows would miss red; the bank's
    20 come from the folder's files in a seeded random order, so every class is there, the same draw each time."""
    root = _images(tmp_path)
    (_, stream), = image_stream(str(root / "images"), None, image_column="image").items()
    assert [r["label"] for r in stream.take(20)].count(2) == 0

    def splits(seed: int) -> Any:
        return streamed_knn_splits([stream], name="images", validation_file=str(_validation(root)), dataset_name=None,
                                   image_column="image", label_column="label", bank_size=20, max_eval_samples=None,
                                   seed=seed)  # fmt: skip

    first = splits(0)
    assert first.knn_train is not None and first.knn_test is not None and len(first.knn_train) == 20
    assert set(first.knn_train["label"]) == {0, 1, 2}  # the folder's class ids: blue 0, green 1, red 2
    assert [r["image"]["path"] for r in first.knn_train] == [r["image"]["path"] for r in splits(0).knn_train]
    names = first.knn_test.features["label"].names  # the test's string labels as the same classes
    assert [names[c] for c in first.knn_test["label"]] == [Path(p).parent.name for p in
                                                           load_image_dataset(str(root / "val.csv"))["image"]]  # fmt: skip
    assert names == ["blue", "green", "red"]


@pytest.mark.parametrize("source", ["images", "captions.csv"])
def test_a_streamed_folder_or_table_resumes_at_its_saved_row(source: str, tmp_path: Path) -> None:
    """The stream's own ``state_dict()`` after 13 rows: a fresh stream loading it reads exactly the 35 rows after."""
    root = _images(tmp_path)
    (_, first), = image_stream(str(root / source), None, image_column="image").items()
    rows = iter(first)
    for _ in range(13):
        next(rows)
    state = first.state_dict()
    (_, again), = image_stream(str(root / source), None, image_column="image").items()
    again.load_state_dict(state)
    assert [r["image"] for r in again] == [r["image"] for r in list(first)[13:]]


def test_streaming_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    root = _images(tmp_path)
    with pytest.raises(ValueError, match="--streaming reads --train_file or --dataset_name"):
        image_stream(None, None, image_column="image")
    with pytest.raises(ValueError, match=r"no image column 'picture'.*--image_column"):
        image_stream(str(root / "captions.csv"), None, image_column="picture")
    with pytest.raises(ValueError, match=r"expected an image folder or a \.csv"):
        image_stream(str(root / "captions.txt"), None, image_column="image")
    ids = _validation(root, ids=True).rename(root / "ids.csv")
    (_, stream), = image_stream(str(ids), None, image_column="image").items()
    with pytest.raises(ValueError, match=r"ids.csv's labels are class ids and .*val.csv's are class names"):
        streamed_knn_splits([stream], name="ids.csv", validation_file=str(_validation(root)), dataset_name=None,
                            image_column="image", label_column="label", bank_size=None, max_eval_samples=None)  # fmt: skip


@pytest.mark.distributed  # launches the recipes (slow)
def test_the_image_recipes_train_from_a_stream_and_record_a_corrupt_image(tmp_path: Path) -> None:
    """CLIP streams the captions CSV, evaluated on a --validation_file; SimCLR streams the image folder (a corrupt
    image recorded under --bad_rows skip, by folder, row and column), kNN-tested on a labelled CSV."""
    root = _images(tmp_path)
    validation = _validation(root)
    out = tmp_path / "clip"
    run_python(REPO_ROOT / "recipes" / "clip.py", "--train_file", str(root / "captions.csv"), "--streaming",
               "--validation_file", str(root / "captions.csv"), "--output_dir", str(out), "--vision_config_name", "vit",
               "--vision_config_overrides", TINY_VIT + ",image_size=16,patch_size=8", "--projection_dim", "16",
               "--max_steps", "3", "--per_device_train_batch_size", "4", "--eval_strategy", "no",
               "--text_trainable_layers", "1", "--max_seq_length", "16", "--report_to", "none")  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train_steps"] == 3 and "eval_retrieval_text_to_image_R@1" in results

    (root / "images" / "green" / "3.png").write_bytes(b"\x89PNG, cut short")
    (_, stream), = image_stream(str(root / "images"), None, image_column="image").items()
    corrupt_row = next(i for i, r in enumerate(stream) if r["image"]["path"].endswith("green/3.png"))
    out = tmp_path / "simclr"
    run_python(REPO_ROOT / "recipes" / "simclr.py", "--train_file", str(root / "images"), "--streaming",
               "--validation_file", str(validation), "--shuffle_buffer_size", "12", "--bad_rows", "skip",
               "--output_dir", str(out), "--max_steps", "5", "--per_device_train_batch_size", "8", "--image_size", "16",
               "--eval_strategy", "no", "--projection_dim", "16", "--knn_k", "5", "--report_to", "none")  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train_steps"] == 5 and results["train_rejected_rows"] == 1 and 0 <= results["eval_knn_top1"] <= 1
    (record,) = [json.loads(line) for f in out.glob("rejected_rows*.jsonl") for line in f.read_text().splitlines()]
    assert (record["source"], record["row"], record["problems"][0]["column"]) == (str(root / "images"), corrupt_row, "image")
