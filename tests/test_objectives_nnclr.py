"""NNCLR against its formula written out: the nearest neighbour of each embedding in the support queue is
the row, the other view's embeddings the columns, both directions; the queue fills after the step and is
objective state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfcontrast.objectives import NNCLR


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive(rows_from: torch.Tensor, other: torch.Tensor, support: torch.Tensor, tau: float) -> float:
    total = 0.0
    for i in range(rows_from.shape[0]):
        sims = [float(F.cosine_similarity(rows_from[i], s, dim=0)) for s in support]
        nn = support[max(range(len(sims)), key=sims.__getitem__)]
        logits = [float(F.cosine_similarity(nn, other[k], dim=0)) / tau for k in range(other.shape[0])]
        total -= logits[i] - math.log(sum(math.exp(x) for x in logits))
    return total / rows_from.shape[0]


def test_loss_matches_pseudo_code_with_a_filled_support_queue() -> None:
    objective = NNCLR(0.1, support_size=12, embedding_dim=6, gather=False)
    support = randn(12, 6, seed=3)
    objective.support.queue.enqueue(support.float())
    query, key = randn(5, 6, seed=1), randn(5, 6, seed=2)
    out = objective({"query": query, "key": key}, {})
    queued = objective.support.negatives().double()
    want = 0.5 * (naive(query, key, queued, 0.1) + naive(key, query, queued, 0.1))
    assert float(out.loss) == pytest.approx(want, rel=1e-5)


def test_gradient_reaches_the_columns_only_and_the_queue_fills_after_the_step() -> None:
    objective = NNCLR(0.1, support_size=8, embedding_dim=4, gather=False).train()
    query = randn(4, 4, seed=1).requires_grad_(True)
    key = randn(4, 4, seed=2).requires_grad_(True)
    objective({"query": query, "key": key}, {}).loss.backward()  # empty support: the embeddings stand in
    assert query.grad is not None and key.grad is not None
    assert len(objective.support) == 0
    objective.after_optimizer_step(torch.nn.Linear(1, 1), 1, 10)
    assert len(objective.support) == 4 and "support.queue.embeddings" in objective.state_dict()
    objective.after_optimizer_step(torch.nn.Linear(1, 1), 2, 10)
    assert len(objective.support) == 4  # staged once, flushed once
