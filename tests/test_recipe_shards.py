"""The image recipes train from WebDataset shards written by ``python -m hfcontrast.shards``, offline; a sharded
CLIP run on two "machines" (one process each, localhost, gloo) ends with the weights of one machine with two."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import BertModel

from tests.launch import REPO_ROOT, accelerate_command, run, run_python, run_two_machines
from tests.test_recipe_clip import TINY_VIT
from tests.tiny import bert_config, fresh_tokenizer

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230)}


def _images(root: Path, per_class: int = 16) -> Path:
    """A folder of class sub-folders of noisy colour squares, and ``captions.csv`` naming each image's colour."""
    rng = np.random.default_rng(0)
    rows = []
    for name, rgb in COLOURS.items():
        (root / "images" / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "images" / name / f"{i}.png")
            rows.append({"image": f"images/{name}/{i}.png", "caption": f"a {name} square, number {i}"})
    with (root / "captions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _validation(root: Path, ids: bool = False) -> Path:
    """Every third image of ``captions.csv`` with its colour as a string label (``ids``: its class id, the colours
    in sorted order, as an image folder's classes and its shards' ``.cls`` number them)."""
    rows = list(csv.DictReader((root / "captions.csv").open()))
    with (root / "val.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label"])
        writer.writeheader()
        colours = sorted(COLOURS)
        labels = [r["image"].split("/")[1] for r in rows[::3]]
        writer.writerows({"image": r["image"], "label": colours.index(c) if ids else c} for r, c in zip(rows[::3], labels, strict=True))
    return root / "val.csv"


def _write_shards(root: Path, *source: str) -> str:
    run([sys.executable, "-m", "hfcontrast.shards", "--output", str(root / "shards" / "train-%05d.tar"), *source,
         "--samples_per_shard", "10"])  # fmt: skip
    shards = sorted((root / "shards").glob("train-*.tar"))
    assert len(shards) == 5  # 48 images, 10 a shard
    return str(root / "shards" / "train-{00000..00004}.tar")


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


@pytest.mark.distributed  # launches processes (slow)
def test_sharded_clip_on_two_machines_equals_one_machine_with_two_processes(tmp_path: Path) -> None:
    root = _images(tmp_path)
    shards = _write_shards(root, "--csv", str(root / "captions.csv"))
    text_tower = tmp_path / "tiny-bert"  # a 2-layer text tower (MiniLM's tokenizer): the launches load it 6 times
    BertModel(bert_config()).save_pretrained(text_tower)
    fresh_tokenizer().save_pretrained(text_tower)

    def flags(out: Path) -> list[str]:
        return ["--train_dir", str(root / "images"), "--train_shards", shards, "--shuffle_buffer_size", "12",
                "--output_dir", str(out), "--text_model_name_or_path", str(text_tower), "--vision_config_name", "vit",
                "--vision_config_overrides", TINY_VIT + ",image_size=16,patch_size=8", "--projection_dim", "16",
                "--max_steps", "4", "--per_device_train_batch_size", "4", "--eval_strategy", "no",
                "--text_trainable_layers", "1", "--max_seq_length", "16", "--report_to", "none"]  # fmt: skip

    recipe = REPO_ROOT / "recipes" / "clip.py"
    run(accelerate_command(recipe, *flags(tmp_path / "one")))
    run_two_machines(recipe, *flags(tmp_path / "two"))
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(one[name], two[name], rtol=0, atol=0, msg=name)
    initial = json.loads((tmp_path / "one" / "eval_results.json").read_text())
    assert initial["train_steps"] == 4 and "train_rejected_rows" not in initial  # written when rows were left out


@pytest.mark.distributed  # launches a process (slow)
def test_simclr_trains_from_shards_and_records_a_corrupt_member(tmp_path: Path) -> None:
    """SimCLR from shards of an image folder, kNN-tested on a --validation_file; a corrupt image (green/3.png: sample 25, blue's 16 then green 0 1 10..15
    2 3, so row 5 of the third shard) is a bad row, recorded under --bad_rows skip."""
    root = _images(tmp_path)
    (root / "images" / "green" / "3.png").write_bytes(b"\x89PNG, cut short")
    shards = _write_shards(root, "--image_folder", str(root / "images"))
    flags = ["--train_shards", shards, "--demo_dataset", "digits", "--output_dir", str(tmp_path / "skip"), "--max_steps", "3",
             "--per_device_train_batch_size", "8", "--image_size", "16", "--max_eval_samples", "32",
             "--eval_strategy", "no", "--projection_dim", "16", "--knn_k", "5", "--report_to", "none"]  # fmt: skip
    printed = run_python(REPO_ROOT / "recipes" / "simclr.py", *flags, "--bad_rows", "skip",  # error mode: test_streams.py
                         "--validation_file", str(_validation(root, ids=True)))  # the kNN's bank: the shards' readable rows
    assert "kNN top-1 (train-{00000..00004}.tar test, k=5)" in printed
    results = json.loads((tmp_path / "skip" / "eval_results.json").read_text())
    assert results["train_steps"] == 3 and results["train_rejected_rows"] == 1
    (record,) = [json.loads(line) for f in (tmp_path / "skip").glob("rejected_rows*.jsonl") for line in f.read_text().splitlines()]
    assert (Path(record["source"]).name, record["row"], record["problems"][0]["column"]) == ("train-00002.tar", 5, "image")
