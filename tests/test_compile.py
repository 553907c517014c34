"""``torch_compile`` for every family: the encoder (compiled by Trainer through accelerate) and the objective's
pure losses (:func:`hfcontrast.losses.compiled_losses`) trace with zero graph breaks over 20 steps whose text
lengths vary from batch to batch, with a bounded number of graphs (dynamic shapes after the first change, not a
recompile per step), and train to the same losses as the uncompiled run. Dynamo's ``eager`` backend: what breaks
a graph is dynamo's tracing, whatever the backend; inductor's code generation runs in ``tests/gpu``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
host_syncs = importlib.import_module("host_syncs")

STEPS = 20
#: Graphs over 20 steps: the encoder's (per forward shape kind), the losses', and one more each time a shape
#: becomes dynamic (a queue filling up, a batch of other lengths).
MAX_GRAPHS = 8


def losses(trainer: Any) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("family", sorted(host_syncs.families()))
def test_every_family_compiles_without_graph_breaks_or_a_recompile_per_step(family: str) -> None:
    plain = losses(host_syncs.train_family(family, STEPS, logging_steps=1))
    torch._dynamo.reset()
    counters.clear()
    compiled = losses(host_syncs.train_family(family, STEPS, logging_steps=1, torch_compile=True, torch_compile_backend="eager"))
    assert not counters["graph_break"], dict(counters["graph_break"])
    graphs = counters["stats"]["unique_graphs"]
    assert 2 <= graphs <= MAX_GRAPHS, graphs  # the encoder and at least one loss were captured
    assert counters["stats"]["calls_captured"] > 0
    assert len(compiled) == len(plain) == STEPS
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(plain), rtol=1e-4, atol=1e-5)
