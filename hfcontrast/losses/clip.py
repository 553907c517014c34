"""CLIP symmetric contrastive loss, in the sharded "local loss" form; the CLIP objective's one loss path.

Reference: Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision" (CLIP). The sharded form (local rows against gathered columns) follows the idea of
OpenCLIP's ``local_loss`` option (Cherti et al. 2023 / Ilharco et al. 2021).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, check_positive, upcast
from .compiled import compilable
from .engine import contrastive_loss
from .infonce import similarity_matrix
from .roles import ColumnRoles
from .types import LossOutput

Direction = Literal["image_to_text", "text_to_image"]
#: One direction of the loss: ``(rows, candidates, positive_index, queue_start, direction) -> LossOutput``.
Contrast = Callable[[Tensor, Tensor, Tensor, "int | None", Direction], LossOutput]


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


@compilable
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
    contrast: Contrast | None = None,
) -> LossOutput:
    """CLIP loss of the local rows: ``0.5 * (CE(s * cos(I, [T_all; Q_T]), y) + CE(s * cos(T, [I_all; Q_I]), y))``.

    ``I``/``T`` are the local ``[n, D]`` image/text embeddings, ``I_all``/``T_all`` the gathered
    ``[N, D]`` sets (this shard at rows ``offset .. offset+n-1``), ``s = logit_scale`` the already
    exponentiated scale ``1 / tau`` (``> 0``), and ``y = arange(n) + offset``. Embeddings are
    L2-normalised (idempotent if the model already did). ``extra_text_negatives`` ``[K_t, D]`` are
    extra columns of the image->text direction, ``extra_image_negatives`` ``[K_i, D]`` of the
    text->image one (e.g. queues).

    ``contrast`` computes one direction from ``(rows, candidates, y, queue_start, direction)`` (where
    ``queue_start`` is the first extra column, ``None`` without extras): the CLIP objective passes the
    engine with its negative handling (masks by id, MoCHi on the queues, Matryoshka). By default it is
    the engine's plain InfoNCE at ``tau = 1 / s``; single-process without extras, one similarity matrix
    serves both directions (transposed).

    With ``W`` equal shards every row of the global ``N x N`` problem is a local row on exactly one rank,
    so the mean over ranks of this loss equals the global loss (and its gradient, provided the gather
    passes gradients back to the owning rank).

    Returns ``LossOutput(loss, logits=image->text logits, labels=y)`` with ``stats``: ``logits_per_text``
    (the text->image logits, not detached, when computed in one piece), detached ``loss_image_to_text``
    / ``loss_text_to_image``, ``top1_image_to_text`` / ``top1_text_to_image`` and ``negatives`` when the
    directions report them.
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
    labels = torch.arange(image_emb.shape[0], device=image_emb.device) + offset
    single = all_image_emb is None and all_text_emb is None and extra_image_negatives is None
    if contrast is None and single and extra_text_negatives is None:
        return _one_matrix(image_emb, text_emb, labels, logit_scale)
    direction = contrast or _plain(logit_scale)
    texts, text_queue = _columns(all_text, extra_text_negatives, "extra_text_negatives")
    images, image_queue = _columns(all_image, extra_image_negatives, "extra_image_negatives")
    image_to_text = direction(image_emb, texts, labels, text_queue, "image_to_text")
    text_to_image = direction(text_emb, images, labels, image_queue, "text_to_image")
    stats = {"loss_image_to_text": image_to_text.loss.detach(), "loss_text_to_image": text_to_image.loss.detach()}
    for name, out in (("image_to_text", image_to_text), ("text_to_image", text_to_image)):
        if "top1" in out.stats:
            stats[f"top1_{name}"] = out.stats["top1"]
    if "negatives" in image_to_text.stats:
        stats["negatives"] = image_to_text.stats["negatives"]
    if text_to_image.logits is not None:
        stats["logits_per_text"] = text_to_image.logits
    return LossOutput(0.5 * (image_to_text.loss + text_to_image.loss), image_to_text.logits, labels, stats)


def _columns(columns: Tensor, extra: Tensor | None, name: str) -> tuple[Tensor, int | None]:
    """``([columns; extra], first extra column)``."""
    if extra is None:
        return columns, None
    check_embeddings(name, extra, columns.shape[1])
    return torch.cat(upcast(columns, extra)), columns.shape[0]


def _plain(logit_scale: float | Tensor) -> Contrast:
    """One direction on the engine: plain InfoNCE, the positive at ``y``, ``tau = 1 / s``."""

    def direction(rows: Tensor, candidates: Tensor, labels: Tensor, queue_start: int | None, name: Direction) -> LossOutput:
        roles = ColumnRoles(positive_index=labels, indices_in_range=True)
        return contrastive_loss(rows, candidates, roles, temperature=1.0 / logit_scale)

    return direction


def _one_matrix(image: Tensor, text: Tensor, labels: Tensor, logit_scale: float | Tensor) -> LossOutput:
    """Single process, no extra columns: the text->image logits are the transposed image->text ones."""
    logits_per_image = similarity_matrix(image, text, "cosine", scale=logit_scale)
    logits_per_text = logits_per_image.T
    loss_i2t, loss_t2i = F.cross_entropy(logits_per_image, labels), F.cross_entropy(logits_per_text, labels)
    stats = {"logits_per_text": logits_per_text, "loss_image_to_text": loss_i2t.detach(), "loss_text_to_image": loss_t2i.detach()}
    return LossOutput(loss=0.5 * (loss_i2t + loss_t2i), logits=logits_per_image, labels=labels, stats=stats)
