"""clip_loss / siglip_loss against naive float64 loops, and the sharded local-loss identity."""

from __future__ import annotations

import math

import pytest
import torch

from hfcontrast.losses import clip_loss, siglip_loss


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def _ce(row: list[float], target: int) -> float:
    return -row[target] + math.log(sum(math.exp(x) for x in row))


def _naive_clip(img: torch.Tensor, txt: torch.Tensor, scale: float, img_q=None, txt_q=None) -> float:
    il, tl = img.double().tolist(), txt.double().tolist()
    iq = img_q.double().tolist() if img_q is not None else []
    tq = txt_q.double().tolist() if txt_q is not None else []
    n = len(il)
    i2t = [_ce([scale * _cos(il[i], t) for t in tl + tq], i) for i in range(n)]
    t2i = [_ce([scale * _cos(tl[i], x) for x in il + iq], i) for i in range(n)]
    return 0.5 * (sum(i2t) / n + sum(t2i) / n)


def _naive_siglip(img: torch.Tensor, txt: torch.Tensor, scale: float, bias: float) -> float:
    il, tl = img.double().tolist(), txt.double().tolist()
    total = 0.0
    for i, x in enumerate(il):
        for j, y in enumerate(tl):
            z = 1.0 if i == j else -1.0
            total += math.log1p(math.exp(-z * (scale * _cos(x, y) + bias)))  # -log sigmoid
    return total / len(il)


def _close(t: torch.Tensor, ref: float, tol: float = 1e-6) -> None:
    torch.testing.assert_close(t.double(), torch.tensor(ref, dtype=torch.float64), rtol=tol, atol=tol)


def test_clip_single_process_matches_loop() -> None:
    img, txt = _rand(5, 4, seed=1), _rand(5, 4, seed=2)
    out = clip_loss(img, txt, logit_scale=torch.tensor(7.0))
    _close(out.loss, _naive_clip(img, txt, 7.0))
    assert out.logits is not None and out.logits.shape == (5, 5)
    assert out.labels is not None and out.labels.tolist() == list(range(5))
    torch.testing.assert_close(out.stats["logits_per_text"], out.logits.T)


def test_clip_extra_negatives_match_loop() -> None:
    img, txt = _rand(3, 4, seed=3), _rand(3, 4, seed=4)
    iq, tq = _rand(2, 4, seed=5), _rand(4, 4, seed=6)
    out = clip_loss(img, txt, logit_scale=5.0, extra_image_negatives=iq, extra_text_negatives=tq)
    _close(out.loss, _naive_clip(img, txt, 5.0, iq, tq))
    assert out.logits is not None and out.logits.shape == (3, 3 + 4)
    assert out.stats["logits_per_text"].shape == (3, 3 + 2)


def _split_check(loss_fn, world: int = 2, n: int = 4) -> None:
    img = _rand(world * n, 5, seed=7).requires_grad_()
    txt = _rand(world * n, 5, seed=8).requires_grad_()
    global_loss = loss_fn(img, txt, None, None, 0)
    g_img, g_txt = torch.autograd.grad(global_loss, (img, txt))
    locals_ = [
        loss_fn(img[r * n : (r + 1) * n], txt[r * n : (r + 1) * n], img, txt, r * n) for r in range(world)
    ]
    mean_local = torch.stack(locals_).mean()
    torch.testing.assert_close(mean_local, global_loss)
    l_img, l_txt = torch.autograd.grad(mean_local, (img, txt))
    torch.testing.assert_close(l_img, g_img)
    torch.testing.assert_close(l_txt, g_txt)
    # each local loss differs from the global one (the identity is not trivial)
    assert not torch.allclose(locals_[0], global_loss)


def test_clip_local_losses_average_to_global() -> None:
    def fn(i, t, ai, at, off):
        return clip_loss(i, t, ai, at, logit_scale=3.0, offset=off).loss

    _split_check(fn)
    img, txt = _rand(8, 5, seed=7), _rand(8, 5, seed=8)
    _close(fn(img, txt, None, None, 0), _naive_clip(img, txt, 3.0))


@pytest.mark.parametrize("blocks", ["text", "image", "both"])
def test_siglip_local_losses_average_to_global(blocks: str) -> None:
    def fn(i, t, ai, at, off):
        return siglip_loss(
            i,
            t,
            ai if blocks in ("image", "both") else None,
            at if blocks in ("text", "both") else None,
            logit_scale=torch.tensor(10.0),
            logit_bias=-3.0,
            offset=off,
        ).loss

    _split_check(fn)


def test_siglip_matches_loop() -> None:
    img, txt = _rand(6, 3, seed=9), _rand(6, 3, seed=10)
    out = siglip_loss(img, txt, logit_scale=10.0, logit_bias=-2.0)
    _close(out.loss, _naive_siglip(img, txt, 10.0, -2.0))
    # a shard against gathered texts: -(1/n) * sum over its rows of the global matrix
    shard = siglip_loss(img[2:4], txt[2:4], None, txt, logit_scale=10.0, logit_bias=-2.0, offset=2)
    il, tl = img.tolist(), txt.tolist()
    rows = sum(
        math.log1p(math.exp(-(1.0 if i == j else -1.0) * (10.0 * _cos(il[i], tl[j]) - 2.0)))
        for i in (2, 3)
        for j in range(6)
    )
    _close(shard.loss, rows / 2)
    assert shard.logits is not None and shard.logits.shape == (2, 6)
    assert shard.labels is not None and shard.labels.tolist() == [2, 3]


def test_fp16_inputs_give_fp32_logits() -> None:
    img, txt = _rand(3, 4, seed=11, dtype=torch.float16), _rand(3, 4, seed=12, dtype=torch.float16)
    c = clip_loss(img, txt, logit_scale=torch.tensor(10.0, dtype=torch.float16))
    s = siglip_loss(img, txt, logit_scale=10.0, logit_bias=-1.0)
    for out in (c, s):
        assert out.logits is not None and out.logits.dtype == torch.float32
        assert out.loss.dtype == torch.float32
    _close(c.loss, _naive_clip(img, txt, 10.0), tol=1e-3)
    _close(s.loss, _naive_siglip(img, txt, 10.0, -1.0), tol=1e-3)


def test_validation_errors() -> None:
    img, txt = _rand(3, 4), _rand(3, 4)
    for bad in (0.0, -1.0, torch.tensor(0.0)):
        with pytest.raises(ValueError, match="logit_scale must be > 0"):
            clip_loss(img, txt, logit_scale=bad)
        with pytest.raises(ValueError, match="logit_scale must be > 0"):
            siglip_loss(img, txt, logit_scale=bad, logit_bias=0.0)
    with pytest.raises(ValueError, match="same batch size"):
        clip_loss(img, _rand(2, 4), logit_scale=1.0)
    with pytest.raises(ValueError, match="exceeds"):
        clip_loss(img, txt, _rand(6, 4), _rand(6, 4), logit_scale=1.0, offset=4)
    with pytest.raises(ValueError, match="exceeds"):
        siglip_loss(img, txt, None, _rand(6, 4), logit_scale=1.0, logit_bias=0.0, offset=4)
    with pytest.raises(ValueError, match="dim"):
        siglip_loss(img, _rand(3, 5), logit_scale=1.0, logit_bias=0.0)
