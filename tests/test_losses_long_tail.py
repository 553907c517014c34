"""KCL and BCL against their papers' formulas written out element by element, in float64; KCL's draw of k
positives; KCL with every class-mate is SupCon."""

from __future__ import annotations

import math

import pytest
import torch

from hfcontrast.losses import supcon_loss
from hfcontrast.losses.long_tail import bcl_loss, kcl_loss, kcl_positives

LABELS = torch.tensor([0, 0, 0, 0, 1, 1, 2, 0])  # a head class (5), a middle one (2), a tail one (1)


def _features(b: int = 8, v: int = 2, d: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, v, d, generator=g, dtype=torch.float64)


def _unit_rows(features: torch.Tensor) -> list[list[float]]:
    b, v, _ = features.shape
    rows = []
    for view in range(v):
        for sample in range(b):
            x = [float(t) for t in features[sample, view]]
            norm = math.sqrt(sum(t * t for t in x))
            rows.append([t / norm for t in x])
    return rows


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def naive_kcl(features: torch.Tensor, positives: torch.Tensor, tau: float) -> float:
    """Kang et al. 2021, eq. 3, with the positive sets given."""
    z = _unit_rows(features)
    n, total = len(z), 0.0
    for i in range(n):
        denominator = sum(math.exp(_dot(z[i], z[a]) / tau) for a in range(n) if a != i)
        chosen = [p for p in range(n) if positives[i, p]]
        total += -sum(math.log(math.exp(_dot(z[i], z[p]) / tau) / denominator) for p in chosen) / len(chosen)
    return total / n


def naive_bcl(features: torch.Tensor, labels: torch.Tensor, classes: int, prototypes: torch.Tensor | None,
              keep: list[bool] | None, tau: float) -> float:  # fmt: skip
    """Zhu et al. 2022, eq. 6: class-averaged denominators over the batch's rows and the kept prototypes."""
    z = _unit_rows(features)
    row_labels = [int(labels[i % len(labels)]) for i in range(len(z))]
    candidates = list(zip(z, row_labels, strict=True))
    if prototypes is not None:
        for c in range(classes):
            if keep is None or keep[c]:
                candidates.append((_unit_rows(prototypes[None, None, c].expand(1, 2, -1))[0], c))
    total, anchors = 0.0, 0
    for i, (anchor, label) in enumerate(zip(z, row_labels, strict=True)):
        others = [(vec, y) for k, (vec, y) in enumerate(candidates) if k != i]
        by_class: dict[int, list[list[float]]] = {}
        for vec, y in others:
            by_class.setdefault(y, []).append(vec)
        denominator = sum(sum(math.exp(_dot(anchor, vec) / tau) for vec in members) / len(members) for members in by_class.values())
        positives = by_class.get(label, [])
        if not positives:
            continue
        total += -sum(math.log(math.exp(_dot(anchor, vec) / tau) / denominator) for vec in positives) / len(positives)
        anchors += 1
    return total / anchors


def test_kcl_draws_k_class_mates_besides_the_rows_own_views() -> None:
    noise = torch.rand(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    positives = kcl_positives(LABELS, 2, 3, noise)
    rows = LABELS.repeat(2)
    for i in range(16):
        own = {j for j in range(16) if j % 8 == i % 8 and j != i}
        mates = {j for j in range(16) if rows[j] == rows[i] and j % 8 != i % 8}
        chosen = {j for j in range(16) if positives[i, j]}
        assert own <= chosen and chosen - own <= mates
        assert len(chosen - own) == min(3, len(mates))
        top = sorted(mates, key=lambda j: -float(noise[i, j]))[:3]  # the largest draws
        assert chosen - own == set(top)


def test_kcl_draws_every_class_mate_equally_often() -> None:
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(16)
    for _ in range(3000):
        counts += kcl_positives(LABELS, 2, 3, torch.rand(16, 16, generator=g))[0].float()
    mates = [j for j in range(16) if LABELS.repeat(2)[j] == 0 and j % 8 != 0]  # 8 class-mates of row 0
    expected = 3000 * 3 / len(mates)
    assert all(abs(float(counts[j]) - expected) < 0.1 * expected for j in mates)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_kcl_matches_the_papers_formula(k: int) -> None:
    features = _features()
    noise = torch.rand(16, 16, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    expected = naive_kcl(features, kcl_positives(LABELS, 2, k, noise), 0.2)
    assert float(kcl_loss(features, LABELS, k, noise, 0.2)) == pytest.approx(expected, rel=1e-12)


def test_kcl_with_every_class_mate_is_supcon() -> None:
    features, noise = _features(), torch.rand(16, 16, dtype=torch.float64)
    expected = supcon_loss(features, LABELS, temperature=0.2).loss
    torch.testing.assert_close(kcl_loss(features, LABELS, 100, noise, 0.2), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("with_prototypes", [False, True])
def test_bcl_matches_the_papers_formula(with_prototypes: bool) -> None:
    features = _features(seed=2)
    prototypes = torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) if with_prototypes else None
    keep = [True, False, True, True]  # class 1's centre not yet seen; class 3 has no row in the batch
    mask = torch.tensor(keep) if with_prototypes else None
    expected = naive_bcl(features, LABELS, 4, prototypes, keep if with_prototypes else None, 0.2)
    assert float(bcl_loss(features, LABELS, 4, prototypes, mask, 0.2)) == pytest.approx(expected, rel=1e-12)


def test_kcl_and_bcl_gradients_are_the_formulas() -> None:
    features = _features(b=5, d=3).requires_grad_()
    labels, noise = torch.tensor([0, 0, 1, 0, 1]), torch.rand(10, 10, dtype=torch.float64)
    prototypes = torch.randn(2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: kcl_loss(f, labels, 2, noise, 0.3), (features,))
    assert torch.autograd.gradcheck(lambda f: bcl_loss(f, labels, 2, prototypes, None, 0.3), (features,))


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="features must be"):
        kcl_loss(torch.randn(4, 6), LABELS[:4], 2, torch.rand(4, 4))
    with pytest.raises(ValueError, match="noise must have shape"):
        kcl_loss(_features(), LABELS, 2, torch.rand(8, 8))
    with pytest.raises(ValueError, match="prototypes must have shape"):
        bcl_loss(_features(), LABELS, 3, torch.randn(4, 6))
