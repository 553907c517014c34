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
