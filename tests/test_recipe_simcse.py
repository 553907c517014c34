"""Recipe smoke tests: ``accelerate launch recipes/simcse.py`` with 2 processes on tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import hfcontrast  # noqa: F401  (registers the Auto classes)
from hfcontrast.demo import default_text_model
from tests.launch import REPO_ROOT, accelerate_launch
from tests.test_trainer_text import sentences
from tests.tiny import bert_config, tokenizer

pytestmark = pytest.mark.distributed
RECIPE = REPO_ROOT / "recipes" / "simcse.py"


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    config_dir = tmp_path / "config"
    bert_config().save_pretrained(config_dir)
    text = sentences(80, 3)
    sts = tmp_path / "sts.tsv"
    sts.write_text(
        "".join(f"g\tf\t2012\t{i:04d}\t{i % 6}.0\t{text[i]}\t{text[40 + i]}\n" for i in range(20)), encoding="utf-8"
    )
    unsup = tmp_path / "train.txt"
    unsup.write_text("\n".join(text) + "\n\n", encoding="utf-8")  # a trailing blank line is removed, with a log
    triplets = tmp_path / "train.csv"
    triplets.write_text("sent0,sent1,hard_neg\n" + "".join(f"{text[i]},{text[i + 1]},{text[i + 2]}\n" for i in range(60)))
    return config_dir, sts, triplets


@pytest.mark.parametrize("mode", ["unsupervised", "supervised"])
def test_simcse_recipe_two_processes(tmp_path: Path, mode: str) -> None:
    config_dir, sts, triplets = _files(tmp_path)
    train = tmp_path / "train.txt" if mode == "unsupervised" else triplets
    out = tmp_path / "out"
    extra = ["--queue_size", "16"] if mode == "unsupervised" else ["--hard_negative_weight", "0.5"]
    stdout = accelerate_launch(
        RECIPE, "--config_name", str(config_dir), "--tokenizer_name", default_text_model(),
        "--train_file", str(train), "--validation_file", str(sts), "--output_dir", str(out),
        "--max_steps", "4", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3",
        "--eval_steps", "2", "--logging_steps", "1", "--max_seq_length", "16", *extra,
    )
    assert "Spearman before:" in stdout
    for name in ("model.safetensors", "config.json", "eval_results.json", "training.png", "README.md", "modules.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "eval_results.json").read_text())
    assert {"before_sts_spearman", "eval_sts_spearman"} <= set(results)
    assert results["train_steps"] == 4
    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        emb = model(**tokenizer()(["a red cat", "the sea"], padding=True, return_tensors="pt")).embeddings
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()
