"""InfoNCE / NT-Xent as wrappers of the engine, and the similarity matrix every pairwise loss uses.

References: van den Oord et al. 2018 (CPC, InfoNCE); Chen et al. 2020 (SimCLR, NT-Xent);
Gao et al. 2021 (SimCSE, hard-negative weight, sec. 6.3 and their reference code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    check_embeddings,
    check_index,
    check_positive,
    check_reduction,
    default_arange,
    reduce,
    upcast,
)
from .engine import contrastive_loss
from .roles import ColumnRoles
from .types import LossOutput, Reduction, Similarity


def similarity_matrix(
    a: Tensor, b: Tensor, similarity: Similarity = "cosine", *, scale: float | Tensor | None = None
) -> Tensor:
    """Pairwise similarity ``S[i, j] = scale * sim(a_i, b_j)``, shape ``[len(a), len(b)]``.

    ``cosine``: ``<a_i, b_j> / (||a_i|| ||b_j||)``; ``dot``: ``<a_i, b_j>``. Computed in at least
    fp32 (half / bfloat16 inputs are upcast; fp64 stays fp64). ``scale`` (e.g. ``1 / tau``) multiplies
    the ``[len(a), D]`` rows before the product, which spares a pass over (and a copy of) the matrix.
    """
    check_embeddings("a", a)
    check_embeddings("b", b, a.shape[1])
    a, b = upcast(a, b)
    if similarity == "cosine":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
    if scale is not None:
        a = a * scale
    return a @ b.transpose(0, 1)


def info_nce(
    query: Tensor,
    candidates: Tensor,
    positive_index: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.05,
    similarity: Similarity = "cosine",
    extra_negatives: Tensor | None = None,
    extra_negative_weight: float = 0.0,
    hard_negative_index: Tensor | None = None,
    candidate_mask: Tensor | None = None,
    symmetric: bool = False,
    reduction: Reduction = "mean",
) -> LossOutput:
    """InfoNCE: ``loss_i = -log softmax(l_i)[p_i]`` with ``l_ij = sim(q_i, c_j) / tau``.

    A wrapper of the engine (:func:`~hfcontrast.losses.contrastive_loss`) with one positive per row.

    Args:
        query: ``[N, D]``.
        candidates: ``[M, D]``; the positive of query ``i`` is ``candidates[positive_index[i]]``.
        positive_index: ``[N]`` int64 in ``[0, M)``; default ``arange(N)`` (needs ``M >= N``).
            Distributed use: ``query`` is the local shard (``n`` rows), ``candidates`` the gathered
            global set (``world * n`` rows) and ``positive_index = arange(n) + rank * n``.
        temperature: ``tau > 0``, float or scalar tensor (may require grad).
        similarity: ``"cosine"`` or ``"dot"``.
        extra_negatives: ``[K, D]`` negatives appended as columns ``M .. M+K-1`` (e.g. SimCSE hard
            negatives, a MoCo queue); also divided by ``tau``. Logits are ``[N, M + K]``.
        extra_negative_weight: SimCSE's ``hard_negative_weight`` ``w``: added (after the division by
            ``tau``, i.e. in logit space, as in the SimCSE code) to ``l[i, M + hard_negative_index[i]]``.
            ``0`` disables it.
        hard_negative_index: ``[N]`` rows of ``extra_negatives`` paired with each query (the column
            that gets ``w``); default ``arange(N)`` (needs ``K >= N``). Only used when ``w != 0``.
        candidate_mask: bool ``[N, M + K]`` (or ``[N, M]``: extra negatives unmasked); ``True``
            removes that column from row ``i`` (logit set to ``-inf``). Masking a positive raises.
        symmetric: also compute the loss with roles swapped (rows ``candidates[positive_index]``
            against all queries, label ``i``; extra negatives and ``w`` apply to the forward
            direction only, the mask is transposed) and average the two. Requires ``M == N`` and
            ``positive_index`` a permutation. For sharded symmetric losses use ``clip_loss``.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (per query ``[N]``; symmetric: per pair).

    Returns:
        ``LossOutput(loss, logits [N, M+K] forward direction, labels = positive_index)``;
        ``stats`` holds detached ``loss_forward`` / ``loss_backward`` when ``symmetric``.
    """
    check_positive("temperature", temperature)
    check_reduction(reduction)
    check_embeddings("query", query)
    check_embeddings("candidates", candidates, query.shape[1])
    n, m = query.shape[0], candidates.shape[0]
    k = 0
    if extra_negatives is not None:
        check_embeddings("extra_negatives", extra_negatives, query.shape[1])
        k = extra_negatives.shape[0]
    in_range = positive_index is None  # the default arange fits; a given index is checked by the engine
    if positive_index is None:
        positive_index = default_arange("positive_index", n, m, "M", query.device)
    elif isinstance(positive_index, torch.Tensor):  # int32 too; the engine checks the range
        positive_index = positive_index.to(device=query.device, dtype=torch.long)
    weighted_index = None
    if extra_negative_weight != 0.0:
        if extra_negatives is None:
            raise ValueError("extra_negative_weight != 0 needs extra_negatives")
        if hard_negative_index is None:
            hard_negative_index = default_arange("hard_negative_index", n, k, "K", query.device)
        else:
            check_index("hard_negative_index", hard_negative_index, n, k, "number of extra negatives K")
        weighted_index = m + hard_negative_index.to(device=query.device, dtype=torch.long)
    if symmetric:
        if m != n:
            raise ValueError(f"symmetric=True needs as many candidates as queries, got N={n}, M={m}")
        if not torch.equal(torch.sort(positive_index).values, torch.arange(n, device=positive_index.device)):
            raise ValueError("symmetric=True needs positive_index to be a permutation of arange(N)")
    roles = ColumnRoles(
        positive_index=positive_index,
        ignore=_full_mask(candidate_mask, n, m, k, query.device),
        weighted_index=weighted_index,
        weight=float(extra_negative_weight),
        indices_in_range=in_range,  # hard_negative_index was checked above
    )
    columns = candidates if extra_negatives is None else torch.cat(upcast(candidates, extra_negatives))
    forward = contrastive_loss(
        query, columns, roles, temperature=temperature, similarity=similarity, reduction="none", stats=False
    )
    assert forward.logits is not None
    if not symmetric:
        return LossOutput(loss=reduce(forward.loss, reduction), logits=forward.logits, labels=positive_index)
    # back_logits[j, i] = l[i, p_j] of the in-batch block: the weight sits on the extra columns only
    # and the mask comes along transposed, so no second matmul is needed.
    back_logits = forward.logits[:, :m][:, positive_index].transpose(0, 1)
    backward = F.cross_entropy(back_logits, torch.arange(n, device=query.device), reduction="none")
    loss = reduce(0.5 * (forward.loss + backward), reduction)
    stats = {"loss_forward": forward.loss.detach().mean(), "loss_backward": backward.detach().mean()}
    return LossOutput(loss=loss, logits=forward.logits, labels=positive_index, stats=stats)


def nt_xent_roles(rows: int, total: int, offset: int, device: torch.device) -> ColumnRoles:
    """Roles of NT-Xent (Chen et al. 2020) for this process's rows ``[query; key]`` (``2 rows``) against the
    gathered columns ``[query_all; key_all]`` (``2 total``): local query ``i`` is global ``offset + i``,
    its positive is column ``total + offset + i`` and itself (column ``offset + i``) is ignored;
    symmetrically for keys."""
    index = torch.arange(rows, device=device) + offset
    return ColumnRoles(
        positive_index=torch.cat([index + total, index]),
        self_index=torch.cat([index, index + total]),
        indices_in_range=True,
    )


def nt_xent(
    query: Tensor,
    key: Tensor,
    query_all: Tensor | None = None,
    key_all: Tensor | None = None,
    *,
    offset: int = 0,
    temperature: float | Tensor = 0.1,
    similarity: Similarity = "cosine",
) -> LossOutput:
    """NT-Xent (SimCLR, Chen et al. 2020) over the ``2N`` views of ``N`` images:

    ``l_i = -log exp(sim(z_i, z_pos(i))/tau) / sum_{j != i} exp(sim(z_i, z_j)/tau)``, ``L = mean_i l_i``,

    with ``z = [query_all; key_all]`` and ``pos(i)`` the other view of image ``i``. This process's rows
    are ``[query; key]`` (global rows from ``offset``); ``*_all`` default to the local views. The mean
    over every process's rows equals the single-process loss over the concatenated batch.
    """
    query_all = query if query_all is None else query_all
    key_all = key if key_all is None else key_all
    n, total = query.shape[0], query_all.shape[0]
    if key.shape[0] != n or key_all.shape[0] != total:
        raise ValueError(f"query and key views need the same batch size, got {n} and {key.shape[0]}")
    if total < 2:
        raise ValueError("NT-Xent needs at least 2 images in the (global) batch to have negatives")
    roles = nt_xent_roles(n, total, offset, query.device)
    return contrastive_loss(
        torch.cat([query, key]), torch.cat([query_all, key_all]), roles, temperature=temperature, similarity=similarity
    )


def _full_mask(mask: Tensor | None, n: int, m: int, k: int, device: torch.device) -> Tensor | None:
    """Validate ``candidate_mask`` and widen an ``[N, M]`` mask to ``[N, M + K]``."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("candidate_mask must be a bool tensor")
    if mask.dim() != 2 or mask.shape[0] != n or mask.shape[1] not in (m, m + k):
        raise ValueError(
            f"candidate_mask must have shape ({n}, {m + k}) or ({n}, {m}), got {tuple(mask.shape)}"
        )
    mask = mask.to(device)
    if mask.shape[1] == m and k:
        mask = torch.cat([mask, mask.new_zeros(n, k)], dim=1)
    return mask
