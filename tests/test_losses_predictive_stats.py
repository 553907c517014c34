"""BYOL / SimSiam losses and alignment / uniformity / top-1 accuracy against naive float64 loops."""

from __future__ import annotations

import math

import pytest
import torch

from hfcontrast.losses import alignment, byol_loss, simsiam_loss, top1_accuracy, uniformity


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _unit(u: list[float]) -> list[float]:
    norm = math.sqrt(sum(a * a for a in u))
    return [a / norm for a in u]


def _cos(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(_unit(u), _unit(v)))


def _close(t: torch.Tensor, ref: float, tol: float = 1e-6) -> None:
    torch.testing.assert_close(t.double(), torch.tensor(ref, dtype=torch.float64), rtol=tol, atol=tol)


def test_byol_and_simsiam_match_loop() -> None:
    p, z = _rand(5, 4, seed=1), _rand(5, 4, seed=2)
    cosines = [_cos(a, b) for a, b in zip(p.tolist(), z.tolist())]
    _close(byol_loss(p, z), sum(2 - 2 * c for c in cosines) / 5)
    _close(simsiam_loss(p, z), -sum(cosines) / 5)
    # BYOL == mean squared distance of normalised vectors
    sq = [sum((a - b) ** 2 for a, b in zip(_unit(u), _unit(v))) for u, v in zip(p.tolist(), z.tolist())]
    _close(byol_loss(p, z), sum(sq) / 5)


@pytest.mark.parametrize("fn", [byol_loss, simsiam_loss])
def test_target_is_stop_gradient(fn) -> None:
    p = _rand(3, 4, seed=3).requires_grad_()
    z = _rand(3, 4, seed=4).requires_grad_()
    fn(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


@pytest.mark.parametrize("fn", [byol_loss, simsiam_loss])
def test_predictive_fp16_and_shapes(fn) -> None:
    p, z = _rand(3, 4, seed=5, dtype=torch.float16), _rand(3, 4, seed=6, dtype=torch.float16)
    assert fn(p, z).dtype == torch.float32
    with pytest.raises(ValueError, match="batch size"):
        fn(_rand(3, 4), _rand(2, 4))
    with pytest.raises(ValueError, match="dim"):
        fn(_rand(3, 4), _rand(3, 5))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_loop(alpha: float) -> None:
    x, y = _rand(6, 3, seed=7), _rand(6, 3, seed=8)
    ref = [
        math.sqrt(sum((a - b) ** 2 for a, b in zip(_unit(u), _unit(v)))) ** alpha
        for u, v in zip(x.tolist(), y.tolist())
    ]
    _close(alignment(x, y, alpha=alpha), sum(ref) / 6)
    _close(alignment(5 * x, 0.1 * y, alpha=alpha), sum(ref) / 6)


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_uniformity_matches_loop(t: float) -> None:
    x = _rand(7, 3, seed=9)
    xs = [_unit(u) for u in x.tolist()]
    terms = [
        math.exp(-t * sum((a - b) ** 2 for a, b in zip(xs[i], xs[j])))
        for i in range(7)
        for j in range(i + 1, 7)
    ]
    _close(uniformity(x, t=t), math.log(sum(terms) / len(terms)))


def test_uniformity_gradient_finite_with_duplicates_and_no_grad() -> None:
    x = torch.cat([_rand(3, 4, seed=10)] * 2).requires_grad_()
    uniformity(x).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad():
        assert torch.isfinite(uniformity(x.detach())) and torch.isfinite(alignment(x, x))
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(_rand(1, 4))


def test_top1_accuracy() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 5.0]])
    labels = torch.tensor([1, 1, 2, 0])
    ref = sum(
        max(range(3), key=lambda j, r=row: r[j]) == y for row, y in zip(logits.tolist(), labels.tolist())
    )
    acc = top1_accuracy(logits, labels)
    assert acc.dtype == torch.float32
    _close(acc, ref / 4)
    _close(acc, 0.5)
    with pytest.raises(ValueError, match="labels"):
        top1_accuracy(logits, labels[:2])
