"""Named entry points of :func:`contrastive_loss`: each is one option of the same function.

* :func:`supcon_loss` -- Khosla et al. 2020, "Supervised Contrastive Learning" (``L^sup_out``).
* :func:`dcl_loss` -- Yeh et al. 2022, "Decoupled Contrastive Learning".
* :func:`debiased_info_nce` -- Chuang et al. 2020, "Debiased Contrastive Learning" (and, with
  ``hard_negative_beta``, Robinson et al. 2021, "Contrastive Learning with Hard Negative Samples").
* :func:`chunked_info_nce` -- plain InfoNCE computed in row chunks (memory linear in the batch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._checks import default_arange
from .engine import contrastive_loss
from .roles import ColumnRoles
from .types import LossOutput, Reduction, Similarity


def _pairwise(
    query: Tensor,
    candidates: Tensor,
    positive_index: Tensor | None,
    self_index: Tensor | None,
    **options: Any,
) -> LossOutput:
    """:func:`contrastive_loss` with one positive column per row (default ``arange(N)``, needs ``M >= N``)."""
    if positive_index is None:
        positive_index = default_arange("positive_index", query.shape[0], candidates.shape[0], "M", query.device)
    roles = ColumnRoles(positive_index=positive_index, self_index=self_index)
    return contrastive_loss(query, candidates, roles, **options)


def supcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.1,
    queue: Tensor | None = None,
    queue_labels: Tensor | None = None,
    chunk_size: int | None = None,
) -> LossOutput:
    """SupCon over ``V >= 2`` views: ``features [B, V, D]``, ``labels [B]`` (``None``: SimCLR's NT-Xent).

    Every one of the ``B V`` views is an anchor ``i``; ``A(i)`` is every other view (and the queue,
    if given), ``P(i)`` the views of the same label (always including the other views of its own
    sample) and the queued keys of its label:

    ``L = 1/(B V) sum_i -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / tau) / sum_{a in A(i)} exp(z_i.z_a / tau))``

    (Khosla et al. 2020, eq. 2; cosine similarities). Rows are ordered view-major (``v * B + b``).
    """
    if features.dim() != 3 or features.shape[1] < 2:
        raise ValueError(f"features must be [batch, views >= 2, dim], got shape {tuple(features.shape)}")
    b, v, _ = features.shape
    rows = features.transpose(0, 1).reshape(b * v, -1)
    index = torch.arange(b * v, device=features.device)
    own = (index + b) % (b * v)  # the next view of the same sample
    candidates = rows if queue is None else torch.cat([rows, queue.to(rows.dtype)])
    query_labels = candidate_labels = None
    if labels is not None:
        if labels.shape != (b,):
            raise ValueError(f"labels must have shape ({b},), got {tuple(labels.shape)}")
        query_labels = labels.to(features.device).long().repeat(v)
        candidate_labels = query_labels
        if queue is not None:
            if queue_labels is None:
                raise ValueError("a queue with labels needs queue_labels")
            candidate_labels = torch.cat([query_labels, queue_labels.to(features.device).long()])
    roles = ColumnRoles(
        positive_index=own, self_index=index, query_labels=query_labels, candidate_labels=candidate_labels
    )
    return contrastive_loss(rows, candidates, roles, temperature=temperature, chunk_size=chunk_size)


def dcl_loss(
    query: Tensor,
    candidates: Tensor,
    positive_index: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.1,
    similarity: Similarity = "cosine",
    self_index: Tensor | None = None,
    reduction: Reduction = "mean",
) -> LossOutput:
    """DCL: ``L_i = -l_ip + log sum_{n != p, self} e^{l_in}`` with ``l = sim / tau`` (Yeh et al. 2022)."""
    return _pairwise(
        query,
        candidates,
        positive_index,
        self_index,
        temperature=temperature,
        similarity=similarity,
        decoupled=True,
        reduction=reduction,
    )


def debiased_info_nce(
    query: Tensor,
    candidates: Tensor,
    positive_index: Tensor | None = None,
    *,
    tau_plus: float,
    temperature: float | Tensor = 0.5,
    hard_negative_beta: float = 0.0,
    self_index: Tensor | None = None,
    reduction: Reduction = "mean",
) -> LossOutput:
    """Debiased InfoNCE (Chuang et al. 2020), with optional hard-negative weighting (Robinson et al. 2021):

    ``L_i = -log e^{l_ip} / (e^{l_ip} + N g_i)``,
    ``g_i = max((sum_n w_in e^{l_in} / N - tau+ e^{l_ip}) / (1 - tau+), e^{-1/tau})``,

    ``l = cos / tau``, ``N`` the negatives of row ``i``, ``w_in = N softmax_n(beta l_in)`` (``1`` when
    ``beta = 0``). ``tau_plus = beta = 0`` is plain InfoNCE.
    """
    return _pairwise(
        query,
        candidates,
        positive_index,
        self_index,
        temperature=temperature,
        tau_plus=tau_plus,
        hard_negative_beta=hard_negative_beta,
        reduction=reduction,
    )


def chunked_info_nce(
    query: Tensor,
    candidates: Tensor,
    positive_index: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.05,
    similarity: Similarity = "cosine",
    chunk_size: int = 1024,
    self_index: Tensor | None = None,
    reduction: Reduction = "mean",
) -> LossOutput:
    """InfoNCE ``-log softmax(l_i)[p_i]`` computed ``chunk_size`` query rows at a time.

    Equal (value and gradients) to :func:`info_nce` on the same inputs, but only a ``[chunk_size, M]``
    block of logits exists at any time, in the forward and in the backward (each chunk is
    recomputed there), so peak memory grows linearly in ``N`` for a fixed chunk size.
    """
    return _pairwise(
        query,
        candidates,
        positive_index,
        self_index,
        temperature=temperature,
        similarity=similarity,
        chunk_size=chunk_size,
        reduction=reduction,
    )
