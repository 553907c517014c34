"""Recipe smoke tests: ``accelerate launch recipes/simcse.py`` with 2 processes on tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import hfcontrast  # noqa: F401  (registers the Auto classes)
from hfcontrast import ContrastiveTextModel
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
    assert type(AutoModel.from_pretrained(out)).__name__ == "BertModel"  # the standard folder's plain backbone
    model = ContrastiveTextModel.from_pretrained(str(out)).eval()  # read back to train on
    with torch.no_grad():
        emb = model(**tokenizer()(["a red cat", "the sea"], padding=True, return_tensors="pt")).embeddings
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()


def test_two_datasets_matryoshka_prompts_and_truncated_export(tmp_path: Path) -> None:
    """Two files with their own columns, Matryoshka with an STS evaluator per width, prompts kept out of
    pooling, a 16-d export: what AutoModel and sentence-transformers (with prompt_name) load."""
    from sentence_transformers import SentenceTransformer

    config_dir, sts, triplets = _files(tmp_path)
    out = tmp_path / "out"
    stdout = accelerate_launch(
        RECIPE, "--config_name", str(config_dir), "--tokenizer_name", default_text_model(),
        "--train_file", str(tmp_path / "train.txt"), str(triplets), "--multi_dataset_policy", "round_robin",
        "--validation_file", str(sts), "--output_dir", str(out), "--max_steps", "4", "--per_device_train_batch_size", "8",
        "--eval_steps", "4", "--max_seq_length", "16", "--matryoshka_dims", "32,16,8",
        "--prompts", '{"anchor": "query: ", "positive": "passage: "}', "--pool_prompt_tokens", "false",
        "--truncate_dim", "16", "--pooler", "mean",
        "--export_format", "hfcontrast",  # prompts kept out of pooling: a pooling only the custom format expresses
    )  # fmt: skip
    assert "sts_dim_16_spearman" in stdout and "sts_dim_8_spearman" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["matryoshka_dims"] == [32, 16, 8] and config["truncate_dim"] == 16
    assert config["prompts"] == {"anchor": "query: ", "positive": "passage: "} and not config["pool_prompt_tokens"]
    model = AutoModel.from_pretrained(out).eval()
    st = SentenceTransformer(str(out), device="cpu")
    with torch.no_grad():
        want = model(**tokenizer()(["query: a red cat"], return_tensors="pt")).embeddings
    got = st.encode(["a red cat"], prompt_name="query", convert_to_tensor=True)
    assert want.shape == (1, 16)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_lora_with_momentum_and_distillation_recipes(tmp_path: Path) -> None:
    """LoRA + momentum queue: the merged export loads with AutoModel; distillation from a saved teacher:
    teacher embeddings cached once, reused by a second run."""
    from tests.launch import run_python
    from tests.tiny import text_model

    config_dir, sts, triplets = _files(tmp_path)
    common = ["--config_name", str(config_dir), "--tokenizer_name", default_text_model(), "--validation_file", str(sts),
              "--max_steps", "2", "--per_device_train_batch_size", "8", "--eval_steps", "2", "--max_seq_length", "16",
              "--train_file", str(triplets)]  # fmt: skip
    run_python(RECIPE, *common, "--output_dir", str(tmp_path / "lora"), "--lora_r", "2", "--lora_target_modules",
               "query,value", "--momentum", "0.9", "--queue_size", "16")  # fmt: skip
    merged = AutoModel.from_pretrained(tmp_path / "lora")
    assert not any("lora" in name for name in merged.state_dict())
    teacher = tmp_path / "teacher"
    text_model(pooler="mean").save_pretrained(teacher)
    tokenizer().save_pretrained(teacher)
    for run in ("kl1", "kl2"):
        stdout = run_python(RECIPE, *common, "--output_dir", str(tmp_path / run), "--teacher_model_name_or_path",
                            str(teacher), "--teacher_cache_dir", str(tmp_path / "cache"))  # fmt: skip
        assert "Spearman before:" in stdout
    assert len(list((tmp_path / "cache").glob("teacher-*.safetensors"))) == 3  # sent0, sent1, hard_neg: once
    run_python(RECIPE, *common, "--output_dir", str(tmp_path / "mse"), "--teacher_model_name_or_path", str(teacher),
               "--distillation", "margin_mse", "--teacher_on_the_fly")  # fmt: skip
    assert (tmp_path / "mse" / "model.safetensors").is_file()


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_streamed_recipe_names_or_records_a_bad_row(tmp_path: Path, policy: str) -> None:
    """``--streaming`` over two JSON-lines files, 2 processes, a null anchor at row 13 of the second file: the
    error names the file, the row within it and the column; ``skip`` trains on and records it."""
    import os
    import subprocess

    from tests.launch import accelerate_command, run

    config_dir, sts, _ = _files(tmp_path)
    text = sentences(80, 3)
    parts = [tmp_path / "part0.jsonl", tmp_path / "part1.jsonl"]
    for f, path in enumerate(parts):
        rows = [{"sent0": None if (f, i) == (1, 13) else text[i], "sent1": text[i + 1]} for i in range(30)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    command = [*accelerate_command(
        RECIPE, "--config_name", str(config_dir), "--tokenizer_name", default_text_model(), "--streaming",
        "--train_file", *map(str, parts), "--validation_file", str(sts), "--output_dir", str(out), "--max_steps", "6",
        "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--max_seq_length", "16",
        "--shuffle_buffer_size", "8", "--bad_rows", policy,
    )]  # fmt: skip
    if policy == "error":  # the process that read it stops (the other then loses its peer)
        env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode != 0
        assert "part1.jsonl: a row of the stream cannot be used" in done.stderr
        assert "row 13, column 'sent0': text is None" in done.stderr
        assert not (out / "model.safetensors").exists()
        return
    run(command)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train_rejected_rows"] == 1 and results["train_steps"] == 6
    records = [json.loads(line) for f in sorted(out.glob("rejected_rows*.jsonl")) for line in f.read_text().splitlines()]
    assert [(Path(r["source"]).name, r["row"], r["problems"][0]["column"]) for r in records] == [("part1.jsonl", 13, "sent0")]


def test_streamed_files_of_other_columns_are_mixed_batch_by_batch(tmp_path: Path) -> None:
    """``--streaming`` with a pairs file and a sentences file: one stream needs one set of columns (an error naming
    the way out); ``--multi_dataset_policy round_robin`` mixes them, each batch from one file, on 2 processes."""
    from tests.launch import accelerate_command, run

    config_dir, sts, triplets = _files(tmp_path)
    out = tmp_path / "out"
    base = ["--config_name", str(config_dir), "--tokenizer_name", default_text_model(), "--streaming", "--train_file",
            str(tmp_path / "train.txt"), str(triplets), "--validation_file", str(sts), "--output_dir", str(out),
            "--max_steps", "6", "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--max_seq_length", "16"]  # fmt: skip
    with pytest.raises(AssertionError, match="multi_dataset_policy round_robin"):
        run(accelerate_command(RECIPE, *base))
    run(accelerate_command(RECIPE, *base, "--multi_dataset_policy", "round_robin"))
    assert json.loads((out / "eval_results.json").read_text())["train_steps"] == 6
