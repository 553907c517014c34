"""The step never waits for the host: host syncs counted in steady-state steps of every family.

The counter (:class:`hfcontrast.host_syncs.HostSyncCounter`, a ``TorchDispatchMode``) sees the operators that read
device values on the host. Budget: text at most sentence-transformers' count (measured here, same data and
model); every other family at most ``Trainer``'s own two plus the NaN guard's one. No sync, and no tensor literal
(a host value a GPU step would copy over), may come from hfcontrast's own code but the guard's one read.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from hfcontrast.host_syncs import HostSyncCounter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
host_syncs = importlib.import_module("host_syncs")

STEPS, WARMUP = 6, 2
GUARD = "trainer/guards.py"
#: GradCache's row order goes to the device with a non-blocking copy of a host list (no wait).
ALLOWED_LITERALS = ("trainer/views.py",)


@pytest.fixture(scope="module")
def peer() -> float:
    pytest.importorskip("sentence_transformers")
    return float(host_syncs.count_sentence_transformers(STEPS, WARMUP)["per_step"])


@pytest.mark.parametrize("family", sorted(host_syncs.families()))
def test_steady_state_steps_stay_within_the_sync_budget(family: str, peer: float) -> None:
    run = host_syncs.count_family(family, STEPS, WARMUP)
    assert run["steps"] == STEPS - WARMUP
    budget = host_syncs.budget(run["kind"], peer)
    assert run["per_step"] <= budget, (family, run["sites"])
    ours = {site: n for site, n in run["sites"].items() if not site.startswith("transformers/") and GUARD not in site}
    assert not ours, f"{family}: host syncs of our own: {ours}"
    assert sum(n for site, n in run["sites"].items() if GUARD in site) <= 1
    literals = {site: n for site, n in run["literal_sites"].items() if not site.startswith(("transformers/", *ALLOWED_LITERALS))}
    assert not literals, f"{family}: tensor literals made in the step: {literals}"


def test_text_budget_is_the_peers_count_and_the_peer_is_measured(peer: float) -> None:
    assert peer >= 2  # at least Trainer's own two: the peer really ran through the counter
    assert host_syncs.budget("text", peer) == peer and host_syncs.budget("image", peer) == 3


def test_counter_sees_item_bool_nonzero_and_boolean_indexing() -> None:
    x = torch.arange(6.0)
    with HostSyncCounter() as counter:
        x.sum().item()
        bool(x.any())
        x.nonzero()
        _ = x[x > 2]
        x[x > 4] = 0.0
        _ = x[torch.arange(2)]  # integer indexing: no sync
        torch.tensor([1.0])
    assert counter.ops["aten._local_scalar_dense"] == 2 and counter.ops["aten.nonzero"] == 1
    assert counter.ops["aten.index(bool)"] == 1 and counter.ops["aten.index_put_(bool)"] == 1 and counter.total == 5
    assert counter.literals == 2 and all("test_host_syncs.py" in site for site in counter.sites)  # 0.0 and [1.0]
