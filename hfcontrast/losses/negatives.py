"""Negative handling on one block of logits: hard-negative weights, FNCL detection, MoCHi synthesis.

Each function is pure and row-local (row ``i`` depends only on row ``i`` of its inputs), so the
contrastive loss can apply them chunk by chunk (see :func:`hfcontrast.losses.contrastive_loss`, the engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_logsumexp(x: Tensor, mask: Tensor) -> Tensor:
    """``log sum_{j: mask_ij} exp(x_ij)`` per row; ``-inf`` for rows with no ``True`` entry.

    Safe for autograd: empty rows and masked entries (even ``-inf`` or ``nan`` ones) get zero gradient.
    """
    has_any = mask.any(dim=1, keepdim=True)
    neg_inf = x.new_full((), float("-inf"))
    safe = torch.where(mask, x, neg_inf)
    safe = torch.where(has_any, safe, torch.zeros_like(x))
    out = torch.logsumexp(safe, dim=1)
    return torch.where(has_any[:, 0], out, neg_inf)


def hard_negative_log_weights(logits: Tensor, negative: Tensor, beta: float) -> Tensor:
    """Log importance weights of the negatives (Robinson et al. 2021, "Contrastive Learning with Hard
    Negative Samples", the ``q_beta`` estimator as in the authors' code).

    ``w_ij = N_i exp(beta l_ij) / sum_{k in neg(i)} exp(beta l_ik)`` for negatives ``j`` of row ``i``
    (``l`` the logits, i.e. similarity / tau; ``N_i`` the number of negatives), so the weights average
    to 1 and ``sum_j w_ij e^{l_ij} = N_i E_{q_beta}[e^{l}]``. ``beta = 0`` gives ``w = 1`` (plain
    InfoNCE). Returns ``log w`` ``[N, C]`` (``0`` outside the negatives). The weights keep their
    gradient, as in the reference implementation (the loss is a function of the logits only).
    """
    if beta < 0 or math.isnan(beta):
        raise ValueError(f"hard_negative_beta must be >= 0, got {beta}")
    count = negative.sum(dim=1, keepdim=True).clamp_min(1).to(logits.dtype)
    scaled = beta * logits
    lse = masked_logsumexp(scaled, negative)
    lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    weights = count.log() + scaled - lse[:, None]
    return torch.where(negative, weights, torch.zeros_like(weights))


@torch.no_grad()
def fncl_false_negatives(scores: Tensor, negative: Tensor, top_k: int) -> Tensor:
    """Huynh et al. 2022 ("Boosting Contrastive Self-Supervised Learning with False Negative
    Cancellation"), top-k detection: per row, the ``top_k`` negatives with the highest ``scores``
    (similarity to the anchor's support views) are flagged as false negatives.

    Returns bool ``[N, C]`` (a subset of ``negative``); rows with fewer negatives flag them all.
    """
    if top_k < 1:
        raise ValueError(f"fncl_top_k must be >= 1, got {top_k}")
    k = min(top_k, scores.shape[1])
    masked = scores.masked_fill(~negative, float("-inf"))
    values, index = masked.topk(k, dim=1)
    flags = torch.zeros_like(negative)
    flags.scatter_(1, index, torch.isfinite(values))
    return flags & negative


@dataclass(frozen=True)
class MochiDraws:
    """Pre-drawn randomness of MoCHi for ``N`` query rows (drawn once, so chunked and plain losses,
    and a checkpointed recomputation, mix exactly the same negatives).

    ``n``: the top-``n`` hardest queue negatives of each query are mixed; ``start``: first candidate
    column of the queue. ``pair_u [N, s, 2]`` and ``query_u [N, s']`` are uniform in ``[0, 1)`` and
    pick among the top-``n`` (scaled by the number available); ``alpha [N, s]`` in ``(0, 1)``;
    ``beta [N, s']`` in ``(0, 0.5)`` (the query's share, < 0.5 so the negative dominates).
    """

    n: int
    start: int
    pair_u: Tensor
    alpha: Tensor
    query_u: Tensor
    beta: Tensor

    @property
    def count(self) -> int:
        """Synthetic negatives per query, ``s + s'``."""
        return int(self.alpha.shape[1] + self.beta.shape[1])

    def rows(self, start: int, end: int) -> MochiDraws:
        """The draws of rows ``start .. end-1`` (one chunk)."""
        part = slice(start, end)
        return replace(
            self,
            pair_u=self.pair_u[part],
            alpha=self.alpha[part],
            query_u=self.query_u[part],
            beta=self.beta[part],
        )


def draw_mochi(
    rows: int,
    n: int,
    s: int,
    s_prime: int,
    start: int,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> MochiDraws:
    """Draw :class:`MochiDraws` for ``rows`` queries (``s`` negative-negative and ``s'`` query-negative mixes)."""
    if n < 1 or s < 0 or s_prime < 0 or s + s_prime < 1:
        raise ValueError(f"MoCHi needs mochi_n >= 1 and s + s' >= 1, got n={n}, s={s}, s'={s_prime}")

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, dtype=torch.float64).to(device)

    eps = 1e-6
    alpha = uniform(rows, s).clamp(eps, 1 - eps)
    beta = (0.5 * uniform(rows, s_prime)).clamp(eps, 0.5 - eps)
    return MochiDraws(n, start, uniform(rows, s, 2), alpha, uniform(rows, s_prime), beta)


@torch.no_grad()
def mochi_negatives(
    query: Tensor, negatives: Tensor, negative: Tensor, draws: MochiDraws
) -> tuple[Tensor, Tensor]:
    """MoCHi hard-negative synthesis (Kalantidis et al. 2020, "Hard Negative Mixing for Contrastive
    Learning", sec. 4), in embedding space and without gradient.

    With ``q`` the L2-normalised query, ``Q~`` its ``n`` most similar valid negatives (``negative[i]``
    marks the usable rows of ``negatives``, e.g. the queue minus known false negatives):

    * ``h_k = normalize(alpha_k n_a + (1 - alpha_k) n_b)``, ``n_a, n_b in Q~``, ``alpha_k in (0, 1)`` (``s``);
    * ``h'_k = normalize(beta_k q + (1 - beta_k) n_c)``, ``n_c in Q~``, ``beta_k in (0, 0.5)`` (``s'``).

    Args:
        query: ``[c, D]`` (normalised here), the rows of this chunk.
        negatives: ``[K, D]`` candidate negatives (normalised here).
        negative: bool ``[c, K]`` usable negatives per row.
        draws: :class:`MochiDraws` for these ``c`` rows.

    Returns ``(synthetic [c, s + s', D], valid [c, s + s'])``, detached; rows without any usable
    negative get ``valid = False``.
    """
    q = F.normalize(query.detach(), dim=-1)
    bank = F.normalize(negatives.detach().to(q.dtype), dim=-1)
    k = min(draws.n, bank.shape[0])
    if k == 0:
        empty = q.new_zeros(q.shape[0], draws.count, q.shape[1])
        return empty, torch.zeros(q.shape[0], draws.count, dtype=torch.bool, device=q.device)
    available = negative.sum(dim=1).clamp(max=k)  # [c]
    scores = (q @ bank.T).masked_fill(~negative, float("-inf"))
    top = scores.topk(k, dim=1).indices

    def pick(u: Tensor) -> Tensor:
        """Map uniforms ``[c, *]`` to embeddings ``[c, *, D]`` among each row's available top-k."""
        slot = (u * available.to(u.dtype).view(-1, *([1] * (u.dim() - 1)))).long()
        slot = torch.minimum(slot, (available - 1).clamp_min(0).view(-1, *([1] * (u.dim() - 1))))
        return bank[top.gather(1, slot.reshape(q.shape[0], -1)).reshape(slot.shape)]

    dtype = q.dtype
    mixes = []
    if draws.alpha.shape[1]:
        pairs = pick(draws.pair_u)  # [c, s, 2, D]
        alpha = draws.alpha.to(dtype)[..., None]
        mixes.append(F.normalize(alpha * pairs[:, :, 0] + (1 - alpha) * pairs[:, :, 1], dim=-1))
    if draws.beta.shape[1]:
        others = pick(draws.query_u)  # [c, s', D]
        beta = draws.beta.to(dtype)[..., None]
        mixes.append(F.normalize(beta * q[:, None, :] + (1 - beta) * others, dim=-1))
    synthetic = torch.cat(mixes, dim=1)
    valid = (available > 0)[:, None].expand(-1, synthetic.shape[1])
    return synthetic, valid
