"""load_rgb_image mode handling and errors; MultiViewCollator / ImageEvalCollator batches."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hfcontrast.augment import eval_pipeline, simclr_pipeline
from hfcontrast.collators import images as images_module
from hfcontrast.collators.images import ImageEvalCollator, MultiViewCollator, load_rgb_image
from hfcontrast.collators.validation import CollatorInputError


def pixel(image: Image.Image) -> tuple[int, ...]:
    assert image.mode == "RGB"
    return tuple(np.asarray(image)[0, 0].tolist())


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load(value: object) -> Image.Image:
    return load_rgb_image(value, row=0, column="image")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (2, 2), 77), (77, 77, 77)),
        (Image.new("1", (2, 2), 1), (255, 255, 255)),
        (Image.new("RGBA", (2, 2), (10, 20, 30, 255)), (10, 20, 30)),
        (Image.new("RGBA", (2, 2), (10, 20, 30, 0)), (255, 255, 255)),  # transparent -> white
        (Image.new("RGBA", (2, 2), (0, 0, 0, 128)), (127, 127, 127)),
        (Image.new("LA", (2, 2), (40, 255)), (40, 40, 40)),
        (Image.new("CMYK", (2, 2), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("CMYK", (2, 2), (0, 0, 0, 255)), (0, 0, 0)),
        (Image.new("CMYK", (2, 2), (255, 0, 0, 0)), (0, 255, 255)),
        (Image.new("I;16", (2, 2), 65535), (255, 255, 255)),
        (Image.new("I;16", (2, 2), 32896), (128, 128, 128)),
        (Image.new("F", (2, 2), 0.5), (128, 128, 128)),  # floats in [0, 1]
        (Image.new("YCbCr", (2, 2), (255, 128, 128)), (255, 255, 255)),
    ],
    ids=[
        "L",
        "1",
        "RGBA-opaque",
        "RGBA-clear",
        "RGBA-half",
        "LA",
        "CMYK-white",
        "CMYK-black",
        "CMYK-cyan",
        "I16-max",
        "I16-mid",
        "F",
        "YCbCr",
    ],
)
def test_modes_convert_to_rgb(image: Image.Image, expected: tuple[int, int, int]) -> None:
    assert pixel(load(image)) == expected


def test_wide_integer_and_float_ranges() -> None:
    ramp16 = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.int32), mode="I")
    assert np.asarray(load(ramp16))[0, :, 0].tolist() == [0, 100, 255]
    ramp8 = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), mode="I")
    assert np.asarray(load(ramp8))[0, :, 0].tolist() == [0, 100, 255]
    signed = Image.fromarray(np.array([[-10.0, 0.0, 10.0]], dtype=np.float32), mode="F")
    assert np.asarray(load(signed))[0, :, 0].tolist() == [0, 128, 255]  # min-max


def test_palette_with_and_without_transparency() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([200, 10, 10, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert np.asarray(load(palette))[0].tolist() == [[200, 10, 10], [0, 0, 255]]
    palette.info["transparency"] = 1
    assert np.asarray(load(palette))[0].tolist() == [[200, 10, 10], [255, 255, 255]]
    reloaded = Image.open(io.BytesIO(png_bytes(palette)))
    assert np.asarray(load(reloaded))[0].tolist() == [[200, 10, 10], [255, 255, 255]]


def test_sixteen_bit_png_from_bytes_path_and_dict(tmp_path: Path) -> None:
    data = png_bytes(Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16)))
    path = tmp_path / "img16.png"
    path.write_bytes(data)
    for value in (
        data,
        bytearray(data),
        str(path),
        path,
        {"bytes": data, "path": None},
        {"bytes": None, "path": str(path)},
    ):
        assert pixel(load(value)) == (255, 255, 255)


def test_numpy_inputs() -> None:
    assert pixel(load(np.full((2, 3), 9, dtype=np.uint8))) == (9, 9, 9)
    assert pixel(load(np.full((2, 3, 1), 9, dtype=np.uint8))) == (9, 9, 9)
    rgb = load(np.tile(np.array([1, 2, 3], dtype=np.uint8), (2, 3, 1)))
    assert rgb.size == (3, 2) and pixel(rgb) == (1, 2, 3)
    assert pixel(load(np.zeros((2, 2, 4), dtype=np.uint8))) == (255, 255, 255)  # alpha 0 -> white
    assert pixel(load(np.full((2, 2, 3), 0.5, dtype=np.float32))) == (128, 128, 128)
    with pytest.raises(CollatorInputError, match="shape"):
        load(np.zeros((2, 2, 5), dtype=np.uint8))


def test_corrupt_image_names_row_column_and_reason() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    full = png_bytes(Image.fromarray(noise))
    truncated = full[: len(full) // 2]  # header is fine, decoding fails in load()
    for value in (b"definitely not an image", full[:40], truncated, {"bytes": truncated, "path": "x.png"}):
        with pytest.raises(CollatorInputError, match=r"row 3, column 'photo': cannot read image") as info:
            load_rgb_image(value, row=3, column="photo")
        assert "Error" in str(info.value)  # the underlying exception type is part of the message


def test_other_bad_values(tmp_path: Path) -> None:
    with pytest.raises(CollatorInputError, match=r"row 1, column 'image'.*No such file"):
        load_rgb_image(str(tmp_path / "missing.png"), row=1, column="image")
    with pytest.raises(CollatorInputError, match="image is None"):
        load(None)
    with pytest.raises(CollatorInputError, match="neither 'bytes' nor 'path'"):
        load({"bytes": None, "path": None})
    with pytest.raises(CollatorInputError, match="unsupported image type int"):
        load(42)


def rows(n: int, **extra: object) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    return [
        {"image": Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)), **extra}
        for _ in range(n)
    ]


def test_multiview_output_keys_shapes_dtypes_and_views_differ() -> None:
    collator = MultiViewCollator(
        pipeline=simclr_pipeline(size=12), label_column="label", id_column="id", seed=0
    )
    features = rows(3, label=4, id=9)
    features[1]["image"] = np.full((10, 10), 50, dtype=np.uint8)  # mixed sources and sizes
    batch = collator(features)
    assert set(batch) == {"query", "key", "labels", "ids"}
    for name in ("query", "key"):
        assert set(batch[name]) == {"pixel_values"}
        assert batch[name]["pixel_values"].shape == (3, 3, 12, 12)
        assert batch[name]["pixel_values"].dtype == torch.float32
    assert not torch.equal(batch["query"]["pixel_values"], batch["key"]["pixel_values"])
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [4, 4, 4]
    assert batch["ids"].dtype == torch.long and batch["ids"].tolist() == [9, 9, 9]


def test_multiview_view_names_and_per_view_pipelines() -> None:
    three = MultiViewCollator(n_views=3, pipeline=simclr_pipeline(size=8))(rows(2))
    assert list(three) == ["view_0", "view_1", "view_2"]
    asymmetric = MultiViewCollator(
        view_names=("online", "target"), pipeline=[simclr_pipeline(size=8), simclr_pipeline(size=6)]
    )(rows(2))
    assert asymmetric["online"]["pixel_values"].shape == (2, 3, 8, 8)
    assert asymmetric["target"]["pixel_values"].shape == (2, 3, 6, 6)


def test_multiview_same_seed_same_batch() -> None:
    features = rows(2)
    a = MultiViewCollator(pipeline=simclr_pipeline(size=8), seed=3)(features)
    b = MultiViewCollator(pipeline=simclr_pipeline(size=8), seed=3)(features)
    c = MultiViewCollator(pipeline=simclr_pipeline(size=8), seed=4)(features)
    assert torch.equal(a["query"]["pixel_values"], b["query"]["pixel_values"])
    assert torch.equal(a["key"]["pixel_values"], b["key"]["pixel_values"])
    assert not torch.equal(a["query"]["pixel_values"], c["query"]["pixel_values"])


def test_multiview_reseeds_per_dataloader_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    features = rows(2)
    worker_seed = {"value": 100}
    monkeypatch.setattr(images_module.torch.utils.data, "get_worker_info", lambda: object())
    monkeypatch.setattr(images_module.torch, "initial_seed", lambda: worker_seed["value"])

    def first_batch(seed_of_worker: int) -> torch.Tensor:
        worker_seed["value"] = seed_of_worker
        collator = MultiViewCollator(pipeline=simclr_pipeline(size=8), seed=0)  # a worker's copy
        return collator(features)["query"]["pixel_values"]

    assert torch.equal(first_batch(100), first_batch(100))
    assert not torch.equal(first_batch(100), first_batch(101))  # two workers draw different views


def test_multiview_batch_of_one_and_missing_column() -> None:
    collator = MultiViewCollator(pipeline=simclr_pipeline(size=8))
    with pytest.raises(CollatorInputError, match=r"batch has 1 row.*at least 2"):
        collator(rows(1))
    features = rows(3)
    del features[2]["image"]
    with pytest.raises(CollatorInputError, match=r"row 2: missing column 'image'"):
        collator(features)
    with pytest.raises(CollatorInputError, match=r"row 0, column 'label': expected an integer"):
        MultiViewCollator(pipeline=simclr_pipeline(size=8), label_column="label")(rows(2, label="cat"))
    bad = rows(2)
    bad[1]["image"] = b"garbage"
    with pytest.raises(CollatorInputError, match=r"row 1, column 'image': cannot read image"):
        collator(bad)


def test_multiview_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="n_views must be an integer >= 2"):
        MultiViewCollator(n_views=1)
    with pytest.raises(ValueError, match="view_names must name 2 views"):
        MultiViewCollator(view_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="got 1 pipelines for 2 views"):
        MultiViewCollator(pipeline=[simclr_pipeline(size=8)])


def test_eval_collator() -> None:
    collator = ImageEvalCollator(pipeline=eval_pipeline(size=8))
    features = rows(2, label=1)
    batch = collator(features)
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].shape == (2, 3, 8, 8) and batch["pixel_values"].dtype == torch.float32
    assert torch.equal(batch["pixel_values"], collator(features)["pixel_values"])  # deterministic
    assert batch["labels"].tolist() == [1, 1]
    assert collator(features[:1])["pixel_values"].shape == (1, 3, 8, 8)
    assert set(ImageEvalCollator(label_column=None, pipeline=eval_pipeline(size=8))(rows(1))) == {
        "pixel_values"
    }
    with pytest.raises(CollatorInputError, match="batch has 0 row"):
        collator([])


def test_the_row_check_and_the_collator_accept_the_same_image_kinds() -> None:
    """One helper (``image_kind``) for both: a ``memoryview`` of PNG bytes passes the check before training and
    decodes in the collator; a value of no image kind is refused by both, naming row and column."""
    from hfcontrast.collators.checks import BadRowsError, check_rows, image_kind

    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 6, 3), 200, dtype=np.uint8)).save(buffer, format="PNG")
    rows = [{"image": memoryview(buffer.getvalue())}, {"image": bytearray(buffer.getvalue())}]
    assert [image_kind(row["image"]) for row in rows] == ["bytes", "bytes"]
    views = MultiViewCollator("image", pipeline=eval_pipeline(6, resize_size=6))
    assert check_rows(rows, views, source="rows.jsonl").rejected == 0
    assert views(rows)["query"]["pixel_values"].shape == (2, 3, 6, 6)
    bad = [rows[0], {"image": 3.5}]
    with pytest.raises(BadRowsError, match=r"(?s)rows.jsonl: 1 of 2 rows.*row 1, column .image.: expected an image"):
        check_rows(bad, views, source="rows.jsonl")
    with pytest.raises(CollatorInputError, match=r"row 1, column 'image': unsupported image type float"):
        views(bad)


def test_a_collator_without_a_row_spec_is_an_error_unless_unchecked() -> None:
    from hfcontrast.collators.checks import BadRowsError, check_rows

    def collate(rows: list[dict]) -> dict:  # type: ignore[type-arg]
        return {"query": {"pixel_values": torch.zeros(len(rows), 3, 2, 2)}}

    with pytest.raises(BadRowsError, match=r"train.csv: the collator function has no row_spec\(\).*bad_rows='unchecked'"):
        check_rows([{"image": None}], collate, source="train.csv")
    assert check_rows([{"image": None}], collate, source="train.csv", policy="unchecked").rejected == 0
