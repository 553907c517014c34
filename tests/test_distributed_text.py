"""2-process gloo runs through ``accelerate launch`` equal one process over the concatenated batch.

Each process holds half of every global micro-batch (gradient accumulation 2, hard negatives,
symmetric loss, a queue). The gradients after DDP, the losses, the final weights and the queues must
equal a single process that sees the concatenated micro-batches. Every case runs in one launch (and one
single-process run), one case after another, each from the same seed; the tests below read its dumps.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch

from tests.launch import REPO_ROOT, accelerate_launch, run_python

SCRIPT = REPO_ROOT / "tests" / "distributed" / "text_parity.py"
pytestmark = [pytest.mark.distributed, pytest.mark.xdist_group("text_parity")]  # one launch for the module
_SIMCSE = ["--grad_accum", "2", "--steps", "2", "--queue_size", "10", "--symmetric"]
#: name: (the flags of both runs, the flags of the two-process run only)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "float64": ([*_SIMCSE, "--float64"], []),
    "float32": (_SIMCSE, []),
    "short_path": ([*_SIMCSE, "--float64"], ["--short_path", "--evaluate_first"]),
    "momentum": (["--grad_accum", "2", "--steps", "3", "--queue_size", "10", "--momentum", "0.9", "--float64"], []),
    "matryoshka": (["--steps", "2", "--objective", "matryoshka", "--float64"], []),
    "kl": (["--steps", "2", "--objective", "kl", "--float64"], []),
    "guided": (["--grad_accum", "2", "--steps", "2", "--objective", "guided", "--queue_size", "10", "--float64"], []),
    "cosent": (["--grad_accum", "2", "--steps", "2", "--objective", "cosent", "--float64"], []),
    "angle": (["--grad_accum", "2", "--steps", "2", "--objective", "angle", "--float64"], []),
}
Dumps = tuple[dict, dict, dict]


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Dumps]:
    """``dumps(case)``: rank 0's, rank 1's and the single process's dumps of ``case``."""
    root = tmp_path_factory.mktemp("text_parity")
    two = {name: both + ddp_only for name, (both, ddp_only) in CASES.items()}
    accelerate_launch(SCRIPT, "--out", str(root / "ddp"), "--batch", "4", "--cases", json.dumps(two), timeout=1200)
    single = json.dumps({name: both for name, (both, _) in CASES.items()})
    run_python(SCRIPT, "--out", str(root / "single"), "--batch", "8", "--cases", single, timeout=1200)

    def load(case: str) -> Dumps:
        rank0, rank1, single = (torch.load(root / d / case / f"rank{r}.pt") for d, r in (("ddp", 0), ("ddp", 1), ("single", 0)))
        return rank0, rank1, single

    return load


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _scale(tensors: dict[str, torch.Tensor]) -> float:
    return max(1.0, max(float(t.double().abs().max()) for t in tensors.values()))


@pytest.mark.parametrize(("case", "rtol"), [("float64", 1e-12), ("float32", 1e-6)])
def test_two_processes_equal_one_process(dumps: Callable[[str], Dumps], case: str, rtol: float) -> None:
    rank0, rank1, single = dumps(case)

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


def _float64_parity(dumps: Callable[[str], Dumps], case: str) -> Dumps:
    """2 processes x 4 rows against 1 process x 8, float64: the mean of the local losses and every rank's gradients
    equal the single process's. Returns the three dumps."""
    rank0, rank1, single = dumps(case)
    assert [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])] == pytest.approx(single["losses"], rel=1e-12)
    assert rank0["losses"] != rank1["losses"]
    for step, reference in enumerate(single["grads"]):
        for dump in (rank0, rank1):
            assert _max_diff(dump["grads"][step], reference) <= 1e-12 * _scale(reference)
    return rank0, rank1, single


def test_short_path_two_processes_equal_one_explicit_process(dumps: Callable[[str], Dumps]) -> None:
    """The short path (objective bound, collator and tokenizer by the trainer) with an evaluation before
    training, on 2 processes, equals the explicit path on 1 process over the concatenated batch."""
    rank0, rank1, single = _float64_parity(dumps, "short_path")
    for dump in (rank0, rank1):  # the same weights on both ranks: DDP synchronised them after the evaluation
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
        assert _max_diff(dump["objective"], single["objective"]) <= 1e-10


def test_momentum_simcse_two_processes_equal_one_process(dumps: Callable[[str], Dumps]) -> None:
    """Positives from the momentum encoder (an EMA copy, updated after each step) and a queue of them: the
    EMA weights, the queue and the model equal one process's over the concatenated batch."""
    rank0, rank1, single = _float64_parity(dumps, "momentum")
    for dump in (rank0, rank1):
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
        assert any(key.startswith("key_encoder.") for key in single["objective"])
        assert _max_diff(dump["objective"], single["objective"]) <= 1e-10


@pytest.mark.parametrize("objective", ["matryoshka", "kl"])
def test_matryoshka_and_in_batch_kl_two_processes_equal_one_process(dumps: Callable[[str], Dumps], objective: str) -> None:
    """Matryoshka over gathered positives and hard negatives; in-batch KL over gathered student and teacher
    documents (teacher on the fly): 2 processes x 4 rows equal 1 process x 8, in float64."""
    _float64_parity(dumps, objective)


def test_guided_negatives_two_processes_equal_one_process(dumps: Callable[[str], Dumps]) -> None:
    """GISTEmbed's guide (on the fly) masks gathered positives, hard negatives and queued keys: 2 processes x 4
    rows equal 1 process x 8 in float64, the queue of keys and of the guide's embeddings included."""
    rank0, rank1, single = _float64_parity(dumps, "guided")
    for dump in (rank0, rank1):
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
        assert int(dump["objective"]["keys.guides.filled"]) == 10
        assert _max_diff(dump["objective"], single["objective"]) <= 1e-10


@pytest.mark.parametrize("objective", ["cosent", "angle"])
def test_scored_pairs_two_processes_equal_one_process(dumps: Callable[[str], Dumps], objective: str) -> None:
    """CoSENT / AnglE rank the pairs of the gathered global batch: on 2 processes x 4 pairs every rank's loss is
    the single process's over 8 pairs, and so are the gradients after DDP (float64)."""
    rank0, rank1, single = dumps(objective)
    for dump in (rank0, rank1):
        assert dump["losses"] == pytest.approx(single["losses"], rel=1e-12)
        for step, reference in enumerate(single["grads"]):
            assert _max_diff(dump["grads"][step], reference) <= 1e-12 * _scale(reference)
        assert _max_diff(dump["weights"], single["weights"]) <= 1e-12 * _scale(single["weights"])
