"""EmbeddingQueue against a naive list reference; state_dict round trip; no gradient in the queue."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hfcontrast.memory import EmbeddingQueue


class NaiveQueue:
    """Reference: a python list of (row, id) that appends and keeps the last ``size`` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: list[tuple[list[float], int]] = []
        self.total = 0

    def enqueue(self, rows: list[list[float]], ids: list[int]) -> None:
        for row, i in zip(rows, ids, strict=True):
            self.rows.append((row, i))
            self.total += 1
            if len(self.rows) > self.size:
                self.rows.pop(0)


def _rows(start: int, b: int, dim: int) -> torch.Tensor:
    """Distinct, exactly representable rows: row k holds k*dim .. k*dim+dim-1."""
    return torch.arange(start * dim, (start + b) * dim, dtype=torch.float32).reshape(b, dim)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 7),
    dim=st.integers(1, 3),
    store_ids=st.booleans(),
    batches=st.lists(st.tuples(st.integers(0, 12), st.booleans()), max_size=8),
)
def test_queue_matches_naive_reference(
    size: int, dim: int, store_ids: bool, batches: list[tuple[int, bool]]
) -> None:
    q = EmbeddingQueue(size, dim, store_ids=store_ids)
    ref = NaiveQueue(size)
    count = 0
    for b, give_ids in batches:
        keys = _rows(count, b, dim)
        ids = torch.arange(count, count + b) + 100 if (store_ids and give_ids) else None
        q.enqueue(keys, ids)
        ref.enqueue(keys.tolist(), ids.tolist() if ids is not None else [-1] * b)
        count += b

        n = len(ref.rows)
        assert len(q) == n == int(q.filled)
        assert int(q.ptr) == ref.total % size
        assert q.is_full == (n == size)
        mask = q.valid_mask()
        assert mask.dtype == torch.bool and mask.shape == (size,)
        assert mask.tolist() == [j < n for j in range(size)]
        got = q.get()
        assert got.shape == (n, dim) and got.dtype == torch.float32
        # Documented slot order: insertion order until full, then the oldest sits at slot ptr.
        oldest_first = got.roll(-int(q.ptr), 0) if q.is_full else got
        assert oldest_first.tolist() == [r for r, _ in ref.rows]
        # Same multiset whatever the order.
        assert sorted(map(tuple, got.tolist())) == sorted(tuple(r) for r, _ in ref.rows)
        # Empty slots stay zero.
        assert not q.embeddings[~mask].any()
        if store_ids:
            got_ids = q.get_ids()
            ids_oldest_first = got_ids.roll(-int(q.ptr), 0) if q.is_full else got_ids
            assert ids_oldest_first.tolist() == [i for _, i in ref.rows]
            assert (q.ids[~mask] == -1).all()  # type: ignore[index]
        else:
            assert q.ids is None


def test_batch_larger_than_queue_keeps_newest() -> None:
    q = EmbeddingQueue(3, 1)
    q.enqueue(torch.tensor([[1.0]]))
    q.enqueue(torch.arange(10.0, 17.0).unsqueeze(1))  # 7 keys into a queue of 3
    assert int(q.ptr) == (1 + 7) % 3 and len(q) == 3
    assert sorted(q.get().flatten().tolist()) == [14.0, 15.0, 16.0]
    assert q.get().roll(-int(q.ptr), 0).flatten().tolist() == [14.0, 15.0, 16.0]


def test_starts_empty_and_reset() -> None:
    q = EmbeddingQueue(4, 2, store_ids=True)
    assert len(q) == 0 and not q.is_full and q.get().shape == (0, 2) and q.get_ids().shape == (0,)
    assert not q.valid_mask().any() and not q.embeddings.any()
    q.enqueue(torch.ones(5, 2), torch.arange(5))
    assert q.is_full
    q.reset()
    assert len(q) == 0 and int(q.ptr) == 0 and not q.embeddings.any() and (q.ids == -1).all()  # type: ignore[operator]
    assert "size=4, dim=2, store_ids=True" in repr(q)


def test_state_dict_round_trip_continues_identically() -> None:
    torch.manual_seed(0)
    q = EmbeddingQueue(5, 3, store_ids=True)
    q.enqueue(torch.randn(3, 3), torch.arange(3))
    q.enqueue(torch.randn(4, 3), torch.arange(3, 7))
    sd = q.state_dict()
    assert set(sd) == {"embeddings", "ptr", "filled", "ids"}
    q2 = EmbeddingQueue(5, 3, store_ids=True)
    q2.load_state_dict(sd)
    for _ in range(3):
        keys, ids = torch.randn(2, 3), torch.randint(0, 50, (2,))
        q.enqueue(keys, ids)
        q2.enqueue(keys, ids)
        assert torch.equal(q.get(), q2.get()) and torch.equal(q.get_ids(), q2.get_ids())
        assert int(q.ptr) == int(q2.ptr) and len(q) == len(q2)
    assert set(EmbeddingQueue(2, 2).state_dict()) == {"embeddings", "ptr", "filled"}


def test_no_gradient_in_queue_and_backward_after_enqueue() -> None:
    q = EmbeddingQueue(4, 2)
    w = torch.randn(3, 2, requires_grad=True)
    q.enqueue(w * 2)
    assert not q.embeddings.requires_grad and not q.get().requires_grad
    assert q.embeddings.grad_fn is None
    query = torch.randn(1, 2, requires_grad=True)
    loss = (query @ q.get().T).sum()
    q.enqueue(torch.randn(2, 2))  # in-place write after use must not break backward
    loss.backward()
    assert query.grad is not None and w.grad is None


def test_casts_to_float32() -> None:
    q = EmbeddingQueue(2, 2)
    q.enqueue(torch.tensor([[0.5, 1.5]], dtype=torch.bfloat16))
    q.enqueue(torch.tensor([[2.0, 3.0]], dtype=torch.float64))
    assert q.embeddings.dtype == torch.float32 and q.get().tolist() == [[0.5, 1.5], [2.0, 3.0]]


def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="size"):
        EmbeddingQueue(0, 2)
    with pytest.raises(ValueError, match="dim"):
        EmbeddingQueue(2, 0)
    q = EmbeddingQueue(3, 2, store_ids=True)
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        q.enqueue(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        q.enqueue(torch.zeros(2))
    with pytest.raises(ValueError, match=r"ids must have shape \[2\]"):
        q.enqueue(torch.zeros(2, 2), torch.arange(3))
    with pytest.raises(TypeError, match="integer"):
        q.enqueue(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(TypeError, match="floating"):
        q.enqueue(torch.zeros(2, 2, dtype=torch.long))
    plain = EmbeddingQueue(3, 2)
    with pytest.raises(ValueError, match="store_ids=False"):
        plain.enqueue(torch.zeros(1, 2), torch.arange(1))
    with pytest.raises(ValueError, match="store_ids=False"):
        plain.get_ids()
    assert len(q) == 0 and len(plain) == 0  # failed calls changed nothing
