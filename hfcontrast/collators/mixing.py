"""MixCo / i-Mix in the collator: a ``mixed`` view of each batch (:mod:`hfcontrast.losses.mixing`).

Each row's mixing is drawn from its own generator, seeded by ``(seed, epoch, row index)`` as its views are, so a
resumed run mixes exactly as the uninterrupted one: ``λ_b ~ Beta(alpha, alpha)`` and, for CutMix, the box; the partner
``π(b)`` is the next row in the order of per-row random keys (a permutation that depends on the rows, not on
their order in the batch).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .images import MultiViewCollator
from .seeding import row_index, row_rng
from .wrapping import WrappingCollator

MIX_STREAM = 1_000  # the per-row generator's extra seed, apart from the views' (0, 1, ...)
KINDS = ("mixup", "cutmix")


class MixingCollator(WrappingCollator):
    """``inner``'s batch plus ``mixed`` (the ``query`` view of each row mixed with its partner's), and ``mix_partner``
    (each row's partner, a position in the batch) and ``mix_lambda`` (the row's own share of the mixed image).

    ``inner`` needs an ``index_column`` (the per-row seeds). ``kind``: ``mixup`` (MixCo) or ``cutmix`` (i-Mix's
    image variant); ``alpha``: the Beta distribution's parameter."""

    def __init__(self, inner: MultiViewCollator, kind: str = "mixup", alpha: float = 1.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if inner.index_column is None:
            raise ValueError("mixing draws per row: give the collator an index_column")
        self.inner, self.kind, self.alpha = inner, kind, alpha

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        ids = [row_index(row, self.inner.index_column, position) for position, row in enumerate(features)]  # type: ignore[arg-type]
        rngs = [row_rng(self.inner.seed, self.inner.epoch, i, MIX_STREAM) for i in ids]
        order = sorted(range(len(ids)), key=lambda b: (rngs[b].random(), ids[b]))
        partner = [0] * len(ids)
        for place, b in enumerate(order):
            partner[b] = order[(place + 1) % len(order)]
        pixels = batch["query"]["pixel_values"]
        lambdas = [rng.betavariate(self.alpha, self.alpha) for rng in rngs]
        mixed = pixels.clone()
        for b, (rng, lam) in enumerate(zip(rngs, lambdas, strict=True)):
            source = pixels[partner[b]]
            if self.kind == "mixup":
                mixed[b] = lam * pixels[b] + (1 - lam) * source
            else:
                lambdas[b] = _paste_box(mixed[b], source, lam, rng)
        batch["mixed"] = {"pixel_values": mixed}
        batch["mix_partner"] = torch.tensor(partner, dtype=torch.long)
        batch["mix_lambda"] = torch.tensor(lambdas, dtype=torch.float32)
        return batch


def _paste_box(target: torch.Tensor, source: torch.Tensor, lam: float, rng: Any) -> float:
    """CutMix (Yun et al. 2019): ``source``'s box of area ``1 - lam`` (centre uniform, clipped at the borders)
    pasted into ``target``; returns the share of ``target`` left, the mixing weight."""
    height, width = target.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    box_h, box_w = int(height * cut), int(width * cut)
    cy, cx = rng.randrange(height), rng.randrange(width)
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
    target[..., top:bottom, left:right] = source[..., top:bottom, left:right]
    return 1.0 - (bottom - top) * (right - left) / (height * width)
