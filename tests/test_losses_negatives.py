"""Negative-handling losses against naive float64 Python loops; chunked == plain (values, gradients, gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hfcontrast.losses import (
    ColumnRoles,
    chunked_info_nce,
    contrastive_loss,
    dcl_loss,
    debiased_info_nce,
    draw_mochi,
    duplicate_mask,
    fncl_false_negatives,
    hard_negative_log_weights,
    info_nce,
    mochi_negatives,
    normalize_text,
    supcon_loss,
    text_ids,
)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def logit_rows(q: torch.Tensor, c: torch.Tensor, tau: float) -> list[list[float]]:
    return [[cos(qi, cj) / tau for cj in c.tolist()] for qi in q.tolist()]


def naive_general(
    rows: list[list[float]], pos: list[set[int]], neg: list[set[int]], decoupled: bool = False
) -> float:
    """SupCon L_out / InfoNCE (denominator over positives + negatives) or DCL (negatives only), mean over rows."""
    total = 0.0
    for row, p_set, n_set in zip(rows, pos, neg):
        denom_cols = n_set if decoupled else p_set | n_set
        log_denom = math.log(sum(math.exp(row[j]) for j in denom_cols))
        total += sum(log_denom - row[p] for p in p_set) / len(p_set)
    return total / len(rows)


def naive_hcl(
    rows: list[list[float]], pos: list[int], neg: list[set[int]], tau: float, tau_plus: float, beta: float
) -> float:
    """Robinson et al.'s reference code (Chuang et al.'s when beta = 0), literally."""
    total = 0.0
    for row, p, n_set in zip(rows, pos, neg):
        e_pos = math.exp(row[p])
        e_neg = [math.exp(row[j]) for j in sorted(n_set)]
        n = len(e_neg)
        imp = [x**beta for x in e_neg]
        reweight = sum(i * x for i, x in zip(imp, e_neg)) / (sum(imp) / n)
        ng = max((-tau_plus * n * e_pos + reweight) / (1 - tau_plus), n * math.exp(-1 / tau))
        total += -math.log(e_pos / (e_pos + ng))
    return total / len(rows)


# ----------------------------------------------------------------------------- masks and ids
def test_text_ids_normalise_case_punctuation_and_spaces() -> None:
    assert normalize_text("  Hello,   World! ") == "hello world"
    ids = text_ids(["Hello, world!", "hello   WORLD", "hello there", "Hello world."])
    assert ids.dtype == torch.long and bool((ids >= 0).all())
    assert ids[0] == ids[1] == ids[3] and ids[0] != ids[2]
    assert torch.equal(text_ids(["a b"]), text_ids(["A-B"]))  # stable across calls (no salted hash)


def test_duplicate_mask_and_roles() -> None:
    mask = duplicate_mask(torch.tensor([0, 1, -1]), torch.tensor([1, 0, -1, 1]))
    assert mask.tolist() == [[False, True, False, False], [True, False, False, True], [False] * 4]
    roles = ColumnRoles(
        positive_index=torch.tensor([1, 0]),
        self_index=torch.tensor([0, 1]),
        paired_columns=0,
        query_ids=torch.tensor([5, 6]),
        candidate_ids=torch.tensor([5, 6, 6, 5]),
        query_labels=torch.tensor([1, 2]),
        candidate_labels=torch.tensor([1, 2, 1, 2]),
    )
    roles.validate(4)
    positive, ignore = roles.masks(0, 2, 4, torch.device("cpu"))
    # row 0: self col 0, positive col 1, duplicate col 3 (id 5); label 1 at col 2 -> positive
    assert positive.tolist() == [[False, True, True, False], [True, False, False, True]]
    assert ignore.tolist() == [[True, False, False, True], [False, True, True, False]]
    with pytest.raises(ValueError, match="own positive"):
        ColumnRoles(torch.tensor([0]), self_index=torch.tensor([0])).validate(2)


# ----------------------------------------------------------------------------- plain equivalences
def test_no_options_equals_info_nce_including_hard_negative_weight() -> None:
    q, c, extra = rand(4, 3, seed=1), rand(4, 3, seed=2), rand(4, 3, seed=3)
    want = info_nce(q, c, temperature=0.1, extra_negatives=extra, extra_negative_weight=0.7).loss
    roles = ColumnRoles(positive_index=torch.arange(4), weighted_index=torch.arange(4) + 4, weight=0.7)
    got = contrastive_loss(q, torch.cat([c, extra]), roles, temperature=0.1)
    torch.testing.assert_close(got.loss, want, rtol=1e-12, atol=0)
    dot = contrastive_loss(q, c, ColumnRoles(torch.arange(4)), temperature=0.5, similarity="dot").loss
    torch.testing.assert_close(dot, info_nce(q, c, temperature=0.5, similarity="dot").loss)


def test_duplicate_in_candidates_no_longer_counts_as_negative() -> None:
    q, c = rand(4, 3, seed=4), rand(5, 3, seed=5)
    roles = ColumnRoles(
        torch.arange(4), query_ids=torch.tensor([0, 1, 2, 3]), candidate_ids=torch.tensor([0, 1, 2, 3, 1])
    )
    got = contrastive_loss(q, c, roles, temperature=0.2, reduction="none").loss
    rows = logit_rows(q, c, 0.2)
    for i in range(4):
        negatives = {j for j in range(5) if j != i and not (i == 1 and j == 4)}
        assert got[i].item() == pytest.approx(naive_general([rows[i]], [{i}], [negatives]), rel=1e-12)
    # row 1 equals the loss computed without column 4 at all
    without = info_nce(q[1:2], c[:4], torch.tensor([1]), temperature=0.2).loss
    assert got[1].item() == pytest.approx(without.item(), rel=1e-12)


# ----------------------------------------------------------------------------- SupCon, DCL
def test_supcon_matches_naive_loop_with_queue() -> None:
    feats, labels = rand(4, 2, 3, seed=6), torch.tensor([0, 1, 0, 2])
    queue, queue_labels = rand(3, 3, seed=7), torch.tensor([2, 1, 5])
    got = supcon_loss(feats, labels, temperature=0.3, queue=queue, queue_labels=queue_labels).loss
    z = torch.cat([feats[:, 0], feats[:, 1]])  # view-major rows
    all_labels = labels.repeat(2).tolist() + queue_labels.tolist()
    cols = torch.cat([z, queue])
    rows = logit_rows(z, cols, 0.3)
    pos = [{j for j in range(len(cols)) if j != i and all_labels[j] == all_labels[i]} for i in range(8)]
    neg = [{j for j in range(len(cols)) if j != i and all_labels[j] != all_labels[i]} for i in range(8)]
    assert got.item() == pytest.approx(naive_general(rows, pos, neg), rel=1e-12)
    nt_xent = supcon_loss(feats, None, temperature=0.3).loss  # no labels: SimCLR
    pos = [{(i + 4) % 8} for i in range(8)]
    neg = [set(range(8)) - {i, (i + 4) % 8} for i in range(8)]
    assert nt_xent.item() == pytest.approx(naive_general(logit_rows(z, z, 0.3), pos, neg), rel=1e-12)


def test_dcl_removes_the_positive_from_the_denominator() -> None:
    q, c = rand(5, 4, seed=8), rand(5, 4, seed=9)
    got = dcl_loss(q, c, temperature=0.25).loss
    neg = [set(range(5)) - {i} for i in range(5)]
    assert got.item() == pytest.approx(
        naive_general(logit_rows(q, c, 0.25), [{i} for i in range(5)], neg, True), rel=1e-12
    )
    # a row whose only other column is ignored has no negative: left out of the mean
    roles = ColumnRoles(torch.arange(2), ignore=torch.tensor([[False, True], [False, False]]))
    out = contrastive_loss(q[:2], c[:2], roles, temperature=0.25, decoupled=True)
    assert out.stats["rows"].item() == 1
    assert out.loss.item() == pytest.approx(
        naive_general(logit_rows(q[1:2], c[:2], 0.25), [{1}], [{0}], True), rel=1e-12
    )


# ----------------------------------------------------------------------------- debiased, hard negatives
@pytest.mark.parametrize(
    ("tau_plus", "beta", "tau"), [(0.1, 0.0, 0.5), (0.0, 1.0, 0.5), (0.1, 0.5, 0.5), (0.9, 0.0, 0.2)]
)
def test_debiased_and_hard_negatives_match_reference_code(tau_plus: float, beta: float, tau: float) -> None:
    q, c = rand(6, 4, seed=10), rand(6, 4, seed=11)
    got = debiased_info_nce(q, c, tau_plus=tau_plus, hard_negative_beta=beta, temperature=tau).loss
    neg = [set(range(6)) - {i} for i in range(6)]
    want = naive_hcl(logit_rows(q, c, tau), list(range(6)), neg, tau, tau_plus, beta)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_hard_negative_weights_average_one_and_beta_zero_is_plain() -> None:
    logits, negative = rand(3, 5, seed=12), torch.rand(3, 5, generator=torch.Generator().manual_seed(0)) > 0.3
    negative[:, 0] = True
    w = hard_negative_log_weights(logits, negative, 2.0).exp()
    torch.testing.assert_close((w * negative).sum(1), negative.sum(1).double())
    q, c = rand(4, 3, seed=13), rand(4, 3, seed=14)
    roles = ColumnRoles(torch.arange(4))
    plain = contrastive_loss(q, c, roles, temperature=0.2).loss
    assert contrastive_loss(
        q, c, roles, temperature=0.2, hard_negative_beta=1e-12
    ).loss.item() == pytest.approx(plain.item())
    # beta alone (no debiasing), InfoNCE with weighted negatives
    beta = contrastive_loss(q, c, roles, temperature=0.2, hard_negative_beta=1.5).loss
    neg = [set(range(4)) - {i} for i in range(4)]
    assert beta.item() == pytest.approx(
        naive_hcl(logit_rows(q, c, 0.2), list(range(4)), neg, 0.2, 0.0, 1.5), rel=1e-10
    )


# ----------------------------------------------------------------------------- FNCL
@pytest.mark.parametrize("mode", ["eliminate", "attract"])
def test_fncl_matches_naive_loop(mode: str) -> None:
    q, c, k = rand(4, 3, seed=15), rand(6, 3, seed=16), 2
    got = contrastive_loss(q, c, ColumnRoles(torch.arange(4)), temperature=0.3, fncl=mode, fncl_top_k=k)  # type: ignore[arg-type]
    rows, ql, cl = logit_rows(q, c, 0.3), q.tolist(), c.tolist()
    pos, neg = [], []
    for i in range(4):
        negatives = [j for j in range(6) if j != i]
        score = {j: 0.5 * (cos(ql[i], cl[j]) + cos(cl[i], cl[j])) for j in negatives}
        flagged = set(sorted(negatives, key=lambda j: -score[j])[:k])
        pos.append({i} | flagged if mode == "attract" else {i})
        neg.append(set(negatives) - flagged)
    assert got.loss.item() == pytest.approx(naive_general(rows, pos, neg), rel=1e-12)
    assert got.stats["false_negatives"].item() == k


def test_fncl_detection_respects_the_negative_mask() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5]])
    negative = torch.tensor([[False, True, True, True]])
    assert fncl_false_negatives(scores, negative, 2).tolist() == [[False, True, False, True]]
    assert fncl_false_negatives(scores, negative, 9).tolist() == [[False, True, True, True]]


# ----------------------------------------------------------------------------- MoCHi
def test_mochi_matches_naive_synthesis() -> None:
    n_rows, dim = 3, 4
    q, keys, queue = rand(n_rows, dim, seed=17), rand(n_rows, dim, seed=18), rand(5, dim, seed=19)
    draws = draw_mochi(n_rows, 3, 2, 2, start=n_rows, generator=torch.Generator().manual_seed(1))
    roles = ColumnRoles(torch.arange(n_rows), paired_columns=n_rows)
    got = contrastive_loss(q, torch.cat([keys, queue]), roles, temperature=0.2, mochi=draws)

    def unit(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    ql, bank = [unit(v) for v in q.tolist()], [unit(v) for v in queue.tolist()]
    total = 0.0
    for i in range(n_rows):
        top = sorted(range(5), key=lambda j: -sum(a * b for a, b in zip(ql[i], bank[j])))[:3]
        synth = []
        for (ua, ub), alpha in zip(draws.pair_u[i].tolist(), draws.alpha[i].tolist()):
            na, nb = bank[top[int(ua * 3)]], bank[top[int(ub * 3)]]
            synth.append(unit([alpha * a + (1 - alpha) * b for a, b in zip(na, nb)]))
        for u, beta in zip(draws.query_u[i].tolist(), draws.beta[i].tolist()):
            nc = bank[top[int(u * 3)]]
            synth.append(unit([beta * a + (1 - beta) * b for a, b in zip(ql[i], nc)]))
        row = [cos(ql[i], keys[i].tolist()) / 0.2] + [cos(ql[i], v) / 0.2 for v in bank + synth]
        total += math.log(sum(math.exp(x) for x in row)) - row[0]
    assert got.loss.item() == pytest.approx(total / n_rows, rel=1e-12)
    assert got.stats["negatives"].item() == 5 + 4


def test_mochi_synthetics_carry_no_gradient_and_skip_invalid_negatives() -> None:
    q, bank = rand(2, 3, seed=20), rand(4, 3, seed=21)
    negative = torch.tensor([[True, False, False, False], [False, False, False, False]])
    draws = draw_mochi(2, 3, 2, 1, start=0, generator=torch.Generator().manual_seed(2))
    synthetic, valid = mochi_negatives(q.requires_grad_(), bank, negative, draws)
    assert not synthetic.requires_grad and valid.tolist() == [[True] * 3, [False] * 3]
    # row 0 has one usable negative: both mixed negatives are that negative (normalised)
    torch.testing.assert_close(synthetic[0, 0], torch.nn.functional.normalize(bank[0], dim=0))


# ----------------------------------------------------------------------------- chunked loss
OPTION_SETS = [
    {},
    {"hard_negative_beta": 1.0},
    {"decoupled": True},
    {"tau_plus": 0.1},
    {"fncl": "attract", "fncl_top_k": 2},
    {"fncl": "eliminate", "hard_negative_beta": 0.5, "decoupled": True},
]


@pytest.mark.parametrize("options", OPTION_SETS)
def test_chunked_equals_plain_values_and_gradients(options: dict) -> None:
    q, c = rand(7, 4, seed=22).requires_grad_(), rand(9, 4, seed=23).requires_grad_()
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    roles = ColumnRoles(
        torch.arange(7),
        query_ids=torch.tensor([0, 1, 2, 3, 4, 5, 6]),
        candidate_ids=torch.tensor([0, 1, 2, 3, 4, 5, 6, 1, 9]),
    )
    plain = contrastive_loss(q, c, roles, temperature=tau, **options).loss
    want = torch.autograd.grad(plain, (q, c, tau))
    for chunk in (1, 3, 7, 50):
        chunked = contrastive_loss(q, c, roles, temperature=tau, chunk_size=chunk, **options).loss
        torch.testing.assert_close(chunked, plain, rtol=1e-12, atol=1e-14)
        for got, expected in zip(torch.autograd.grad(chunked, (q, c, tau)), want):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_chunked_info_nce_equals_info_nce_and_passes_gradcheck() -> None:
    q, c = rand(6, 3, seed=24).requires_grad_(), rand(8, 3, seed=25).requires_grad_()
    torch.testing.assert_close(
        chunked_info_nce(q, c, temperature=0.2, chunk_size=4).loss, info_nce(q, c, temperature=0.2).loss
    )

    def fn(query: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        return chunked_info_nce(query, cand, temperature=0.4, chunk_size=2).loss

    assert torch.autograd.gradcheck(fn, (q, c))

    def fn_options(query: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        roles = ColumnRoles(torch.arange(6), self_index=torch.tensor([7, 6, -1, -1, -1, -1]))
        return contrastive_loss(
            query, cand, roles, temperature=0.4, chunk_size=4, hard_negative_beta=1.0, tau_plus=0.05
        ).loss

    assert torch.autograd.gradcheck(fn_options, (q, c))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 6), chunk=st.integers(1, 7), seed=st.integers(0, 1000), scale=st.floats(0.1, 10.0))
def test_properties_permutation_chunk_and_scale_invariance(
    n: int, chunk: int, seed: int, scale: float
) -> None:
    q, c = rand(n, 3, seed=seed), rand(n, 3, seed=seed + 1)
    labels = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed))
    roles = ColumnRoles(torch.arange(n), query_labels=labels, candidate_labels=labels)
    base = contrastive_loss(q, c, roles, temperature=0.3, decoupled=True, hard_negative_beta=0.5).loss
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.randperm(n, generator=g), torch.randperm(n, generator=g)
    permuted = ColumnRoles(
        torch.argsort(cols)[rows], query_labels=labels[rows], candidate_labels=labels[cols]
    )
    got = contrastive_loss(
        q[rows], c[cols], permuted, temperature=0.3, decoupled=True, hard_negative_beta=0.5
    ).loss
    torch.testing.assert_close(got, base)
    scaled = contrastive_loss(
        scale * q, c / scale, roles, temperature=0.3, decoupled=True, hard_negative_beta=0.5, chunk_size=chunk
    )
    torch.testing.assert_close(scaled.loss, base)


def test_validation_errors() -> None:
    q, c, roles = rand(3, 2), rand(3, 2), ColumnRoles(torch.arange(3))
    with pytest.raises(ValueError, match="decoupled"):
        contrastive_loss(q, c, roles, temperature=0.1, tau_plus=0.1, decoupled=True)
    with pytest.raises(ValueError, match="cosine"):
        contrastive_loss(q, c, roles, temperature=0.1, tau_plus=0.1, similarity="dot")
    with pytest.raises(ValueError, match="one positive"):
        contrastive_loss(q, c, roles, temperature=0.1, tau_plus=0.1, fncl="attract")
    with pytest.raises(ValueError, match="tau_plus"):
        contrastive_loss(q, c, roles, temperature=0.1, tau_plus=1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        contrastive_loss(q, c, roles, temperature=0.1, chunk_size=0)
    with pytest.raises(ValueError, match="temperature"):
        contrastive_loss(q, c, roles, temperature=0.0)
    with pytest.raises(ValueError, match="MoCHi"):
        draw_mochi(3, 0, 1, 1, start=0)
