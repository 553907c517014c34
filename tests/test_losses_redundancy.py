"""Barlow Twins and VICReg against their papers' formulas written out element by element, in float64; their
objectives; DirectCLR's slice. The 2-process gradient parity is in tests/test_cluster_distributed.py."""

from __future__ import annotations

import math

import pytest
import torch

from hfcontrast.losses import barlow_twins_loss, vicreg_loss, vicreg_terms
from hfcontrast.objectives import BarlowTwins, SimCLR, VICReg


def _views(n: int = 7, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    return z1, z1 + 0.4 * torch.randn(n, d, generator=g, dtype=torch.float64)


def _column(z: torch.Tensor, k: int) -> list[float]:
    return [float(z[b, k]) for b in range(z.shape[0])]


def naive_barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lam: float, eps: float = 1e-5) -> float:
    """Zbontar et al. 2021, eq. 1 and Algorithm 1 (standardised by BatchNorm without affine: biased variance)."""
    n, d = z1.shape

    def standardised(z: torch.Tensor) -> list[list[float]]:
        columns = []
        for k in range(d):
            x = _column(z, k)
            mean = sum(x) / n
            var = sum((v - mean) ** 2 for v in x) / n
            columns.append([(v - mean) / math.sqrt(var + eps) for v in x])
        return columns

    a, b = standardised(z1), standardised(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][r] * b[j][r] for r in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


def naive_vicreg(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[float, float, float]:
    """Bardes et al. 2022, eqs. 1-5 (the variance term halved, as the authors' code)."""
    n, d = z1.shape
    s = sum((float(z1[b, k]) - float(z2[b, k])) ** 2 for b in range(n) for k in range(d)) / (n * d)

    def centred(z: torch.Tensor) -> list[list[float]]:
        return [[v - sum(_column(z, k)) / n for v in _column(z, k)] for k in range(d)]

    v = c = 0.0
    for z in (z1, z2):
        x = centred(z)
        stds = [math.sqrt(sum(t * t for t in x[k]) / (n - 1) + eps) for k in range(d)]
        v += 0.5 * sum(max(0.0, gamma - std) for std in stds) / d
        c += sum((sum(x[i][r] * x[j][r] for r in range(n)) / (n - 1)) ** 2 for i in range(d) for j in range(d) if i != j) / d
    return s, v, c


@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_barlow_twins_is_the_papers_formula(lam: float) -> None:
    z1, z2 = _views()
    assert float(barlow_twins_loss(z1, z2, lam)) == pytest.approx(naive_barlow_twins(z1, z2, lam), rel=1e-12)


def test_vicreg_terms_and_loss_are_the_papers_formula() -> None:
    z1, z2 = _views(d=6)
    z2 = z2 * 0.2  # some dimensions below the target std: the hinge is active on them
    expected = naive_vicreg(z1, z2)
    assert [float(t) for t in vicreg_terms(z1, z2)] == pytest.approx(expected, rel=1e-12)
    s, v, c = expected
    assert float(vicreg_loss(z1, z2, 2.0, 3.0, 0.5)) == pytest.approx(2 * s + 3 * v + 0.5 * c, rel=1e-12)
    assert v > 0


@pytest.mark.parametrize("loss", [barlow_twins_loss, vicreg_loss])
def test_gradients_match_finite_differences(loss) -> None:  # type: ignore[no-untyped-def]
    z1, z2 = (z.clone().requires_grad_() for z in _views(n=5, d=3))
    assert torch.autograd.gradcheck(loss, (z1, z2))


def test_the_objectives_are_the_losses_on_one_process() -> None:
    z1, z2 = (z.float() for z in _views())
    views = {"query": z1, "key": z2}
    out = BarlowTwins(0.1)(views, {})
    assert torch.equal(out.loss, barlow_twins_loss(z1, z2, 0.1)) and "collapse_std" in out.stats
    out = VICReg(1.0, 2.0, 3.0)(views, {})
    s, v, c = vicreg_terms(z1, z2)
    torch.testing.assert_close(out.loss, s + 2 * v + 3 * c)
    assert torch.equal(out.stats["variance"], v.detach())


def test_bad_settings_and_batches_are_named() -> None:
    with pytest.raises(ValueError, match="lambda_offdiag"):
        BarlowTwins(-1.0)
    with pytest.raises(ValueError, match="covariance_weight"):
        VICReg(covariance_weight=-1.0)
    z = torch.randn(1, 4)
    with pytest.raises(ValueError, match="two or more rows"):
        barlow_twins_loss(z, z)


def test_directclr_contrasts_the_first_dimensions_only() -> None:
    """DirectCLR's loss is SimCLR's on ``z[:, :d]``; the other dimensions get no gradient from it."""
    z1, z2 = (z.clone().requires_grad_() for z in _views(n=6, d=8))
    out = SimCLR(0.2, direct_dims=3)({"query": z1, "key": z2}, {})
    sliced = SimCLR(0.2)({"query": z1[:, :3], "key": z2[:, :3]}, {})
    assert torch.equal(out.loss, sliced.loss)
    out.loss.backward()
    assert z1.grad is not None and z1.grad[:, :3].abs().sum() > 0 and torch.equal(z1.grad[:, 3:], torch.zeros(6, 5, dtype=z1.dtype))
    with pytest.raises(ValueError, match="exceeds the embedding's 8"):
        SimCLR(direct_dims=9)({"query": z1, "key": z2}, {})
