"""The contrastive engine: rows against columns with roles, one loss with composable negative handling.

Every contrastive loss of hfcontrast is this function with some options (``info_nce``, ``nt_xent``,
``supcon_loss``, ``dcl_loss``, ``debiased_info_nce``, ``chunked_info_nce`` are thin wrappers) and
every InfoNCE-family objective calls it. The plain case (one positive per row, no option but ignored
columns and a logit bonus) runs one fused cross-entropy; the options add passes only when used.

For query row ``i`` with logits ``l_ij = sim(q_i, c_j) / tau``, positives ``P(i)``, negatives
``N(i)`` (every column that is neither positive nor ignored, see :class:`ColumnRoles`) and optional
log-weights ``w_ij`` of the negatives:

* **InfoNCE / SupCon** (van den Oord et al. 2018; Khosla et al. 2020, ``L^sup_out``, eq. 2):
  ``L_i = -1/|P(i)| sum_{p in P(i)} [l_ip - log(sum_{a in P(i)} e^{l_ia} + sum_{n in N(i)} e^{l_in + w_in})]``.
  With one positive this is the usual cross-entropy.
* **DCL** (Yeh et al. 2022, "Decoupled Contrastive Learning"): the positives leave the
  denominator, ``L_i = -1/|P(i)| sum_p [l_ip - log sum_{n in N(i)} e^{l_in + w_in}]``.
* **Debiased** (Chuang et al. 2020, "Debiased Contrastive Learning", the debiased objective) with class prior
  ``tau+`` and one positive ``p``: ``L_i = -log e^{l_ip} / (e^{l_ip} + |N(i)| g_i)`` with
  ``g_i = max((mean_{n}(w_in e^{l_in}) - tau+ e^{l_ip}) / (1 - tau+), e^{-1/tau})``. With the
  hard-negative weights of :func:`hard_negative_log_weights` this is Robinson et al. 2021 (HCL).
* **Hard negatives** (Robinson et al. 2021): ``w_ij = log(|N(i)| softmax_N(beta l_i)_j)``.
* **FNCL** (Huynh et al. 2022): the ``k`` negatives most similar to the anchor's support views are
  eliminated (dropped from ``N(i)``) or attracted (moved to ``P(i)``).
* **MoCHi** (Kalantidis et al. 2020): ``s + s'`` synthetic negatives per query mixed from its
  hardest queue negatives (and the query), appended as extra negative columns without gradient.

Everything is row-local, so with ``chunk_size`` the rows are processed ``chunk_size`` at a time and
each chunk is checkpointed: the forward keeps only a chunk's ``[chunk, M]`` logits alive and the
backward recomputes them chunk by chunk, so peak memory is ``O((N + M) D + chunk * M)``, linear in
the batch. The value and gradients equal the unchunked loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ._checks import check_embeddings, check_positive, check_reduction, checking_values, reduce, upcast
from .compiled import compilable
from .negatives import (
    MochiDraws,
    fncl_false_negatives,
    hard_negative_log_weights,
    masked_logsumexp,
    mochi_negatives,
)
from .roles import ColumnRoles
from .types import LossOutput, Reduction, Similarity

FNCLMode = Literal["none", "eliminate", "attract"]


def contrastive_from_logits(
    logits: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    log_weights: Tensor | None = None,
    decoupled: bool = False,
    tau_plus: float = 0.0,
    min_logit: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-row loss of the module formula on a logits block ``[N, C]`` (bool masks ``positive``/``negative``).

    Columns in neither mask are ignored. ``min_logit`` is the lower bound ``log g >= min_logit`` of the
    debiased estimator (``-1/tau`` for cosine similarity). Returns ``(loss [N], included [N])``: rows that
    carry no signal (DCL or debiased rows without any negative) are excluded and their loss is ``0``.
    Every row needs at least one positive.
    """
    n_pos = positive.sum(dim=1)
    if checking_values():
        if bool((n_pos == 0).any()):
            bad = torch.nonzero(n_pos == 0)[:, 0].tolist()
            raise ValueError(f"rows {bad[:10]} have no positive column")
        if bool((positive & negative).any()):
            raise ValueError("a column cannot be both positive and negative")
    n_neg = negative.sum(dim=1)
    has_neg = n_neg > 0
    shifted = logits if log_weights is None else logits + log_weights
    log_neg = masked_logsumexp(shifted, negative)
    zero = torch.zeros_like(logits)
    if tau_plus > 0:
        if decoupled:
            raise ValueError(
                "the debiased loss keeps the positive in its denominator: it cannot be decoupled (DCL)"
            )
        if checking_values() and bool((n_pos > 1).any()):
            raise ValueError("the debiased loss has one positive per row (not SupCon / FNCL attract)")
        if min_logit is None:
            raise ValueError("the debiased loss needs min_logit (-1/tau for cosine similarity)")
        l_pos = torch.where(positive, logits, zero).sum(dim=1)
        count = n_neg.clamp_min(1).to(logits.dtype)
        log_mean = torch.where(has_neg, log_neg - count.log(), torch.zeros_like(l_pos))
        diff = math.log(tau_plus) + l_pos - log_mean  # log(tau+ e^{l_p}) - log(mean_n w e^{l_n})
        safe = diff.clamp(max=-1e-20)
        log_gap = torch.where(
            diff < 0, log_mean + torch.log(-torch.expm1(safe)), torch.full_like(l_pos, -math.inf)
        )
        log_g = torch.clamp(log_gap - math.log1p(-tau_plus), min=min_logit)
        log_ng = torch.where(has_neg, count.log() + log_g, torch.full_like(l_pos, -math.inf))
        loss = torch.logaddexp(l_pos, log_ng) - l_pos
        return torch.where(has_neg, loss, torch.zeros_like(loss)), has_neg
    if decoupled:
        denominator = log_neg
        included = has_neg
    else:
        denominator = torch.logaddexp(masked_logsumexp(logits, positive), log_neg)
        included = torch.ones_like(has_neg)
    per_positive = torch.where(positive, denominator[:, None] - logits, zero)
    loss = per_positive.sum(dim=1) / n_pos.to(logits.dtype)
    return torch.where(included, loss, torch.zeros_like(loss)), included


@dataclass(frozen=True)
class _Config:
    roles: ColumnRoles
    cosine: bool
    fncl: FNCLMode
    fncl_top_k: int
    beta: float
    tau_plus: float
    decoupled: bool
    mochi: MochiDraws | None
    stats: bool = True


def _chunk_loss(cfg: _Config, start: int, query: Tensor, cand: Tensor, inv_tau: Tensor | float) -> tuple[Any, ...]:
    """Rows ``start .. start + len(query) - 1``: per-row loss, included flags (``None``: every row), detached
    stats (``None`` when not wanted), logits."""
    end = start + query.shape[0]
    m, device = cand.shape[0], query.device
    logits = (query * inv_tau) @ cand.T  # scale the rows, not the [n, M] matrix
    roles = cfg.roles
    if roles.weight and roles.weighted_index is not None:
        rows = torch.arange(end - start, device=device)
        bias = torch.full((end - start,), float(roles.weight), dtype=logits.dtype, device=device)
        logits = logits.index_put((rows, roles.weighted_index[start:end].to(device, torch.long)), bias, accumulate=True)
    whole = start == 0 and end == roles.rows
    target = (roles.positive_index if whole else roles.positive_index[start:end]).to(device, torch.long)
    if _is_plain(cfg):  # plain InfoNCE: one fused cross-entropy (no extra [chunk, M] passes)
        ignore = roles.masks(start, end, m, device)[1] if roles.masks_columns else None
        if ignore is not None:
            logits = logits.masked_fill(ignore, float("-inf"))
        loss = F.cross_entropy(logits, target, reduction="none")
        if not cfg.stats:
            return loss, None, None, logits  # every row counts
        with torch.no_grad():
            negatives = torch.full_like(target, m - 1) if ignore is None else (m - 1) - ignore.sum(1)
            hit = logits.argmax(dim=1) == target
            ones = torch.ones_like(target)
            stats = torch.stack([hit, negatives, ones, torch.zeros_like(target)], dim=1).to(logits.dtype)
        return loss, None, stats, logits
    positive, ignore = roles.masks(start, end, m, device)
    negative = ~positive & ~ignore
    flagged = torch.zeros_like(negative)
    if cfg.fncl != "none":
        with torch.no_grad():
            q, c = (query, cand) if cfg.cosine else (F.normalize(query, dim=-1), F.normalize(cand, dim=-1))
            own = c[target]
            scores = 0.5 * (q @ c.T + own @ c.T)  # mean similarity to the support views {anchor, positive}
            flagged = fncl_false_negatives(scores, negative, cfg.fncl_top_k)
        negative = negative & ~flagged
        if cfg.fncl == "attract":
            positive = positive | flagged
    if cfg.mochi is not None and cfg.mochi.start < m:
        draws = cfg.mochi.rows(start, end)
        synthetic, valid = mochi_negatives(query, cand[draws.start :], negative[:, draws.start :], draws)
        extra = torch.einsum("cd,csd->cs", query, synthetic.to(query.dtype)) * inv_tau
        logits = torch.cat([logits, extra], dim=1)
        negative = torch.cat([negative, valid], dim=1)
        positive = torch.cat([positive, torch.zeros_like(valid)], dim=1)
    log_weights = hard_negative_log_weights(logits, negative, cfg.beta) if cfg.beta else None
    min_logit = -float(inv_tau.detach() if isinstance(inv_tau, Tensor) else inv_tau) if cfg.tau_plus > 0 else None
    loss, included = contrastive_from_logits(
        logits,
        positive,
        negative,
        log_weights=log_weights,
        decoupled=cfg.decoupled,
        tau_plus=cfg.tau_plus,
        min_logit=min_logit,
    )
    if not cfg.stats:
        return loss, included, None, logits
    with torch.no_grad():
        guess = logits.masked_fill(~(positive | negative), float("-inf")).argmax(dim=1, keepdim=True)
        hit = positive.gather(1, guess)[:, 0]
        stats = torch.stack([hit, negative.sum(1), positive.sum(1), flagged.sum(1)], dim=1).to(logits.dtype)
    return loss, included, stats, logits


def _chunk_without_logits(cfg: _Config, start: int, query: Tensor, cand: Tensor, inv_tau: Tensor | float) -> tuple[Any, ...]:
    return _chunk_loss(cfg, start, query, cand, inv_tau)[:3]


def _is_plain(cfg: _Config) -> bool:
    """No option beyond ignored columns and the logit bonus: InfoNCE with one positive per row."""
    return (
        cfg.fncl == "none"
        and cfg.mochi is None
        and not cfg.beta
        and not cfg.tau_plus
        and not cfg.decoupled
        and not cfg.roles.has_labels
    )


@compilable
def contrastive_loss(
    query: Tensor,
    candidates: Tensor,
    roles: ColumnRoles,
    *,
    temperature: float | Tensor,
    similarity: Similarity = "cosine",
    fncl: FNCLMode = "none",
    fncl_top_k: int = 1,
    hard_negative_beta: float = 0.0,
    tau_plus: float = 0.0,
    decoupled: bool = False,
    mochi: MochiDraws | None = None,
    chunk_size: int | None = None,
    reduction: Reduction = "mean",
    stats: bool = True,
) -> LossOutput:
    """The module formula for queries ``[N, D]`` against candidates ``[M, D]`` with ``roles``.

    Args:
        temperature: ``tau > 0`` (float or scalar tensor, may require grad; CLIP: ``1 / logit_scale``).
        similarity: ``"cosine"`` (embeddings L2-normalised here) or ``"dot"``. The debiased loss
            (its bound ``e^{-1/tau}``) and MoCHi (mixing on the sphere) need ``"cosine"``.
        fncl / fncl_top_k: FNCL false-negative ``"eliminate"`` / ``"attract"`` of the top-k negatives
            scored by the mean similarity to the anchor and to its positive (the support views).
        hard_negative_beta: Robinson et al.'s ``beta`` (``0``: off).
        tau_plus: Chuang et al.'s class prior ``tau+`` in ``[0, 1)`` (``0``: off).
        decoupled: DCL, positives removed from the denominator.
        mochi: pre-drawn MoCHi mixing (:func:`draw_mochi`); columns ``mochi.start ..`` are the queue.
        chunk_size: compute ``chunk_size`` rows at a time with per-chunk recomputation in backward
            (``None``: all rows at once). The result does not depend on it.
        reduction: ``"mean"`` over included rows | ``"sum"`` | ``"none"`` (``[N]``, 0 for excluded rows).
        stats: compute the statistics below (``top1`` is an argmax, one more pass over the logits; off
            when nobody reads them: ``LossOutput.stats`` is then empty).

    Returns ``LossOutput(loss, logits, labels=roles.positive_index)``: ``logits`` ``[N, M]`` (after the
    logit bonus, ignored columns at ``-inf``) when the rows were computed in one piece, else ``None``;
    detached ``stats``: ``top1`` (argmax is a positive), ``negatives`` / ``positives`` (mean per row),
    ``false_negatives`` (FNCL flags per row) and ``rows`` (rows in the mean).
    """
    check_positive("temperature", temperature)
    check_reduction(reduction)
    check_embeddings("query", query)
    check_embeddings("candidates", candidates, query.shape[1])
    roles.validate(candidates.shape[0])
    if roles.rows != query.shape[0]:
        raise ValueError(f"roles describe {roles.rows} rows (positive_index), query has {query.shape[0]}")
    if similarity not in ("cosine", "dot"):
        raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
    if fncl not in ("none", "eliminate", "attract"):
        raise ValueError(f"fncl must be 'none', 'eliminate' or 'attract', got {fncl!r}")
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus must lie in [0, 1), got {tau_plus}")
    if tau_plus > 0 and similarity != "cosine":
        raise ValueError(
            "the debiased loss needs cosine similarity (its bound e^{-1/tau} assumes |sim| <= 1)"
        )
    if tau_plus > 0 and (roles.has_labels or fncl == "attract"):
        raise ValueError(
            "the debiased loss has one positive per row: not with labels (SupCon) or FNCL attract"
        )
    if mochi is not None and similarity != "cosine":
        raise ValueError("MoCHi mixes normalised embeddings: it needs cosine similarity")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    q, c = upcast(query, candidates)
    if similarity == "cosine":
        q, c = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
    inv_tau: Tensor | float
    if isinstance(temperature, Tensor):
        inv_tau = 1.0 / temperature.to(device=q.device, dtype=torch.promote_types(q.dtype, temperature.dtype))
    else:
        inv_tau = 1.0 / float(temperature)
    cfg = _Config(
        roles, similarity == "cosine", fncl, fncl_top_k, hard_negative_beta, tau_plus, decoupled, mochi, stats
    )
    n = q.shape[0]
    step = n if chunk_size is None else chunk_size
    if n == 0:
        raise ValueError("the loss needs at least one query row")
    if step >= n:  # one piece; no slice of q (it would add a SliceBackward copy)
        parts = [_chunk_loss(cfg, 0, q, c, inv_tau)]
    else:  # chunks keep no logits alive: the backward recomputes each from its rows
        parts = []
        for start in range(0, n, max(step, 1)):
            fn = partial(_chunk_without_logits, cfg, start)
            rows = q[start : start + step]
            parts.append(checkpoint(fn, rows, c, inv_tau, use_reentrant=False) if torch.is_grad_enabled() else fn(rows, c, inv_tau))
    logits = parts[0][3] if len(parts) == 1 else None
    loss_rows = _joined(parts, 0)
    used: Tensor | int = n  # plain InfoNCE (no included flags): every row is in the mean
    if parts[0][1] is not None:
        used = _joined(parts, 1).sum()
    if reduction == "mean" and isinstance(used, Tensor):
        loss = loss_rows.sum() / used.clamp_min(1).to(loss_rows.dtype)
    else:
        loss = reduce(loss_rows, reduction)
    out_stats: dict[str, Tensor] = {}
    if stats:
        means = _joined(parts, 2).mean(dim=0)
        out_stats = {"top1": means[0], "negatives": means[1], "positives": means[2]}
        out_stats["rows"] = used.detach().float() if isinstance(used, Tensor) else means.new_full((), float(used))
        if fncl != "none":
            out_stats["false_negatives"] = means[3]
    return LossOutput(loss=loss, logits=logits, labels=roles.positive_index, stats=out_stats)


def _joined(parts: list[tuple[Any, ...]], field: int) -> Tensor:
    """Field ``field`` of every chunk's result, concatenated along the rows (no copy for one chunk)."""
    return parts[0][field] if len(parts) == 1 else torch.cat([p[field] for p in parts])
