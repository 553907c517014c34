"""The step's levers on CUDA (skipped without a GPU): the merged forward and length buckets in bf16, GradCache by a
token budget, padding-free packing with flash or flex attention, and inductor-compiled training. Each is held to
the plain path it replaces: the same losses (bf16 tolerances) over a few steps, on the same data and weights.
On a GPU machine: ``pytest tests/gpu`` (``HFCONTRAST_TEST_DEVICE=cuda`` makes a missing GPU an error)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: these levers are checked on a GPU machine"),
]
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
host_syncs = importlib.import_module("host_syncs")
STEPS = 6
CUDA = {"use_cpu": False, "bf16": True, "logging_steps": 1}


def losses(trainer: Any) -> torch.Tensor:
    return torch.tensor([entry["loss"] for entry in trainer.state.log_history if "loss" in entry])


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert len(got) == len(want) == STEPS
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)  # bf16 autocast


@pytest.mark.parametrize("forwards", ["merged", "per_view"])
def test_view_forwards_on_cuda(forwards: str) -> None:
    plain = host_syncs.train_family("simcse-supervised", STEPS, **CUDA)
    other = host_syncs.train_family("simcse-supervised", STEPS, view_forwards=forwards, **CUDA)
    close(losses(other), losses(plain))


def test_gradcache_by_tokens_on_cuda() -> None:
    rows = host_syncs.train_family("simcse-gradcache", STEPS, **CUDA)
    tokens = host_syncs.train_family("simcse-gradcache", STEPS, gradcache_chunk_size=None, gradcache_tokens=128, **CUDA)
    close(losses(tokens), losses(rows))


@pytest.mark.parametrize("implementation", ["flash_attention_2", "flex_attention"])
def test_padding_free_on_cuda(implementation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed")
    build = host_syncs.text_model

    def packed_model(**kwargs: Any) -> Any:
        model = build(**kwargs)
        model.backbone.set_attn_implementation(implementation)
        return model

    plain = host_syncs.train_family("simcse-supervised", STEPS, **CUDA)
    monkeypatch.setattr(host_syncs, "text_model", packed_model)
    packed = host_syncs.train_family("simcse-supervised", STEPS, padding_free=True, view_forwards="merged", **CUDA)
    close(losses(packed), losses(plain))


@pytest.mark.parametrize("family", ["simcse-supervised", "simclr", "clip"])
def test_inductor_compiled_training_on_cuda(family: str) -> None:
    plain = host_syncs.train_family(family, STEPS, **CUDA)
    compiled = host_syncs.train_family(family, STEPS, torch_compile=True, **CUDA)
    close(losses(compiled), losses(plain))
