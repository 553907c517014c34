"""NNCLR against its formula written out: the nearest neighbour of each embedding in the support queue is
the row, the other view's embeddings the columns (the paper's eq. 2) or, by default, SimCLR's NT-Xent over
the neighbours and the other view; both directions; the queue fills after the step and is objective state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfcontrast.objectives import NNCLR


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def nearest(z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    sims = [float(F.cosine_similarity(z, s, dim=0)) for s in support]
    return support[max(range(len(sims)), key=sims.__getitem__)]


def naive(rows_from: torch.Tensor, other: torch.Tensor, support: torch.Tensor, tau: float) -> float:
    total = 0.0
    for i in range(rows_from.shape[0]):
        nn = nearest(rows_from[i], support)
        logits = [float(F.cosine_similarity(nn, other[k], dim=0)) / tau for k in range(other.shape[0])]
        total -= logits[i] - math.log(sum(math.exp(x) for x in logits))
    return total / rows_from.shape[0]


def naive_nt_xent(rows_from: torch.Tensor, other: torch.Tensor, support: torch.Tensor, tau: float) -> float:
    """SimCLR's NT-Xent over ``[NN(z_1..N); p_1..N]``: each of the 2N rows against the 2N - 1 others."""
    views = [nearest(z, support) for z in rows_from] + list(other)
    n, total = rows_from.shape[0], 0.0
    for i, anchor in enumerate(views):
        logits = {j: float(F.cosine_similarity(anchor, v, dim=0)) / tau for j, v in enumerate(views) if j != i}
        total -= logits[(i + n) % (2 * n)] - math.log(sum(math.exp(x) for x in logits.values()))
    return total / (2 * n)


@pytest.mark.parametrize("loss", ["nt_xent", "cross_view"])
def test_loss_matches_pseudo_code_with_a_filled_support_queue(loss: str) -> None:
    objective = NNCLR(0.1, loss=loss, support_size=12, embedding_dim=6, gather=False)  # type: ignore[arg-type]
    support = randn(12, 6, seed=3)
    objective.support.queue.enqueue(support.float())
    query, key = randn(5, 6, seed=1), randn(5, 6, seed=2)
    out = objective({"query": query, "key": key}, {})
    queued = objective.support.negatives().double()
    reference = naive_nt_xent if loss == "nt_xent" else naive
    want = 0.5 * (reference(query, key, queued, 0.1) + reference(key, query, queued, 0.1))
    assert float(out.loss) == pytest.approx(want, rel=1e-5)


def differentiable(rows_from: torch.Tensor, other: torch.Tensor, support: torch.Tensor, tau: float, loss: str) -> torch.Tensor:
    """The pseudo-code with autograd: the neighbours are support rows (constants), the other view carries
    the gradient; for NT-Xent the neighbours are also the other rows' negatives, still constants."""
    picked = torch.stack([nearest(z.detach(), support) for z in rows_from]).detach()
    rows, columns = F.normalize(picked, dim=-1), F.normalize(other, dim=-1)
    if loss == "cross_view":
        return F.cross_entropy(rows @ columns.T / tau, torch.arange(len(rows)))
    views = torch.cat([rows, columns])
    logits = (views @ views.T / tau).masked_fill(torch.eye(len(views), dtype=torch.bool), float("-inf"))
    n = len(rows)
    return F.cross_entropy(logits, (torch.arange(2 * n) + n) % (2 * n))


@pytest.mark.parametrize("loss", ["nt_xent", "cross_view"])
def test_neighbour_rows_get_no_gradient_and_the_columns_get_the_formulas(loss: str) -> None:
    """With a filled support queue the gradient of each view is the formula's with the neighbours held
    constant: it reaches a view only where it is a column (the other direction's positive or negative)."""
    objective = NNCLR(0.1, loss=loss, support_size=12, embedding_dim=6, gather=False).double().train()  # type: ignore[arg-type]
    objective.support.queue.enqueue(randn(12, 6, seed=3))
    queued = objective.support.negatives().double()
    query, key = randn(5, 6, seed=1).requires_grad_(True), randn(5, 6, seed=2).requires_grad_(True)
    objective({"query": query, "key": key}, {}).loss.backward()
    q, k = query.detach().clone().requires_grad_(True), key.detach().clone().requires_grad_(True)
    want = 0.5 * (differentiable(q, k, queued, 0.1, loss) + differentiable(k, q, queued, 0.1, loss))
    want.backward()
    assert q.grad is not None and k.grad is not None and query.grad is not None and key.grad is not None
    # the support queue is float32: its rows are normalised in float32 (1e-7 apart from float64)
    torch.testing.assert_close(query.grad, q.grad, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(key.grad, k.grad, rtol=1e-5, atol=1e-9)
    # One direction alone, its columns detached: the rows (neighbours of query) leave no graph back to query.
    assert not objective._direction(query, key.detach(), queued, {}, ("query", "key")).loss.requires_grad


def test_the_queue_fills_after_the_step() -> None:
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


def test_an_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="nt_xent"):
        NNCLR(0.1, loss="infonce", embedding_dim=4)  # type: ignore[arg-type]


def test_the_predictor_maps_the_other_view_before_the_contrast_and_learns() -> None:
    torch.manual_seed(0)
    objective = NNCLR(0.1, loss="cross_view", support_size=12, embedding_dim=6, predictor_hidden_dim=8, gather=False)
    objective = objective.double().train()
    objective.support.queue.enqueue(randn(12, 6, seed=3))
    query, key = randn(5, 6, seed=1), randn(5, 6, seed=2)
    out = objective({"query": query, "key": key}, {})
    out.loss.backward()
    loss = float(out.loss.detach())
    assert objective.predictor is not None
    with torch.no_grad():
        predicted_query, predicted_key = objective.predictor.both(query, key)  # the same batch statistics
    queued = objective.support.negatives().double()
    want = 0.5 * (naive(query, predicted_key, queued, 0.1) + naive(key, predicted_query, queued, 0.1))
    assert loss == pytest.approx(want, rel=1e-6)
    assert loss != pytest.approx(0.5 * (naive(query, key, queued, 0.1) + naive(key, query, queued, 0.1)))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.predictor.parameters())
