"""Supervised contrastive losses for long-tailed classes: KCL and BCL, over ``V >= 2`` views of ``B`` labelled rows.

SupCon (:func:`~hfcontrast.losses.supcon_loss`) lets a head class dominate: an anchor of a class with ``n`` rows in
the batch has ``n`` positives, and every other class's rows crowd its denominator in proportion to their counts.

* **KCL** (Kang et al. 2021, *Exploring Balanced Feature Spaces for Representation Learning*): each anchor keeps its
  own other views and ``k`` rows of its class drawn at random, so every class pulls with the same force (drawn among
  the class-mates' rows of every view: two views of one sample may both be drawn).
* **BCL** (Zhu et al. 2022, *Balanced Contrastive Learning for Long-Tailed Visual Recognition*): the denominator
  averages each class's terms (class averaging), and a prototype per class joins the batch (class complement), so
  that every class appears in every denominator.

Rows are ordered view-major (row ``v B + b`` is view ``v`` of sample ``b``), as in ``supcon_loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import upcast


def _rows(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int, int]:
    if features.dim() != 3 or features.shape[1] < 2:
        raise ValueError(f"features must be [batch, views >= 2, dim], got shape {tuple(features.shape)}")
    b, v, _ = features.shape
    if labels.shape != (b,):
        raise ValueError(f"labels must have shape ({b},), got {tuple(labels.shape)}")
    (rows,) = upcast(features.transpose(0, 1).reshape(b * v, -1))
    return F.normalize(rows, dim=-1), labels.to(features.device).long().repeat(v), b, v


def kcl_positives(labels: Tensor, views: int, k: int, noise: Tensor) -> Tensor:
    """KCL's positives ``[B V, B V]``: row ``i``'s other views, and the ``k`` rows of its class (other samples, any
    view) with the largest ``noise[i]`` (uniform draws: a random ``k``-subset; all of them when fewer)."""
    n = labels.shape[0] * views
    sample = torch.arange(n, device=labels.device) % labels.shape[0]
    rows = labels.repeat(views)
    own = sample[:, None] == sample[None, :]
    same_class = (rows[:, None] == rows[None, :]) & ~own
    scores = noise.masked_fill(~same_class, -1.0)  # noise in [0, 1): a class-mate always outranks the rest
    picked = scores.topk(min(k, n), dim=1).indices
    drawn = torch.zeros_like(same_class).scatter_(1, picked, True) & same_class
    return (own & ~torch.eye(n, dtype=torch.bool, device=labels.device)) | drawn


def kcl_loss(features: Tensor, labels: Tensor, k: int, noise: Tensor, temperature: float = 0.1) -> Tensor:
    """KCL (Kang et al. 2021, eq. 3): with ``P_k(i)`` the row's other views and ``k`` drawn rows of its class
    (:func:`kcl_positives`) and ``A(i)`` every other row,

    ``L = 1/(B V) sum_i -1/|P_k(i)| sum_{p in P_k(i)} log(exp(z_i.z_p / tau) / sum_{a in A(i)} exp(z_i.z_a / tau))``

    (cosine similarities). ``noise``: ``[B V, B V]`` uniform draws in ``[0, 1)``, the caller's (seeded) randomness.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    z, _, b, v = _rows(features, labels)
    if noise.shape != (b * v, b * v):
        raise ValueError(f"noise must have shape ({b * v}, {b * v}), got {tuple(noise.shape)}")
    positives = kcl_positives(labels.to(z.device).long(), v, k, noise.to(z.device))
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    per_row = log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1)
    return -per_row.mean()


def bcl_loss(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    prototypes: Tensor | None = None,
    prototype_mask: Tensor | None = None,
    temperature: float = 0.1,
) -> Tensor:
    """BCL (Zhu et al. 2022, eq. 6, class-averaged and class-complemented): the candidates ``K`` are the batch's rows
    and the class prototypes (``prototypes [C, D]``, those with ``prototype_mask``; ``None``: none), ``K_j`` those of
    class ``j`` besides the anchor ``i``, ``P(i) = K_{y_i}``, and

    ``L = 1/(B V) sum_i -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / tau) / sum_{j: K_j != {}} 1/|K_j| sum_{k in K_j} exp(z_i.z_k / tau))``

    (cosine similarities; the anchors are the batch's rows). Rows without a positive are left out of the mean.
    """
    z, rows, _, _ = _rows(features, labels)
    candidates, candidate_labels = z, rows
    if prototypes is not None:
        if prototypes.shape != (num_classes, z.shape[1]):
            raise ValueError(f"prototypes must have shape ({num_classes}, {z.shape[1]}), got {tuple(prototypes.shape)}")
        keep = torch.ones(num_classes, dtype=torch.bool, device=z.device) if prototype_mask is None else prototype_mask.to(z.device)
        classes = torch.arange(num_classes, device=z.device)
        # a masked prototype gets the label -1: in no class, and its logit is -inf below
        candidates = torch.cat([z, F.normalize(prototypes.to(z.dtype), dim=-1)])
        candidate_labels = torch.cat([rows, torch.where(keep, classes, -1)])
    n = rows.shape[0]
    logits = z @ candidates.T / temperature
    own = torch.zeros_like(logits, dtype=torch.bool)
    own[:, :n] = torch.eye(n, dtype=torch.bool, device=z.device)
    excluded = own | (candidate_labels < 0)[None, :]
    logits = logits.masked_fill(excluded, float("-inf"))
    onehot = F.one_hot(candidate_labels.clamp(min=0), num_classes).to(z.dtype) * (candidate_labels >= 0)[:, None]
    counts = onehot.sum(0)[None, :] - F.one_hot(rows, num_classes).to(z.dtype)  # |K_j| for each anchor
    size = counts.gather(1, candidate_labels.clamp(min=0)[None, :].expand(n, -1))  # |K_{y_k}| per (i, k)
    log_denominator = (logits - size.clamp(min=1).log()).logsumexp(dim=1)
    positives = (rows[:, None] == candidate_labels[None, :]) & ~excluded
    count = positives.sum(1)
    per_row = logits.masked_fill(~positives, 0.0).sum(1) / count.clamp(min=1) - log_denominator
    kept = count > 0
    return -(per_row * kept).sum() / kept.sum().clamp(min=1)
