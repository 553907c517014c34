"""ema_update_ against the EMA formula; cosine_momentum against the BYOL formula; momentum copy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hfcontrast.memory import cosine_momentum, ema_update_, make_momentum_copy


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = make_momentum_copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online.train()
    online(torch.randn(6, 3))  # moves BatchNorm running stats and num_batches_tracked
    return target, online


@pytest.mark.parametrize("m", [0.0, 0.3, 0.99, 1.0])
def test_ema_update_matches_formula(m: float) -> None:
    target, online = _pair()
    before = {k: v.clone() for k, v in target.named_parameters()}
    online_params = dict(online.named_parameters())
    ema_update_(target, online, m)
    for name, p in target.named_parameters():
        expected = m * before[name] + (1 - m) * online_params[name].detach()
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-6)
        assert not p.requires_grad
        if m == 1.0:
            assert torch.equal(p, before[name])
        if m == 0.0:
            assert torch.equal(p, online_params[name])
    online_buffers = dict(online.named_buffers())
    for name, b in target.named_buffers():
        assert torch.equal(b, online_buffers[name]), name
    assert int(target[1].num_batches_tracked) == 1  # type: ignore[index]
    assert all(p.requires_grad for p in online.parameters())


def test_ema_update_mismatched_modules_raise() -> None:
    with pytest.raises(ValueError, match=r"'weight' has shape \[4, 3\] in target but \[5, 3\]"):
        ema_update_(nn.Linear(3, 4), nn.Linear(3, 5), 0.9)
    with pytest.raises(ValueError, match="different parameters"):
        ema_update_(nn.Linear(3, 4), nn.Sequential(nn.Linear(3, 4)), 0.9)
    with pytest.raises(ValueError, match="different buffers"):
        ema_update_(nn.BatchNorm1d(4), nn.BatchNorm1d(4, track_running_stats=False), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)


def test_make_momentum_copy_is_frozen_and_independent() -> None:
    online = nn.Linear(2, 2)
    online(torch.randn(1, 2)).sum().backward()
    target = make_momentum_copy(online)
    assert isinstance(target, nn.Linear)
    assert all(not p.requires_grad and p.grad is None for p in target.parameters())
    assert all(p.requires_grad and p.grad is not None for p in online.parameters())
    assert target.weight.data_ptr() != online.weight.data_ptr()
    assert torch.equal(target.weight, online.weight)


def test_cosine_momentum_values() -> None:
    base, final, total = 0.99, 1.0, 100
    assert cosine_momentum(0, total, base, final) == pytest.approx(base)
    assert cosine_momentum(total // 2, total, base, final) == pytest.approx((base + final) / 2)
    assert cosine_momentum(total, total, base, final) == pytest.approx(final)
    s = 37
    expected = final - (final - base) * (math.cos(math.pi * s / total) + 1) / 2
    assert cosine_momentum(s, total, base, final) == pytest.approx(expected)
    assert cosine_momentum(-5, total, base, final) == pytest.approx(base)
    assert cosine_momentum(10 * total, total, base, final) == pytest.approx(final)
    assert cosine_momentum(5, 0, 0.9) == 0.9 and cosine_momentum(5, -1, 0.9) == 0.9
    assert cosine_momentum(3, 10, 0.996) == pytest.approx(1 - 0.004 * (math.cos(math.pi * 0.3) + 1) / 2)
    for bad in [(1.1, 1.0), (0.9, 0.8), (-0.1, 0.5), (0.5, 1.2)]:
        with pytest.raises(ValueError, match="base"):
            cosine_momentum(1, 10, *bad)


@settings(max_examples=30, deadline=None)
@given(
    total=st.integers(1, 500),
    base=st.floats(0.0, 1.0),
    frac=st.floats(0.0, 1.0),
)
def test_cosine_momentum_monotone_and_bounded(total: int, base: float, frac: float) -> None:
    final = base + (1.0 - base) * frac
    values = [cosine_momentum(s, total, base, final) for s in range(-2, total + 3)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert all(base <= v <= final for v in values)
