"""Nothing silent, nothing lost, from the command line as a user runs it (2 processes where it matters):
SIGKILL and resume, divergence, occupied output folders, bad rows found before step 1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import ResNetConfig

from hfcontrast.demo import default_text_model
from tests.launch import REPO_ROOT, accelerate_command, accelerate_launch, kill_tree, run_failing, start
from tests.test_recipe_simcse import _files

pytestmark = pytest.mark.distributed
SIMCSE, MOCO = REPO_ROOT / "recipes" / "simcse.py", REPO_ROOT / "recipes" / "moco.py"


def simcse_args(tmp_path: Path, out: Path, *extra: str, train: Path | None = None) -> list[str]:
    config_dir, sts = tmp_path / "config", tmp_path / "sts.tsv"
    if not config_dir.is_dir():
        _files(tmp_path)  # once: a test may have edited the training files since
    return [
        "--config_name", str(config_dir), "--tokenizer_name", default_text_model(),
        "--train_file", str(train or tmp_path / "train.txt"), "--validation_file", str(sts), "--output_dir", str(out),
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--eval_strategy", "no",
        "--logging_steps", "1", "--max_seq_length", "16", "--report_to", "none", *extra,
    ]  # fmt: skip


def image_folder(root: Path, n: int = 24) -> Path:
    """Class sub-folders of 12x12 PNGs (2 colours plus noise)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("red" if i % 2 else "blue")
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([200, 30, 30]) if i % 2 else np.array([30, 30, 200])
        pixels = np.clip(colour + rng.normal(0, 30, (12, 12, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def moco_args(tmp_path: Path, train: Path, out: Path, *extra: str) -> list[str]:
    config = tmp_path / "resnet"
    ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic").save_pretrained(config)
    return [
        "--train_file", str(train), "--config_name", str(config), "--output_dir", str(out), "--image_size", "12",
        "--per_device_train_batch_size", "4", "--projection_dim", "8", "--queue_size", "16", "--momentum", "0.9",
        "--eval_strategy", "no", "--eval_on_start", "false", "--logging_steps", "1", "--report_to", "none", *extra,
    ]  # fmt: skip


# ----------------------------------------------------------------------------- SIGKILL, then resume
def _kill_after_checkpoint(command: list[str], out: Path, step: int) -> None:
    process = start(command)
    done = out / f"checkpoint-{step}" / "objective.safetensors"
    deadline = time.time() + 400
    while not done.is_file():
        assert process.poll() is None, f"the run ended before checkpoint-{step}: {process.communicate()[1][-3000:]}"
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    kill_tree(process)
    assert not (out / "model.safetensors").exists(), "the run finished before it was killed"


def _assert_same_run(straight: Path, resumed: Path, last: int) -> None:
    for name in ("model.safetensors", f"checkpoint-{last}/objective.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys() and a, name
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=lambda m, key=key, name=name: f"{name}: {key}: {m}")
    history = [json.loads((run / f"checkpoint-{last}" / "trainer_state.json").read_text())["log_history"] for run in (straight, resumed)]
    losses = [{e["step"]: e["loss"] for e in h if "loss" in e} for h in history]
    assert len(losses[0]) == last and losses[1] == losses[0]


def test_simcse_killed_and_resumed_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    steps = ("--max_steps", "24", "--save_strategy", "steps", "--save_steps", "6", "--queue_size", "16", "--momentum", "0.99")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    accelerate_launch(SIMCSE, *simcse_args(tmp_path, straight, *steps))
    _kill_after_checkpoint(accelerate_command(SIMCSE, *simcse_args(tmp_path, resumed, *steps)), resumed, 6)
    stdout = accelerate_launch(SIMCSE, *simcse_args(tmp_path, resumed, *steps, "--resume_from_checkpoint", "latest"))
    assert "Spearman before:" in stdout
    _assert_same_run(straight, resumed, 24)


def test_moco_killed_and_resumed_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    train = image_folder(tmp_path / "images")
    steps = ("--max_steps", "20", "--save_strategy", "steps", "--save_steps", "5")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    accelerate_launch(MOCO, *moco_args(tmp_path, train, straight, *steps))
    _kill_after_checkpoint(accelerate_command(MOCO, *moco_args(tmp_path, train, resumed, *steps)), resumed, 5)
    accelerate_launch(MOCO, *moco_args(tmp_path, train, resumed, *steps, "--resume_from_checkpoint", "latest"))
    _assert_same_run(straight, resumed, 20)


# ----------------------------------------------------------------------------- divergence, output folders
def test_diverging_recipe_exits_non_zero_and_exports_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = run_failing(accelerate_command(SIMCSE, *simcse_args(tmp_path, out, "--max_steps", "30", "--learning_rate", "1e6")))
    assert "training diverged at step" in log and "last finite loss" in log
    assert not (out / "model.safetensors").exists() and not (out / "README.md").exists()


def test_occupied_output_folders_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"  # an earlier run's files (the refusal looks at the folder, not at who wrote it)
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"earlier weights")
    log = run_failing(accelerate_command(SIMCSE, *simcse_args(tmp_path, out, "--max_steps", "2")))
    assert "is not empty" in log and "--overwrite_output_dir" in log
    accelerate_launch(SIMCSE, *simcse_args(tmp_path, out, "--max_steps", "2", "--overwrite_output_dir"))
    assert (out / "model.safetensors").read_bytes() != b"earlier weights"

    busy = tmp_path / "busy"
    first = start(accelerate_command(SIMCSE, *simcse_args(tmp_path, busy, "--max_steps", "100000")))
    try:
        lock = busy / ".hfcontrast.lock"
        deadline = time.time() + 300
        while not lock.is_file():
            assert first.poll() is None and time.time() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        holder = json.loads(lock.read_text())["pid"]
        started = time.time()
        log = run_failing(accelerate_command(SIMCSE, *simcse_args(tmp_path, busy, "--max_steps", "2", "--overwrite_output_dir")))
        assert f"in use by another run: PID {holder}" in log
        assert time.time() - started < 120 and first.poll() is None  # refused at once; the first run goes on
    finally:
        kill_tree(first)


# ----------------------------------------------------------------------------- bad rows, before step 1
def test_bad_text_rows_fail_before_step_one_or_are_skipped(tmp_path: Path) -> None:
    _files(tmp_path)
    triplets = tmp_path / "train.csv"
    lines = triplets.read_text().splitlines()
    lines[1 + 4] = lines[1 + 4].rsplit(",", 1)[0] + ","  # row 4: empty hard_neg cell (None)
    first, _, last = lines[1 + 7].split(",")
    lines[1 + 7] = f'{first}," ",{last}'  # row 7: blank positive
    triplets.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    log = run_failing(accelerate_command(SIMCSE, *simcse_args(tmp_path, out, "--max_steps", "2", train=triplets)))
    assert "train.csv: 2 of 60 rows cannot be used" in log
    assert "row 4, column 'hard_neg': text is None" in log and "row 7, column 'sent1': text is empty" in log
    assert "Spearman before" not in log and "'loss'" not in log  # found before any evaluation or step
    accelerate_launch(SIMCSE, *simcse_args(tmp_path, out, "--max_steps", "2", "--bad_rows", "skip", train=triplets))
    rejected = [json.loads(line) for line in (out / "rejected_rows.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejected] == [4, 7]
    assert json.loads((out / "eval_results.json").read_text())["train_rejected_rows"] == 2
    assert "rejected_rows.jsonl" in (out / "README.md").read_text()


def test_bad_images_fail_before_step_one_or_are_skipped(tmp_path: Path) -> None:
    train = image_folder(tmp_path / "images")
    (train / "red" / "zz_corrupt.png").write_bytes(b"not a png at all")
    (train / "blue" / "zz_empty.png").write_bytes(b"")
    paths = datasets.load_dataset("imagefolder", data_dir=str(train), split="train")
    paths = paths.cast_column("image", datasets.Image(decode=False))["image"]
    bad = sorted(i for i, image in enumerate(paths) if Path(image["path"]).name.startswith("zz_"))
    out = tmp_path / "out"
    log = run_failing(accelerate_command(MOCO, *moco_args(tmp_path, train, out, "--max_steps", "2")))
    assert f"2 of {len(paths)} rows cannot be used" in log
    assert f"row {bad[0]}, column 'image'" in log and f"row {bad[1]}, column 'image'" in log
    assert "not an image Pillow can read:" in log and "zz_corrupt.png" in log
    assert "image file is empty (0 bytes):" in log and "zz_empty.png" in log
    accelerate_launch(MOCO, *moco_args(tmp_path, train, out, "--max_steps", "2", "--bad_rows", "skip"))
    assert [json.loads(line)["row"] for line in (out / "rejected_rows.jsonl").read_text().splitlines()] == bad

    table = tmp_path / "images.csv"
    rows = [f"images/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(train.rglob("0*.png"))]
    rows.insert(5, "images/red/missing.png,red")
    table.write_text("image,label\n" + "\n".join(rows) + "\n")
    log = run_failing(accelerate_command(MOCO, *moco_args(tmp_path, table, tmp_path / "csv", "--max_steps", "2")))
    assert "row 5, column 'image': image file not found:" in log and "missing.png" in log
