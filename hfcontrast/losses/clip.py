"""CLIP symmetric contrastive loss, in the sharded "local loss" form.

Reference: Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision" (CLIP). The sharded form (local rows against gathered columns) follows the idea of
OpenCLIP's ``local_loss`` option (Cherti et al. 2023 / Ilharco et al. 2021).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, check_positive, upcast
from .infonce import similarity_matrix
from .types import LossOutput


def _check_global(name: str, x: Tensor | None, local: Tensor, offset: int) -> Tensor:
    """Return the gathered tensor (``local`` when ``None``) after checking that it holds ``local`` rows."""
    if x is None:
        x = local
    check_embeddings(name, x, local.shape[1])
    if offset + local.shape[0] > x.shape[0]:
        raise ValueError(
            f"offset {offset} + local batch {local.shape[0]} exceeds the {x.shape[0]} rows of {name}"
        )
    return x


def clip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    all_image_emb: Tensor | None = None,
    all_text_emb: Tensor | None = None,
    *,
    logit_scale: float | Tensor,
    offset: int = 0,
    extra_image_negatives: Tensor | None = None,
    extra_text_negatives: Tensor | None = None,
) -> LossOutput:
    """CLIP loss of the local rows: ``0.5 * (CE(s * cos(I, T_all), y) + CE(s * cos(T, I_all), y))``.

    ``I``/``T`` are the local ``[n, D]`` image/text embeddings, ``I_all``/``T_all`` the gathered
    ``[N, D]`` sets (this shard at rows ``offset .. offset+n-1``), ``s = logit_scale`` the already
    exponentiated scale ``1 / tau`` (``> 0``), and ``y = arange(n) + offset``. Embeddings are
    L2-normalised here (idempotent if the model already did). ``extra_text_negatives`` ``[K_t, D]``
    are appended as extra columns of the image->text logits, ``extra_image_negatives`` ``[K_i, D]``
    as extra columns of the text->image logits (e.g. queues).

    With ``all_*`` left ``None`` (and ``offset=0``) this is the single-process CLIP loss. With
    ``W`` equal shards, every row of the global ``N x N`` problem is a local row on exactly one
    rank, so the mean over ranks of this loss equals the global loss (and its gradient, provided
    the gather passes gradients back to the owning rank).

    Returns ``LossOutput(loss, logits=logits_per_image [n, N+K_t], labels=y)`` with ``stats``:
    ``logits_per_text`` (not detached), detached ``loss_image_to_text`` / ``loss_text_to_image``.
    """
    check_positive("logit_scale", logit_scale)
    check_embeddings("image_emb", image_emb)
    check_embeddings("text_emb", text_emb, image_emb.shape[1])
    if image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(
            f"image_emb and text_emb need the same batch size, got {image_emb.shape[0]} and {text_emb.shape[0]}"
        )
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    all_image = _check_global("all_image_emb", all_image_emb, image_emb, offset)
    all_text = _check_global("all_text_emb", all_text_emb, text_emb, offset)

    logits_per_image = _logits(image_emb, all_text, extra_text_negatives, "extra_text_negatives", logit_scale)
    if all_image_emb is None and all_text_emb is None and extra_image_negatives is None:
        # single process: the text->image logits are the transpose of the in-batch block
        logits_per_text = logits_per_image[:, : text_emb.shape[0]].T
    else:
        logits_per_text = _logits(text_emb, all_image, extra_image_negatives, "extra_image_negatives", logit_scale)

    labels = torch.arange(image_emb.shape[0], device=image_emb.device) + offset
    loss_i2t = F.cross_entropy(logits_per_image, labels)
    loss_t2i = F.cross_entropy(logits_per_text, labels)
    return LossOutput(
        loss=0.5 * (loss_i2t + loss_t2i),
        logits=logits_per_image,
        labels=labels,
        stats={
            "logits_per_text": logits_per_text,
            "loss_image_to_text": loss_i2t.detach(),
            "loss_text_to_image": loss_t2i.detach(),
        },
    )


def _logits(rows: Tensor, columns: Tensor, extra: Tensor | None, extra_name: str, scale: float | Tensor) -> Tensor:
    """``scale * cos(rows, [columns; extra])``: one product over the stacked columns."""
    if extra is not None:
        check_embeddings(extra_name, extra, rows.shape[1])
        columns = torch.cat(upcast(columns, extra))
    return similarity_matrix(rows, columns, "cosine", scale=scale)
