"""Soft positives of mixed images: MixCo (Kim et al. 2020, *MixCo: Mix-up Contrastive Learning for Visual
Representation*) and i-Mix (Lee et al. 2021, *i-Mix: A Domain-Agnostic Strategy for Contrastive Representation
Learning*).

A mixed image ``m_b = λ_b x_b + (1 - λ_b) x_{π(b)}`` (mixup; CutMix pastes a box of ``x_{π(b)}`` covering
``1 - λ_b`` of the image) is a positive of both sources' keys, in proportion:

``L = 1/N sum_b -[λ_b log p_b(b) + (1 - λ_b) log p_b(π(b))]``,   ``p_b(j) = softmax_j(cos(m_b, k_j) / τ)``

over the candidate keys ``k`` (the batch's, gathered, and a queue's for i-Mix on MoCo).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, upcast


def mixed_positive_loss(
    mixed: Tensor, keys: Tensor, first: Tensor, second: Tensor, lam: Tensor, temperature: float = 0.1
) -> Tensor:
    """The formula of the module: ``mixed [N, D]`` against ``keys [M, D]``; ``first`` / ``second`` ``[N]`` the
    columns of each mixed row's two sources (``b`` and ``π(b)``), ``lam [N]`` the first's share."""
    check_embeddings("mixed", mixed)
    check_embeddings("keys", keys, mixed.shape[1])
    n = mixed.shape[0]
    for name, value in (("first", first), ("second", second), ("lam", lam)):
        if value.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(value.shape)}")
    m, k = upcast(mixed, keys)
    log_p = F.log_softmax(F.normalize(m, dim=-1) @ F.normalize(k, dim=-1).T / temperature, dim=1)
    lam = lam.to(log_p)
    picked = lam * log_p.gather(1, first[:, None]).squeeze(1) + (1 - lam) * log_p.gather(1, second[:, None]).squeeze(1)
    return -picked.mean()
