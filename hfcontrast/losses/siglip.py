"""SigLIP pairwise sigmoid loss, in the sharded "local rows" form.

Reference: Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training" (SigLIP), eq. in sec. 3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, check_positive
from .compiled import compilable
from .infonce import similarity_matrix
from .types import LossOutput


def _block_loss(logits: Tensor, offset: int) -> Tensor:
    """``-sum_ij log sigmoid(z_ij * logits_ij)`` with ``z_ij = +1`` iff ``j == i + offset``.

    Uses ``-log sigmoid(-x) = softplus(x)`` and ``-log sigmoid(x) = softplus(x) - x``, so no sign
    matrix is materialised: ``sum_ij softplus(logits_ij) - sum_i logits_{i, i+offset}``.
    """
    rows = torch.arange(logits.shape[0], device=logits.device)
    return F.softplus(logits).sum() - logits[rows, rows + offset].sum()


@compilable
def siglip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    all_image_emb: Tensor | None = None,
    all_text_emb: Tensor | None = None,
    *,
    logit_scale: float | Tensor,
    logit_bias: float | Tensor,
    offset: int = 0,
) -> LossOutput:
    """SigLIP loss of the local rows: ``-(1/n) sum_i sum_j log sigmoid(z_ij (t <x_i, y_j> + b))``.

    ``x_i`` are the ``n`` local image rows (L2-normalised here), ``y_j`` all ``N`` gathered text
    rows (this shard at ``offset .. offset+n-1``), ``t = logit_scale`` (already exponentiated,
    ``> 0``), ``b = logit_bias``, ``z_ij = +1`` if ``j == i + offset`` else ``-1``. The sum is
    normalised by the local batch size ``n`` as in the paper (per-image normalisation).

    Which block is computed: ``all_text_emb`` given -> local images vs all texts; ``all_image_emb``
    given -> local texts vs all images; both -> the mean of the two; neither -> the single-process
    loss (local images vs local texts, ``offset`` must be 0). Each block form covers every entry of
    the global ``N x N`` matrix exactly once across ``W`` equal shards, so the MEAN over ranks of
    this loss equals the single-process loss on the concatenated batch (``N = W * n``).

    Returns ``LossOutput(loss, logits [n, N] of the first computed block, labels = arange(n) + offset)``
    (``labels`` are the positive columns; ``z`` follows from them).
    """
    check_positive("logit_scale", logit_scale)
    check_embeddings("image_emb", image_emb)
    check_embeddings("text_emb", text_emb, image_emb.shape[1])
    n = image_emb.shape[0]
    if text_emb.shape[0] != n:
        raise ValueError(f"image_emb and text_emb need the same batch size, got {n} and {text_emb.shape[0]}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if all_image_emb is None and all_text_emb is None:
        all_text_emb = text_emb

    blocks: list[tuple[Tensor, Tensor | None, str]] = [
        (image_emb, all_text_emb, "all_text_emb"),
        (text_emb, all_image_emb, "all_image_emb"),
    ]
    losses: list[Tensor] = []
    first_logits: Tensor | None = None
    for rows, columns, name in blocks:
        if columns is None:
            continue
        check_embeddings(name, columns, image_emb.shape[1])
        if offset + n > columns.shape[0]:
            raise ValueError(
                f"offset {offset} + local batch {n} exceeds the {columns.shape[0]} rows of {name}"
            )
        logits = similarity_matrix(rows, columns, "cosine", scale=logit_scale) + logit_bias
        losses.append(_block_loss(logits, offset) / n)
        if first_logits is None:
            first_logits = logits
    loss = losses[0] if len(losses) == 1 else 0.5 * (losses[0] + losses[1])
    labels = torch.arange(n, device=image_emb.device) + offset
    return LossOutput(loss=loss, logits=first_logits, labels=labels)
