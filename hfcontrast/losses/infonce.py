"""InfoNCE / NT-Xent: cross-entropy over similarity logits.

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

    if positive_index is None:
        positive_index = default_arange("positive_index", n, m, "M", query.device)
    else:
        check_index("positive_index", positive_index, n, m, "number of candidates M")
        positive_index = positive_index.to(device=query.device, dtype=torch.long)

    columns = candidates if extra_negatives is None else torch.cat(upcast(candidates, extra_negatives))
    logits = similarity_matrix(query, columns, similarity, scale=1.0 / temperature)
    in_batch = logits  # before the hard-negative weight and the mask (the symmetric loss reuses it)

    if extra_negative_weight != 0.0:
        if extra_negatives is None:
            raise ValueError("extra_negative_weight != 0 needs extra_negatives")
        if hard_negative_index is None:
            hard_negative_index = default_arange("hard_negative_index", n, k, "K", query.device)
        else:
            check_index("hard_negative_index", hard_negative_index, n, k, "number of extra negatives K")
            hard_negative_index = hard_negative_index.to(device=query.device, dtype=torch.long)
        rows = torch.arange(n, device=query.device)
        bias = torch.full((n,), float(extra_negative_weight), dtype=logits.dtype, device=logits.device)
        logits = logits.index_put((rows, m + hard_negative_index), bias, accumulate=True)

    mask = _full_mask(candidate_mask, n, m, k, query.device)
    if mask is not None:
        if mask.gather(1, positive_index[:, None]).any():
            bad = torch.nonzero(mask.gather(1, positive_index[:, None])[:, 0])[:, 0].tolist()
            raise ValueError(f"candidate_mask excludes the positive for query rows {bad[:10]}")
        logits = logits.masked_fill(mask, float("-inf"))

    forward = F.cross_entropy(logits, positive_index, reduction="none")
    if not symmetric:
        return LossOutput(loss=reduce(forward, reduction), logits=logits, labels=positive_index)

    if m != n:
        raise ValueError(f"symmetric=True needs as many candidates as queries, got N={n}, M={m}")
    if not torch.equal(torch.sort(positive_index).values, torch.arange(n, device=positive_index.device)):
        raise ValueError("symmetric=True needs positive_index to be a permutation of arange(N)")
    # back_logits[j, i] = sim(c_{p_j}, q_i) / tau = in_batch[i, p_j]: no second matmul
    back_logits = in_batch[:, positive_index].transpose(0, 1)
    if mask is not None:
        back_logits = back_logits.masked_fill(mask[:, positive_index].transpose(0, 1), float("-inf"))
    backward = F.cross_entropy(back_logits, torch.arange(n, device=query.device), reduction="none")
    loss = reduce(0.5 * (forward + backward), reduction)
    stats = {"loss_forward": forward.detach().mean(), "loss_backward": backward.detach().mean()}
    return LossOutput(loss=loss, logits=logits, labels=positive_index, stats=stats)


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
