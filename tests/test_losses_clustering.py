"""Clustering-family losses against their formulas written out: Sinkhorn-Knopp constraints and its
split-batch equality, SwAV's swapped prediction, DINO's centred cross-entropy, PCL's prototype term and
k-means against a naive loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hfcontrast.losses.clustering import (
    concentration,
    dino_loss,
    kmeans,
    proto_nce_term,
    sinkhorn_knopp,
    swapped_prediction_loss,
)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_sinkhorn_codes_meet_the_constraints() -> None:
    scores = F.normalize(randn(32, 4, seed=1), dim=-1)
    codes = sinkhorn_knopp(scores, epsilon=0.1, iterations=300)
    torch.testing.assert_close(codes.sum(1), torch.ones(32, dtype=torch.float64))  # each sample: a distribution
    torch.testing.assert_close(codes.sum(0), torch.full((4,), 8.0, dtype=torch.float64), rtol=1e-3, atol=1e-3)  # B / K each


def test_sinkhorn_split_over_two_processes_equals_the_concatenated_batch() -> None:
    """The all-reduced sums make two halves' codes equal the whole batch's (simulated processes: the
    all-reduce of one half adds the other half's partial sum, computed in lockstep)."""
    scores = F.normalize(randn(24, 5, seed=2), dim=-1)
    whole = sinkhorn_knopp(scores, iterations=3)
    halves = [scores[:12], scores[12:]]
    # Run both "processes" step by step: each all_reduce call is answered with the sum of both.
    import threading

    barrier, slots, results = threading.Barrier(2), [None, None], [None, None]

    def worker(r: int) -> None:
        def all_reduce(t: torch.Tensor) -> torch.Tensor:
            slots[r] = t.clone()
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()
            return total

        results[r] = sinkhorn_knopp(halves[r], iterations=3, all_reduce=all_reduce)

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.testing.assert_close(torch.cat(results), whole)  # type: ignore[arg-type]


def test_swapped_prediction_matches_pseudo_code() -> None:
    scores = [randn(6, 5, seed=s) for s in range(4)]  # 2 global + 2 local crops
    codes = [sinkhorn_knopp(scores[i]) for i in range(2)]
    got = swapped_prediction_loss(scores, codes, temperature=0.1).loss
    total, pairs = 0.0, 0
    for i in range(2):
        for v in range(4):
            if v == i:
                continue
            for b in range(6):
                z = sum(math.exp(float(scores[v][b, k]) / 0.1) for k in range(5))
                total -= sum(float(codes[i][b, k]) * (float(scores[v][b, k]) / 0.1 - math.log(z)) for k in range(5)) / 6
            pairs += 1
    assert float(got) == pytest.approx(total / pairs, rel=1e-9)


def test_dino_loss_matches_pseudo_code_and_uses_the_centre() -> None:
    student = [randn(5, 7, seed=s) for s in range(3)]
    teacher = [randn(5, 7, seed=10 + s) for s in range(2)]
    center = randn(7, seed=20)
    got = dino_loss(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04).loss
    total, pairs = 0.0, 0
    for i in range(2):
        t = F.softmax((teacher[i] - center) / 0.04, dim=-1)
        for v in range(3):
            if v != i:
                total += float(-(t * F.log_softmax(student[v] / 0.1, dim=-1)).sum(-1).mean())
                pairs += 1
    assert float(got) == pytest.approx(total / pairs, rel=1e-9)
    assert float(dino_loss(student, teacher, center * 0).loss) != pytest.approx(float(got))


def test_proto_nce_term_matches_naive_loop() -> None:
    q = randn(6, 4, seed=1)
    centroids, assigned, phi = [randn(3, 4, seed=2), randn(5, 4, seed=3)], [torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([4, 3, 2, 1, 0, 0])], [torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.1]
    got = proto_nce_term(q, centroids, assigned, phi).loss
    want = 0.0
    for c, a, p in zip(centroids, assigned, phi):
        qn, cn = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
        for i in range(6):
            logits = [float(qn[i] @ cn[j]) / float(p[j]) for j in range(c.shape[0])]
            want -= (logits[int(a[i])] - math.log(sum(math.exp(x) for x in logits))) / 6
    assert float(got) == pytest.approx(want / 2, rel=1e-9)


def test_kmeans_is_deterministic_and_equals_a_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 3, generator=g) * 0.1 + torch.tensor(c) for c in ([3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0])])
    c1, a1 = kmeans(x, 3, seed=4)
    c2, a2 = kmeans(x, 3, seed=4)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    # naive: each point to its most cosine-similar final centroid, one loop per point
    xn = F.normalize(x.double(), dim=-1)
    naive = [max(range(3), key=lambda j: float(xn[i] @ c1[j].double())) for i in range(x.shape[0])]
    assert a1.tolist() == naive
    assert sorted(torch.bincount(a1).tolist()) == [20, 20, 20]  # the three planted clusters
    phi = concentration(x, c1, a1)
    assert phi.shape == (3,) and bool((phi > 0).all())


def test_concentration_is_the_papers_formula_written_out() -> None:
    """PCL's eq. 12, ``phi_k = sum_z ||v_z - c_k||_2 / (Z log(Z + alpha))`` over the ``Z`` normalised members of
    cluster ``k``, computed here in a float64 loop. A singleton cluster (no spread to measure) takes the median
    of the others, and values are kept within ``[0.1, 10] x`` that median. The PCL reference code rescales
    further (it clips to the 10th-90th percentiles and scales ``phi`` so that its mean equals the temperature);
    this implementation keeps the paper's scale, which the last assertion pins."""
    x = randn(9, 4, seed=7)
    centroids = F.normalize(randn(4, 4, seed=8), dim=-1)
    assigned = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])  # cluster 3 is a singleton
    alpha = 10.0
    members = F.normalize(x, dim=-1)
    written = []
    for k in range(3):
        rows = [members[i] for i in range(9) if int(assigned[i]) == k]
        distance = sum(float((row - centroids[k]).norm()) for row in rows)
        written.append(distance / (len(rows) * math.log(len(rows) + alpha)))
    median = sorted(written)[1]
    expected = [min(max(value, 0.1 * median), 10 * median) for value in written] + [median]
    phi = concentration(x, centroids, assigned, alpha=alpha)
    torch.testing.assert_close(phi.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-7)
    assert abs(float(phi.mean()) - 0.2) > 1e-3  # not rescaled to a temperature, unlike the reference code


def test_concentration_clamps_an_outlying_cluster_to_ten_medians() -> None:
    centroids = torch.eye(4, dtype=torch.float64)
    tight = [centroids[0] + 1e-3 * randn(4, seed=s) for s in range(3)] + [centroids[1] + 1e-3 * randn(4, seed=10 + s) for s in range(3)]
    loose = [centroids[2] + 1e-3 * randn(4, seed=20), centroids[2] + 1e-3 * randn(4, seed=21), -centroids[2]]  # one far member
    x = torch.stack(tight + loose)
    assigned = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    phi = concentration(x, centroids[:3], assigned)
    median = float(phi.median())
    assert float(phi[2]) == pytest.approx(10 * median, rel=1e-6)  # 2 / (3 log 13) is far more than ten medians
