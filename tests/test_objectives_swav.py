"""SwAV against the paper's pseudo-code written out: Sinkhorn codes of the global crops predicted from every
other crop by the prototype softmax; frozen prototypes get no gradient; prototypes are re-normalised after a
step; a full queue goes in front of the batch for the codes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfcontrast.losses import sinkhorn_knopp
from hfcontrast.objectives import SwAV


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def crops() -> dict[str, torch.Tensor]:
    return {"query": randn(6, 8, seed=1), "key": randn(6, 8, seed=2), "local_0": randn(6, 8, seed=3)}


def test_loss_matches_pseudo_code() -> None:
    torch.manual_seed(0)
    objective = SwAV(embedding_dim=8, num_prototypes=5, temperature=0.1)
    views = crops()
    got = objective(views, {}).loss
    w = objective.prototypes.weight.detach()
    z = {n: F.normalize(v, dim=-1) for n, v in views.items()}
    scores = {n: z[n] @ w.T for n in z}
    codes = {n: sinkhorn_knopp(scores[n], epsilon=0.05, iterations=3) for n in ("query", "key")}
    total, pairs = 0.0, 0
    for i in ("query", "key"):
        for v in ("query", "key", "local_0"):
            if v == i:
                continue
            for b in range(6):
                logits = [float(scores[v][b, k]) / 0.1 for k in range(5)]
                log_z = math.log(sum(math.exp(x) for x in logits))
                total -= sum(float(codes[i][b, k]) * (logits[k] - log_z) for k in range(5)) / 6
            pairs += 1
    assert float(got.detach()) == pytest.approx(total / pairs, rel=1e-5)


def test_prototypes_frozen_then_trained_and_renormalised() -> None:
    torch.manual_seed(0)
    objective = SwAV(embedding_dim=8, num_prototypes=5, freeze_prototypes_steps=1).train()
    views = {n: v.requires_grad_(True) for n, v in crops().items()}
    objective(views, {}).loss.backward()
    assert objective.prototypes.weight.grad is None and views["local_0"].grad is not None
    objective.after_optimizer_step(torch.nn.Linear(1, 1), 1, 10)
    objective(crops(), {}).loss.backward()
    assert objective.prototypes.weight.grad is not None
    with torch.no_grad():
        objective.prototypes.weight.mul_(3.0)
    objective.after_optimizer_step(torch.nn.Linear(1, 1), 2, 10)
    torch.testing.assert_close(objective.prototypes.weight.norm(dim=1), torch.ones(5))
    assert int(objective.state_dict()["steps_done"]) == 2


def test_full_queue_goes_in_front_of_the_batch_for_the_codes() -> None:
    torch.manual_seed(0)
    objective = SwAV(embedding_dim=8, num_prototypes=5, queue_size=12).train()
    scores = F.normalize(randn(6, 8, seed=1), dim=-1) @ objective.prototypes.weight.detach().T
    torch.testing.assert_close(objective.codes(scores, 0), sinkhorn_knopp(scores))  # empty queue: the batch alone
    stored = F.normalize(randn(12, 8, seed=9), dim=-1)
    objective.queue_0.queue.enqueue(stored)
    want = sinkhorn_knopp(torch.cat([stored @ objective.prototypes.weight.detach().T, scores]))[-6:]
    torch.testing.assert_close(objective.codes(scores, 0), want)
    assert "queue_0.queue.embeddings" in objective.state_dict()
