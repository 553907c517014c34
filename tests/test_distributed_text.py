"""2-process gloo runs through ``accelerate launch`` equal one process over the concatenated batch.

Each process holds half of every global micro-batch (gradient accumulation 2, hard negatives,
symmetric loss, a queue). The gradients after DDP, the losses, the final weights and the queues must
equal a single process that sees the concatenated micro-batches.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.launch import REPO_ROOT, accelerate_launch, run_python

SCRIPT = REPO_ROOT / "tests" / "distributed" / "text_parity.py"
pytestmark = pytest.mark.distributed


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _scale(tensors: dict[str, torch.Tensor]) -> float:
    return max(1.0, max(float(t.double().abs().max()) for t in tensors.values()))


@pytest.mark.parametrize(("dtype_flag", "rtol"), [("--float64", 1e-12), (None, 1e-6)])
def test_two_processes_equal_one_process(tmp_path: Path, dtype_flag: str | None, rtol: float) -> None:
    common = ["--grad_accum", "2", "--steps", "2", "--queue_size", "10", "--symmetric"]
    if dtype_flag:
        common.append(dtype_flag)
    accelerate_launch(SCRIPT, "--out", str(tmp_path / "ddp"), "--batch", "4", *common)
    run_python(SCRIPT, "--out", str(tmp_path / "single"), "--batch", "8", *common)
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt")
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt")
    single = torch.load(tmp_path / "single" / "rank0.pt")

    # The local losses average to the global one, micro-batch by micro-batch.
    ddp_losses = [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])]
    assert ddp_losses == pytest.approx(single["losses"], rel=rtol, abs=rtol)
    assert rank0["losses"] != rank1["losses"]  # the ranks really held different rows

    assert len(single["grads"]) == 2
    for step, reference in enumerate(single["grads"]):
        for dump in (rank0, rank1):
            assert _max_diff(dump["grads"][step], reference) <= rtol * _scale(reference)
    for dump in (rank0, rank1):
        assert _max_diff(dump["weights"], single["weights"]) <= rtol * _scale(single["weights"])
        # Both ranks hold the queue a single process builds from the concatenated batches.
        assert int(dump["objective"]["keys.queue.filled"]) == 10
        assert _max_diff(dump["objective"], single["objective"]) <= rtol * 10
    assert torch.equal(rank0["objective"]["keys.queue.embeddings"], rank1["objective"]["keys.queue.embeddings"])


def _float64_parity(tmp_path: Path, common: list[str], ddp_only: tuple[str, ...] = ()) -> tuple[dict, ...]:
    """2 processes x 4 rows (with ``ddp_only`` flags) against 1 process x 8, float64: the mean of the local
    losses and every rank's gradients equal the single process's. Returns the three dumps."""
    accelerate_launch(SCRIPT, "--out", str(tmp_path / "ddp"), "--batch", "4", *ddp_only, *common, "--float64")
    run_python(SCRIPT, "--out", str(tmp_path / "single"), "--batch", "8", *common, "--float64")
    rank0, rank1, single = (torch.load(tmp_path / d / f"rank{r}.pt") for d, r in (("ddp", 0), ("ddp", 1), ("single", 0)))
    assert [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])] == pytest.approx(single["losses"], rel=1e-12)
    assert rank0["losses"] != rank1["losses"]
    for step, reference in enumerate(single["grads"]):
        for dump in (rank0, rank1):
            assert _max_diff(dump["grads"][step], reference) <= 1e-12 * _scale(reference)
    return rank0, rank1, single


def test_short_path_two_processes_equal_one_explicit_process(tmp_path: Path) -> None:
    """The short path (objective bound, collator and tokenizer by the trainer) with an evaluation before
    training, on 2 processes, equals the explicit path on 1 process over the concatenated batch."""
    common = ["--grad_accum", "2", "--steps", "2", "--queue_size", "10", "--symmetric"]
    rank0, rank1, single = _float64_parity(tmp_path, common, ("--short_path", "--evaluate_first"))
    for dump in (rank0, rank1):  # the same weights on both ranks: DDP synchronised them after the evaluation
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
        assert _max_diff(dump["objective"], single["objective"]) <= 1e-10


def test_momentum_simcse_two_processes_equal_one_process(tmp_path: Path) -> None:
    """Positives from the momentum encoder (an EMA copy, updated after each step) and a queue of them: the
    EMA weights, the queue and the model equal one process's over the concatenated batch."""
    rank0, rank1, single = _float64_parity(tmp_path, ["--grad_accum", "2", "--steps", "3", "--queue_size", "10", "--momentum", "0.9"])
    for dump in (rank0, rank1):
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
        assert any(key.startswith("key_encoder.") for key in single["objective"])
        assert _max_diff(dump["objective"], single["objective"]) <= 1e-10


@pytest.mark.parametrize("objective", ["matryoshka", "kl"])
def test_matryoshka_and_in_batch_kl_two_processes_equal_one_process(tmp_path: Path, objective: str) -> None:
    """Matryoshka over gathered positives and hard negatives; in-batch KL over gathered student and teacher
    documents (teacher on the fly): 2 processes x 4 rows equal 1 process x 8, in float64."""
    _float64_parity(tmp_path, ["--steps", "2", "--objective", objective])


def test_guided_negatives_two_processes_equal_one_process(tmp_path: Path) -> None:
    """GISTEmbed's guide (on the fly) masks gathered positives, hard negatives and queued keys: 2 processes x 4
    rows equal 1 process x 8 in float64, the queue of keys and of the guide's embeddings included."""
    common = ["--grad_accum", "2", "--steps", "2", "--objective", "guided", "--queue_size", "10"]
    rank0, rank1, single = _float64_parity(tmp_path, common)
    for dump in (rank0, rank1):
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
        assert int(dump["objective"]["keys.guides.filled"]) == 10
        assert _max_diff(dump["objective"], single["objective"]) <= 1e-10


@pytest.mark.parametrize("objective", ["cosent", "angle"])
def test_scored_pairs_two_processes_equal_one_process(tmp_path: Path, objective: str) -> None:
    """CoSENT / AnglE rank the pairs of the gathered global batch: on 2 processes x 4 pairs every rank's loss is
    the single process's over 8 pairs, and so are the gradients after DDP (float64)."""
    common = ["--grad_accum", "2", "--steps", "2", "--objective", objective, "--float64"]
    accelerate_launch(SCRIPT, "--out", str(tmp_path / "ddp"), "--batch", "4", *common)
    run_python(SCRIPT, "--out", str(tmp_path / "single"), "--batch", "8", *common)
    rank0, rank1, single = (torch.load(tmp_path / d / f"rank{r}.pt") for d, r in (("ddp", 0), ("ddp", 1), ("single", 0)))
    for dump in (rank0, rank1):
        assert dump["losses"] == pytest.approx(single["losses"], rel=1e-12)
        for step, reference in enumerate(single["grads"]):
            assert _max_diff(dump["grads"][step], reference) <= 1e-12 * _scale(reference)
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
