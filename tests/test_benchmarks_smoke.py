"""Fast, timing-free checks of the benchmark scripts' bookkeeping and reference losses."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_loop_timer_excludes_warmup() -> None:
    common = importlib.import_module("common")
    timer = common.LoopTimer()
    timer.start = 0.0
    timer.marks = [5.0, 6.0, 7.0, 8.0]  # 5 s of warm-up, then 1 s per step
    timer.cpu_marks = [1.0, 2.0, 3.0, 4.0]
    out = timer.throughput(warmup=1, samples_per_step=10)
    assert out["samples_per_s"] == pytest.approx(10.0)
    assert out["measured_steps"] == 3 and out["warmup_s"] == pytest.approx(5.0)
    with pytest.raises(ValueError):
        timer.throughput(warmup=4, samples_per_step=10)


def test_table_and_peak_rss() -> None:
    common = importlib.import_module("common")
    table = common.format_table(["a", "b"], [["x", 1.23456], ["yy", float("nan")]])
    assert table.splitlines()[0].startswith("a ") and "1.2346" in table and "n/a" in table
    before = common.reset_peak_rss()
    block = bytearray(64 * 1024 * 1024)  # touched: 64 MiB resident
    block[::4096] = b"x" * len(block[::4096])
    assert common.hwm_rss_mb() - before > 32
    assert common.ratio(2.0, 4.0) == 0.5


def test_loss_references_agree_with_hfcontrast() -> None:
    loss_kernels = importlib.import_module("loss_kernels")
    for loss, diff in loss_kernels.check_agreement(batch=32).items():
        assert diff < 1e-10, loss


def test_sts_reader(tmp_path: Path) -> None:
    text = importlib.import_module("text_vs_sentence_transformers")
    path = tmp_path / "sts.csv"
    path.write_text("g\tf\t2012\t1\t4.5\tA man.\tA person.\textra\nbad line\n")
    assert text.sts_pairs(path) == (["A man."], ["A person."], [4.5])


# ----------------------------------------------------------------------------- every script, 2 steps
#: Each runnable script of benchmarks/ and the arguments of its smoke run (peers included where installed).
SMOKE_RUNS = {
    "against_ref.py": ["--ref", "HEAD"],
    "chunked_loss_memory.py": [],
    "clip_vs_hf_dual_encoder.py": [],
    "cluster_vs_lightly.py": [],
    "gradcache_memory.py": [],
    "gpu_image.py": [],
    "gpu_text.py": [],
    "host_syncs.py": [],
    "image_views.py": [],
    "image_vs_lightly.py": [],
    "ir_evaluator_speed.py": [],
    "loss_kernels.py": [],
    "redundancy_vs_lightly.py": [],
    "render_tables.py": [],
    "row_checks.py": [],
    "streams.py": [],
    "survey_quality.py": [],
    "text_techniques.py": [],
    "text_vs_sentence_transformers.py": [],
    "text_vs_sentence_transformers.py --task cosent": ["--task", "cosent"],
}
NEEDS_IMAGES = {"clip_vs_hf_dual_encoder.py", "cluster_vs_lightly.py", "image_vs_lightly.py", "redundancy_vs_lightly.py",
                "row_checks.py", "survey_quality.py"}


def test_every_runnable_script_has_a_smoke_run() -> None:
    runnable = {path.name for path in BENCH.glob("*.py") if 'if __name__ == "__main__"' in path.read_text()}
    assert runnable == {run.split()[0] for run in SMOKE_RUNS}, "add the script to SMOKE_RUNS (and give it --smoke)"


@pytest.mark.benchmark
@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=pytest.mark.fashion_mnist) if s in NEEDS_IMAGES else s for s in sorted(SMOKE_RUNS)]
)
def test_smoke_run(script: str) -> None:
    """The script runs at HEAD: 2 steps of tiny settings, its results in a temporary folder (never results/)."""
    import os
    import subprocess

    before = {p.name: p.stat().st_mtime for p in (BENCH / "results").iterdir()}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(BENCH / script.split()[0]), "--smoke", *SMOKE_RUNS[script]], cwd=BENCH, env=env,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert {p.name: p.stat().st_mtime for p in (BENCH / "results").iterdir()} == before, "a smoke run wrote results/"
