"""info_nce / similarity_matrix against naive float64 Python loops, plus gradcheck and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hfcontrast.losses import LossOutput, info_nce, similarity_matrix


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _naive_sim(u: list[float], v: list[float], similarity: str) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    if similarity == "dot":
        return dot
    nu = math.sqrt(sum(a * a for a in u))
    nv = math.sqrt(sum(b * b for b in v))
    return dot / (nu * nv)


def _naive_ce(row: list[float], target: int) -> float:
    finite = [x for x in row if x != -math.inf]
    top = max(finite)
    return -(row[target] - top - math.log(sum(math.exp(x - top) for x in finite)))


def _naive_info_nce(
    q: torch.Tensor,
    c: torch.Tensor,
    pos: list[int],
    tau: float,
    similarity: str = "cosine",
    extra: torch.Tensor | None = None,
    weight: float = 0.0,
    hard: list[int] | None = None,
    mask: list[list[bool]] | None = None,
    symmetric: bool = False,
) -> tuple[list[float], list[list[float]]]:
    """Per-row losses and the logits matrix, element by element in float64 Python."""
    ql, cl = q.double().tolist(), c.double().tolist()
    el = extra.double().tolist() if extra is not None else []
    cols = cl + el
    m = len(cl)
    logits = []
    for i, qi in enumerate(ql):
        row = []
        for j, cj in enumerate(cols):
            val = _naive_sim(qi, cj, similarity) / tau
            if weight and hard is not None and j == m + hard[i]:
                val += weight
            if mask is not None and j < len(mask[i]) and mask[i][j]:
                val = -math.inf
            row.append(val)
        logits.append(row)
    losses = [_naive_ce(logits[i], pos[i]) for i in range(len(ql))]
    if symmetric:
        for j in range(len(ql)):
            row = []
            for i in range(len(ql)):
                val = _naive_sim(cl[pos[j]], ql[i], similarity) / tau
                if mask is not None and mask[i][pos[j]]:
                    val = -math.inf
                row.append(val)
            losses[j] = 0.5 * (losses[j] + _naive_ce(row, j))
    return losses, logits


def _assert_close(t: torch.Tensor, ref: float | list, tol: float = 1e-5) -> None:
    expected = torch.tensor(ref, dtype=torch.float64)
    torch.testing.assert_close(t.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_similarity_matrix_matches_loop(similarity: str) -> None:
    a, b = _rand(3, 5, seed=1), _rand(4, 5, seed=2)
    out = similarity_matrix(a, b, similarity)  # type: ignore[arg-type]
    assert out.shape == (3, 4) and out.dtype == torch.float32
    ref = [[_naive_sim(u, v, similarity) for v in b.double().tolist()] for u in a.double().tolist()]
    _assert_close(out, ref)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_info_nce_matches_loop(similarity: str, tau: float) -> None:
    q, c = _rand(4, 6, seed=3), _rand(5, 6, seed=4)
    if similarity == "dot":
        q, c = 0.3 * q, 0.3 * c
    pos = [2, 0, 4, 1]
    out = info_nce(q, c, torch.tensor(pos), temperature=tau, similarity=similarity)  # type: ignore[arg-type]
    losses, logits = _naive_info_nce(q, c, pos, tau, similarity)
    assert isinstance(out, LossOutput)
    _assert_close(out.loss, sum(losses) / len(losses))
    _assert_close(out.logits, logits, tol=1e-4)  # type: ignore[arg-type]
    assert out.labels is not None and out.labels.tolist() == pos


def test_default_positive_index_and_reductions() -> None:
    q, c = _rand(3, 4, seed=5), _rand(3, 4, seed=6)
    losses, _ = _naive_info_nce(q, c, [0, 1, 2], 0.1)
    _assert_close(info_nce(q, c, temperature=0.1, reduction="none").loss, losses)
    _assert_close(info_nce(q, c, temperature=0.1, reduction="sum").loss, sum(losses))
    _assert_close(info_nce(q, c, temperature=torch.tensor(0.1)).loss, sum(losses) / 3)


def test_label_offset_shard_against_global_candidates() -> None:
    world, n = 3, 2
    q_all, c_all = _rand(world * n, 4, seed=7), _rand(world * n, 4, seed=8)
    full, _ = _naive_info_nce(q_all, c_all, list(range(world * n)), 0.2)
    for rank in range(world):
        shard = q_all[rank * n : (rank + 1) * n]
        out = info_nce(shard, c_all, torch.arange(n) + rank * n, temperature=0.2, reduction="none")
        _assert_close(out.loss, full[rank * n : (rank + 1) * n])


def test_extra_negatives_widen_logits_and_match_loop() -> None:
    q, c, e = _rand(3, 4, seed=9), _rand(3, 4, seed=10), _rand(5, 4, seed=11)
    out = info_nce(q, c, temperature=0.1, extra_negatives=e)
    assert out.logits is not None and out.logits.shape == (3, 3 + 5)
    losses, logits = _naive_info_nce(q, c, [0, 1, 2], 0.1, extra=e)
    _assert_close(out.loss, sum(losses) / 3)
    _assert_close(out.logits, logits, tol=1e-4)
    assert out.loss > info_nce(q, c, temperature=0.1).loss


@pytest.mark.parametrize("hard", [None, [4, 0, 2]])
def test_hard_negative_weight_matches_loop(hard: list[int] | None) -> None:
    q, c, e = _rand(3, 4, seed=12), _rand(3, 4, seed=13), _rand(5, 4, seed=14)
    w = 0.7
    out = info_nce(
        q,
        c,
        temperature=0.05,
        extra_negatives=e,
        extra_negative_weight=w,
        hard_negative_index=None if hard is None else torch.tensor(hard),
    )
    losses, logits = _naive_info_nce(q, c, [0, 1, 2], 0.05, extra=e, weight=w, hard=hard or [0, 1, 2])
    _assert_close(out.loss, sum(losses) / 3)
    _assert_close(out.logits, logits, tol=1e-4)  # type: ignore[arg-type]
    plain = info_nce(q, c, temperature=0.05, extra_negatives=e)
    assert not torch.allclose(out.loss, plain.loss)


@pytest.mark.parametrize("full_width", [False, True])
def test_candidate_mask_matches_loop(full_width: bool) -> None:
    q, c, e = _rand(3, 4, seed=15), _rand(4, 4, seed=16), _rand(2, 4, seed=17)
    mask = [[False, True, False, True], [True, False, False, False], [False, False, False, True]]
    tmask = torch.tensor(mask)
    if full_width:
        tmask = torch.cat([tmask, torch.tensor([[True, False], [False, False], [False, True]])], 1)
        mask = tmask.tolist()
    out = info_nce(q, c, temperature=0.3, extra_negatives=e, candidate_mask=tmask)
    losses, _ = _naive_info_nce(q, c, [0, 1, 2], 0.3, extra=e, mask=mask)
    _assert_close(out.loss, sum(losses) / 3)


def test_symmetric_matches_loop() -> None:
    q, c = _rand(4, 3, seed=18), _rand(4, 3, seed=19)
    pos = [3, 1, 0, 2]
    mask = [
        [False, False, True, False],
        [False, False, False, True],
        [False, True, False, False],
        [True, True, False, False],
    ]
    out = info_nce(
        q, c, torch.tensor(pos), temperature=0.2, candidate_mask=torch.tensor(mask), symmetric=True
    )
    losses, _ = _naive_info_nce(q, c, pos, 0.2, mask=mask, symmetric=True)
    _assert_close(out.loss, sum(losses) / 4)
    assert set(out.stats) == {"loss_forward", "loss_backward"}


def test_symmetric_rejects_non_permutation_and_rectangular() -> None:
    q, c = _rand(3, 4, seed=20), _rand(3, 4, seed=21)
    with pytest.raises(ValueError, match="permutation"):
        info_nce(q, c, torch.tensor([0, 0, 1]), symmetric=True)
    with pytest.raises(ValueError, match="symmetric"):
        info_nce(q, _rand(5, 4), symmetric=True)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), torch.tensor(0.0), torch.tensor(-2.0)])
def test_temperature_must_be_positive(bad: float | torch.Tensor) -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce(_rand(2, 3), _rand(2, 3), temperature=bad)


def test_mask_hitting_positive_raises() -> None:
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[1, 2] = True
    with pytest.raises(ValueError, match="positive"):
        info_nce(_rand(3, 2), _rand(3, 2), torch.tensor([0, 2, 1]), candidate_mask=mask)


def test_shape_errors() -> None:
    q = _rand(3, 4)
    with pytest.raises(ValueError, match="dim"):
        info_nce(q, _rand(3, 5))
    with pytest.raises(ValueError, match="M >= N"):
        info_nce(q, _rand(2, 4))
    with pytest.raises(ValueError, match="positive_index"):
        info_nce(q, _rand(3, 4), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="positive_index"):
        info_nce(q, _rand(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="candidate_mask"):
        info_nce(q, _rand(3, 4), candidate_mask=torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="extra_negatives"):
        info_nce(q, _rand(3, 4), extra_negative_weight=1.0)
    with pytest.raises(ValueError, match="2-D"):
        info_nce(_rand(3), _rand(3, 4))
    with pytest.raises(ValueError, match="similarity"):
        info_nce(q, q, similarity="l2")  # type: ignore[arg-type]


def test_fp16_input_gives_fp32_logits() -> None:
    q, c = _rand(3, 4, dtype=torch.float16), _rand(3, 4, seed=1, dtype=torch.float16)
    out = info_nce(q, c, extra_negatives=_rand(2, 4, seed=2, dtype=torch.bfloat16))
    assert out.logits is not None and out.logits.dtype == torch.float32
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    losses, _ = _naive_info_nce(q, c, [0, 1, 2], 0.05, extra=_rand(2, 4, seed=2, dtype=torch.bfloat16))
    _assert_close(out.loss, sum(losses) / 3, tol=1e-4)


def test_gradcheck_float64() -> None:
    q = _rand(3, 4, seed=22, dtype=torch.float64).requires_grad_()
    c = _rand(4, 4, seed=23, dtype=torch.float64).requires_grad_()
    e = _rand(3, 4, seed=24, dtype=torch.float64).requires_grad_()
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 3] = True

    def fn(q: torch.Tensor, c: torch.Tensor, e: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        pos = torch.tensor([1, 0, 2])
        return info_nce(
            q, c, pos, temperature=tau, extra_negatives=e, extra_negative_weight=0.5, candidate_mask=mask
        ).loss

    assert torch.autograd.gradcheck(fn, (q, c, e, tau))
    cs = _rand(3, 4, seed=25, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda q, c: info_nce(q, c, temperature=0.5, similarity="dot", symmetric=True).loss, (q, cs)
    )


_sizes = st.tuples(st.integers(1, 5), st.integers(0, 3), st.integers(1, 6), st.integers(0, 2**16))


@settings(max_examples=25, deadline=None)
@given(_sizes, st.sampled_from(["cosine", "dot"]))
def test_permutation_invariance(sizes: tuple[int, int, int, int], similarity: str) -> None:
    n, extra_m, d, seed = sizes
    m = n + extra_m
    q, c = _rand(n, d, seed=seed, dtype=torch.float64), _rand(m, d, seed=seed + 1, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    pos = torch.randperm(m, generator=g)[:n]
    pq, pc = torch.randperm(n, generator=g), torch.randperm(m, generator=g)
    inv_pc = torch.argsort(pc)
    base = info_nce(q, c, pos, temperature=0.7, similarity=similarity).loss  # type: ignore[arg-type]
    # permute queries (rows) and candidates (columns); relabel positives accordingly
    permuted = info_nce(q[pq], c[pc], inv_pc[pos[pq]], temperature=0.7, similarity=similarity).loss  # type: ignore[arg-type]
    torch.testing.assert_close(base, permuted)


@settings(max_examples=25, deadline=None)
@given(_sizes, st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_cosine_scale_invariance(sizes: tuple[int, int, int, int], sq: float, sc: float) -> None:
    n, extra_m, d, seed = sizes
    q, c = (
        _rand(n, d, seed=seed, dtype=torch.float64),
        _rand(n + extra_m, d, seed=seed + 1, dtype=torch.float64),
    )
    base = info_nce(q, c, temperature=0.1).loss
    scaled = info_nce(q * sq, c * sc, temperature=0.1).loss
    torch.testing.assert_close(base, scaled)


# ----------------------------------------------------------------------------- no host reads
def _forbid_host_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every tensor -> Python read raise: on a GPU each one is a synchronisation of the step."""

    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tensor value was read back to the host")

    for name in ("tolist", "item", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, read)


def test_in_batch_layouts_are_not_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from hfcontrast.losses import nt_xent
    from hfcontrast.objectives import SimCSE

    q, k, hard = _rand(6, 4), _rand(6, 4, seed=1), _rand(6, 4, seed=2)
    expected = info_nce(q, k, temperature=0.1).loss
    given = torch.arange(6)
    _forbid_host_reads(monkeypatch)
    loss = info_nce(q, k, temperature=0.1).loss
    nt_xent(q, k, temperature=0.1)
    SimCSE(temperature=0.05, hard_negative_weight=0.5)({"anchor": q, "positive": k, "negative": hard}, {})
    with pytest.raises(AssertionError, match="read back"):  # a caller's index is range-checked: one read
        info_nce(q, k, given, temperature=0.1)
    monkeypatch.undo()
    torch.testing.assert_close(loss, expected)


def test_a_given_index_out_of_range_is_still_an_error() -> None:
    with pytest.raises(ValueError, match=r"positive_index values must lie in \[0, 4\), got \[0, 4\]"):
        info_nce(_rand(3, 4), _rand(4, 4), torch.tensor([0, 1, 4]))


def test_int32_positive_index_equals_int64() -> None:
    q, k = _rand(4, 8), _rand(5, 8, seed=1)
    index = torch.tensor([4, 0, 2, 1])
    expected = info_nce(q, k, index, temperature=0.1).loss
    torch.testing.assert_close(info_nce(q, k, index.int(), temperature=0.1).loss, expected)
    torch.testing.assert_close(info_nce(q, k, index.int(), temperature=0.1, reduction="sum").loss, 4 * expected)
    square = torch.tensor([3, 0, 2, 1])
    torch.testing.assert_close(
        info_nce(q, k[:4], square.int(), symmetric=True).loss, info_nce(q, k[:4], square, symmetric=True).loss
    )
