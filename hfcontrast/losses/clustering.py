"""Clustering-family losses (the survey's fifth architecture family) and DINO's self-distillation.

* **Sinkhorn-Knopp codes** (Caron et al. 2020, SwAV; Cuturi 2013): for prototype scores ``S [B, K]``,
  ``Q = diag(u) exp(S / eps) diag(v)`` with every prototype used ``B / K`` times and every sample's code
  summing to 1, found by alternating row and column normalisation. The sums can be all-reduced
  (``all_reduce``), so the codes of several processes are those of the concatenated batch.
* **Swapped prediction** (SwAV): ``L = -1/|pairs| sum_{i in global, v != i} sum_k q_i[k] log softmax(p_v / tau)[k]``.
* **DINO** (Caron et al. 2021): ``L = -1/|pairs| sum_{i in teacher crops, v != i} sum_k
  softmax((t_i - c) / tau_t)[k] log softmax(s_v / tau_s)[k]`` with the centre ``c``.
* **ProtoNCE prototype term** (Li et al. 2021, PCL): ``-1/M sum_m log exp(q . c_s^m / phi_s^m) /
  sum_j exp(q . c_j^m / phi_j^m)`` for each clustering ``m``, on the engine (per-cluster concentration
  folded into the centroids).
* **k-means** for PCL: deterministic under a seed (k-means++ seeding from a ``torch.Generator``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_positive, upcast
from .compiled import compilable
from .engine import contrastive_loss
from .roles import ColumnRoles
from .types import LossOutput

AllReduce = Callable[[Tensor], Tensor]


@torch.no_grad()
@compilable
def sinkhorn_knopp(
    scores: Tensor, *, epsilon: float = 0.05, iterations: int = 3, all_reduce: AllReduce | None = None
) -> Tensor:
    """Codes ``[B, K]`` (rows sum to 1; over the global batch each prototype gets ``B_global / K``) for
    prototype scores ``[B, K]``. ``all_reduce`` sums a tensor over processes (identity by default)."""
    check_positive("epsilon", epsilon)
    reduce = all_reduce or (lambda t: t)
    # No per-process max shift (it would scale each process's block differently); float64 holds exp(S / eps)
    # for cosine scores (|S| <= 1) down to eps ~ 0.0015.
    q = torch.exp(scores.double() / epsilon).T  # [K, B]
    batch = reduce(torch.full((1,), float(q.shape[1]), dtype=q.dtype, device=q.device))
    k = q.shape[0]
    q /= reduce(q.sum().reshape(1))
    for _ in range(iterations):
        q /= reduce(q.sum(dim=1, keepdim=True)) * k  # each prototype: total mass 1 / K
        q /= q.sum(dim=0, keepdim=True) * batch  # each sample: mass 1 / B
    return (q * batch).T.to(scores.dtype)


@compilable
def swapped_prediction_loss(scores: Sequence[Tensor], codes: Sequence[Tensor], temperature: float = 0.1) -> LossOutput:
    """SwAV: each global crop's code (``codes[i]`` for crop ``i``) is predicted from every other crop's
    prototype scores (``scores[v]``, ``[B, K]``); the mean over (code, crop) pairs."""
    check_positive("temperature", temperature)
    total, pairs = scores[0].new_zeros((), dtype=torch.float32), 0
    for i, code in enumerate(codes):
        for v, score in enumerate(scores):
            if v != i:
                (s,) = upcast(score)
                total = total - (code.to(s.dtype) * F.log_softmax(s / temperature, dim=-1)).sum(-1).mean()
                pairs += 1
    return LossOutput(total / max(pairs, 1))


@compilable
def dino_loss(
    student: Sequence[Tensor],
    teacher: Sequence[Tensor],
    center: Tensor,
    *,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
) -> LossOutput:
    """DINO's cross-entropy between the centred, sharpened teacher outputs of the global crops and the
    student outputs of every other crop (``[B, K]`` each); the mean over pairs. The teacher is detached."""
    check_positive("student_temperature", student_temperature)
    check_positive("teacher_temperature", teacher_temperature)
    targets = [F.softmax((upcast(t.detach())[0] - center) / teacher_temperature, dim=-1) for t in teacher]
    total, pairs = student[0].new_zeros((), dtype=torch.float32), 0
    for i, target in enumerate(targets):
        for v, s in enumerate(student):
            if v != i:
                total = total - (target * F.log_softmax(upcast(s)[0] / student_temperature, dim=-1)).sum(-1).mean()
                pairs += 1
    entropy = -(targets[0] * torch.log(targets[0].clamp_min(1e-12))).sum(-1).mean()
    return LossOutput(total / max(pairs, 1), stats={"teacher_entropy": entropy.detach()})


@compilable
def proto_nce_term(
    query: Tensor, centroids: Sequence[Tensor], assignments: Sequence[Tensor], concentrations: Sequence[Tensor]
) -> LossOutput:
    """PCL's prototype term, averaged over the clusterings ``m``: InfoNCE of each (normalised) query against
    the centroids ``[K_m, D]`` with logits ``q . c_j / phi_j``, the positive its cluster ``assignments[m]``."""
    q = F.normalize(upcast(query)[0], dim=-1)
    losses = []
    for c, assigned, phi in zip(centroids, assignments, concentrations):
        scaled = F.normalize(c.to(q.dtype), dim=-1) / phi.to(q.dtype).unsqueeze(1)
        roles = ColumnRoles(positive_index=assigned.long())
        losses.append(contrastive_loss(q, scaled, roles, temperature=1.0, similarity="dot", stats=False).loss)
    return LossOutput(torch.stack(losses).mean())


def kmeans(x: Tensor, k: int, *, iterations: int = 20, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Spherical k-means (cosine) of ``x [N, D]``: ``(centroids [k, D] normalised, assignments [N])``.
    k-means++ seeding from a generator seeded with ``seed``; ties go to the lowest centroid index."""
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, {x.shape[0]}], got {k}")
    x = F.normalize(x.double(), dim=-1)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    chosen = [int(torch.randint(x.shape[0], (1,), generator=generator))]
    distance = torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
    for _ in range(1, k):  # distance to the nearest chosen centre, updated with the newest one: O(N k D)
        distance = torch.minimum(distance, (1 - x @ x[chosen[-1]]).clamp_min(0))
        weights = distance.cpu() + 1e-12
        chosen.append(int(torch.multinomial(weights / weights.sum(), 1, generator=generator)))
    centroids = x[chosen].clone()
    assignments = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(iterations):
        assignments = (x @ centroids.T).argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignments, x)
        empty = sums.norm(dim=1) == 0
        centroids = torch.where(empty.unsqueeze(1), centroids, F.normalize(sums, dim=-1))
    return centroids.float(), assignments


def concentration(x: Tensor, centroids: Tensor, assignments: Tensor, alpha: float = 10.0) -> Tensor:
    """PCL's per-cluster concentration ``phi = sum_z ||v_z - c|| / (Z log(Z + alpha))`` over the ``Z``
    members of each cluster (a singleton gets the clusters' median); clamped to ``[0.1 median, 10 median]``."""
    dtype = torch.promote_types(torch.promote_types(x.dtype, centroids.dtype), torch.float32)
    x, centroids = F.normalize(x.to(dtype), dim=-1), centroids.to(dtype)
    k = centroids.shape[0]
    distance = (x - centroids[assignments]).norm(dim=1)
    sums = torch.zeros(k, device=x.device, dtype=dtype).index_add_(0, assignments, distance)
    counts = torch.bincount(assignments, minlength=k).to(dtype)
    phi = sums / (counts * torch.log(counts + alpha)).clamp_min(1e-12)
    valid = counts > 1
    median = phi[valid].median() if bool(valid.any()) else torch.tensor(1.0, device=x.device)
    phi = torch.where(valid, phi, median)
    return phi.clamp(min=0.1 * float(median), max=10 * float(median))
