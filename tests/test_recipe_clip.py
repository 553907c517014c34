"""recipes/clip.py: caption building (unit) and recipe smoke runs through ``accelerate launch``."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor, CLIPConfig, CLIPModel

import hfcontrast  # noqa: F401  (registers the Auto classes)
from hfcontrast.demo.captions import (
    FASHION_MNIST_CLASS_NAMES,
    HELD_OUT_TEMPLATES,
    SIZES,
    TONES,
    TRAIN_TEMPLATES,
    caption_dataset,
    fashion_mnist_captions,
    fill,
    first_caption_pairs,
    pixel_attributes,
    unique_description_pairs,
)
from hfcontrast.demo.fashion_mnist import FASHION_MNIST_LABELS, load_fashion_mnist
from tests.launch import REPO_ROOT, accelerate_launch, run_python
from tests.tiny import tokenizer

RECIPE = REPO_ROOT / "recipes" / "clip.py"
needs_fashion_mnist = pytest.mark.fashion_mnist  # skipped without the data set (tests/conftest.py)
TINY_VIT = "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64"


def blobs(levels: list[tuple[int, int]], label: int = 0) -> list[Image.Image]:
    """28x28 grayscale images with a centred square of ``side`` pixels at ``value``."""
    images = []
    for value, side in levels:
        array = np.zeros((28, 28), dtype=np.uint8)
        start = (28 - side) // 2
        array[start : start + side, start : start + side] = value
        images.append(Image.fromarray(array))
    return images


def tiny_labelled(n_per_class: int = 6) -> tuple[datasets.Dataset, np.ndarray]:
    grid = [(60 + 60 * (i % 3), 6 + 6 * (i // 3 % 3)) for i in range(n_per_class)]
    images = blobs(grid) + blobs(grid[::-1])
    labels = [0] * n_per_class + [1] * n_per_class
    pixels = np.stack([np.asarray(image) for image in images])
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features), pixels


def test_templates_are_disjoint_and_fill() -> None:
    assert not set(TRAIN_TEMPLATES) & set(HELD_OUT_TEMPLATES)
    filled = {fill(t, "sneaker") for t in TRAIN_TEMPLATES}
    assert not filled & {fill(t, "sneaker") for t in HELD_OUT_TEMPLATES}
    assert len(FASHION_MNIST_CLASS_NAMES) == len(FASHION_MNIST_LABELS) == 10
    with pytest.raises(ValueError, match="placeholder"):
        fill("no slot", "x")


def test_pixel_attributes_are_tertiles_within_each_class() -> None:
    # tone: 3 values, size: 3 sides; both classes get each level equally often
    grid = [(v, s) for v in (60, 120, 240) for s in (6, 12, 20)]
    images = blobs(grid) + blobs(grid)
    tone, size = pixel_attributes(images, [0] * 9 + [1] * 9)
    assert tone[:9].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and size[:9].tolist() == [0, 1, 2] * 3
    array_tone, array_size = pixel_attributes(np.stack([np.asarray(i) for i in images]), [0] * 9 + [1] * 9)
    assert array_tone.tolist() == tone.tolist() and array_size.tolist() == size.tolist()


def test_caption_dataset_columns_and_captions() -> None:
    dataset, pixels = tiny_labelled()
    captioned = caption_dataset(dataset, ["coat", "bag"])
    assert captioned.column_names == ["image", "label", "description", "caption"]
    row = captioned[0]
    assert len(row["caption"]) == 2 * len(TRAIN_TEMPLATES)
    assert row["caption"][0] == fill(TRAIN_TEMPLATES[0], "coat")
    assert row["description"].endswith(" coat") and row["description"].split(",")[0] in TONES
    assert any(size in row["description"] for size in SIZES)
    assert all(row["description"] in c for c in row["caption"][len(TRAIN_TEMPLATES) :])
    assert captioned["description"] == caption_dataset(dataset, ["coat", "bag"], pixels=pixels)["description"]
    plain = caption_dataset(dataset, ["coat", "bag"], attributes=False)
    assert plain[7]["description"] == "bag" and len(plain[7]["caption"]) == len(TRAIN_TEMPLATES)
    with pytest.raises(ValueError, match="one per class name"):
        caption_dataset(dataset, ["coat"])


def test_retrieval_pairs_have_one_correct_image_per_caption() -> None:
    captioned = caption_dataset(tiny_labelled(9)[0], ["coat", "bag"])
    pairs = unique_description_pairs(captioned)
    assert len(pairs) == len(set(captioned["description"])) == len(set(pairs["caption"]))
    assert all(c.startswith(HELD_OUT_TEMPLATES[0].split("{}")[0]) for c in pairs["caption"])
    first = first_caption_pairs(captioned, max_pairs=4)
    assert len(first) == 4 and first[0]["caption"] == captioned[0]["caption"][0]


@needs_fashion_mnist
def test_fashion_mnist_captions() -> None:
    test = fashion_mnist_captions("test", max_samples=60)
    assert len(test) == 60 and test.column_names == ["image", "label", "description", "caption"]
    assert FASHION_MNIST_CLASS_NAMES[test[0]["label"]] in test[0]["description"]
    # the attributes read from the idx arrays equal those computed from the decoded images
    decoded = caption_dataset(load_fashion_mnist("test", max_samples=60), FASHION_MNIST_CLASS_NAMES)
    assert decoded["description"] == test["description"]


# ----------------------------------------------------------------------------- recipe smoke runs
def _check_outputs(out: Path, zero_shot: bool) -> dict:  # type: ignore[type-arg]
    for name in ("model.safetensors", "config.json", "eval_results.json", "training.png", "README.md",
                 "processor_config.json", "tokenizer.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "eval_results.json").read_text())
    keys = {"retrieval_image_to_text_R@1", "retrieval_text_to_image_R@10"} | ({"zeroshot_top1"} if zero_shot else set())
    assert {f"{p}_{k}" for p in ("before", "eval") for k in keys} <= set(results)
    assert results["train_steps"] == 3
    assert "zero-shot-image-classification" in (out / "README.md").read_text()
    return results


@pytest.mark.distributed
@needs_fashion_mnist
def test_clip_recipe_default_data_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = accelerate_launch(
        RECIPE, "--output_dir", str(out), "--max_steps", "3", "--max_train_samples", "64", "--max_eval_samples", "40",
        "--per_device_train_batch_size", "8", "--vision_config_overrides", TINY_VIT, "--projection_dim", "16",
        "--eval_steps", "2", "--logging_steps", "1", "--queue_size", "16", "--max_seq_length", "16",
    )
    assert "zeroshot_top1  before:" in stdout
    _check_outputs(out, zero_shot=True)
    model = AutoModel.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    images = [row["image"].convert("RGB") for row in load_fashion_mnist("test", max_samples=6)]
    prompts = [fill(HELD_OUT_TEMPLATES[0], name) for name in FASHION_MNIST_CLASS_NAMES]
    inputs = processor(images=images, text=prompts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs)
    assert output.logits_per_image.shape == (6, 10) and torch.isfinite(output.logits_per_image).all()


@pytest.mark.distributed  # launches a process (slow), like the accelerate runs
def test_clip_recipe_imagefolder_siglip(tmp_path: Path) -> None:
    """An imagefolder without captions (built from the class folders), SigLIP, random-init tower by model type."""
    colours = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230)}
    for name, rgb in colours.items():
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(12):
            shade = tuple(max(0, c - 8 * i) for c in rgb)
            Image.new("RGB", (20, 20), shade).save(tmp_path / "images" / name / f"{i}.png")
    out = tmp_path / "out"
    stdout = run_python(
        RECIPE, "--train_dir", str(tmp_path / "images"), "--output_dir", str(out), "--loss", "siglip",
        "--vision_config_name", "vit", "--vision_config_overrides", TINY_VIT + ",image_size=16,patch_size=8",
        "--projection_dim", "16", "--max_steps", "3", "--per_device_train_batch_size", "8", "--eval_steps", "3",
        "--text_trainable_layers", "1", "--report_to", "none",
    )
    assert "retrieval_text_to_image_R@1  before:" in stdout
    results = _check_outputs(out, zero_shot=True)
    assert 0.0 <= results["eval_zeroshot_top1"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["logit_bias_init_value"] == -10.0 and config["vision_config"]["image_size"] == 16


@pytest.mark.distributed  # launches a process (slow)
@needs_fashion_mnist
def test_clip_recipe_converts_a_clip_checkpoint(tmp_path: Path) -> None:
    """--model_name_or_path of a CLIPModel (config model_type 'clip') goes through from_clip_pretrained."""
    text = dict(vocab_size=tokenizer().vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64, eos_token_id=tokenizer().sep_token_id)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=28,
                  patch_size=7)
    clip_dir, out = tmp_path / "clip", tmp_path / "out"
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(clip_dir)
    tokenizer().save_pretrained(clip_dir)
    run_python(
        RECIPE, "--model_name_or_path", str(clip_dir), "--output_dir", str(out), "--max_steps", "3",
        "--max_train_samples", "32", "--max_eval_samples", "20", "--per_device_train_batch_size", "8",
        "--eval_steps", "3", "--text_trainable_layers", "-1", "--report_to", "none",
    )  # fmt: skip
    _check_outputs(out, zero_shot=True)
    config = json.loads((out / "config.json").read_text())
    # Exported natively: a VisionTextDualEncoderModel of the CLIP towers (which pool by pooler_output, as CLIP does).
    assert config["model_type"] == "vision-text-dual-encoder" and config["text_config"]["model_type"] == "clip_text_model"
    assert config["vision_config"]["model_type"] == "clip_vision_model" and config["projection_dim"] == 16
