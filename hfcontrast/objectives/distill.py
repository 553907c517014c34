"""Distillation objectives: the student follows a teacher's scores (:mod:`hfcontrast.losses.distillation`).

The teacher's signal comes from the batch or from a teacher model:

* **ahead of time** (cached): the collator passes ``batch["teacher_margin"]`` (a teacher-score column) or
  the teacher's embeddings of each view, ``batch["teacher_<view>"]`` (see
  :func:`hfcontrast.distillation.add_teacher_embeddings`); any teacher, any tokenizer;
* **on the fly**: ``teacher=<a frozen encoder>`` embeds the student's own views (so it must share the
  student's tokenizer). It is a plain reference, not a submodule: never trained, never checkpointed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import gather, gather_detached
from ..losses import Similarity, in_batch_kl_loss, margin_mse_loss, pair_scores, similarity_matrix
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats
from .guide import FrozenViews


class TeacherScores(ContrastiveObjective):
    """What both distillation objectives share: the teacher's embedding of a view (:class:`FrozenViews`)."""

    modality = "text"
    tag = "distillation"

    def __init__(self, teacher: nn.Module | None, teacher_similarity: Similarity) -> None:
        super().__init__()
        self.teacher_views = FrozenViews(teacher, "teacher", type(self).__name__)
        self.teacher_similarity = teacher_similarity
        self.bind()  # nothing depends on the trained model

    def teacher_embedding(self, view: str, batch: Mapping[str, Any], device: torch.device) -> Tensor:
        """``batch["teacher_<view>"]`` when the collator passes it, else the teacher model on ``batch[view]``."""
        return self.teacher_views(view, batch, device)


class MarginMSE(TeacherScores):
    """MarginMSE (Hofstätter et al. 2020) over views ``anchor``, ``positive``, ``negative`` (``k`` per anchor).

    The teacher margin is ``batch["teacher_margin"]`` (a score column; one per anchor or per negative),
    else ``t(a, p) - t(a, n)`` from the teacher's embeddings. Per-row: nothing is gathered.

    Args:
        similarity: the student's score ``s`` (``"dot"`` as in the paper, or ``"cosine"``).
        teacher: a frozen encoder run on the student's views (same tokenizer), when the batch has no
            teacher columns.
        teacher_similarity: the teacher's score ``t``.
    """

    online_views = ("anchor", "positive", "negative")

    def __init__(
        self, *, similarity: Similarity = "dot", teacher: nn.Module | None = None, teacher_similarity: Similarity = "dot"
    ) -> None:
        super().__init__(teacher, teacher_similarity)
        self.similarity = similarity

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        anchor, positive, negative = embeddings["anchor"], embeddings["positive"], embeddings.get("negative")
        if negative is None:
            raise ValueError("MarginMSE needs a negative view (a negative column) for every anchor")
        k = negative.shape[0] // anchor.shape[0]
        margin = batch.get("teacher_margin")
        if isinstance(margin, Tensor):
            margin = margin.to(anchor.device)
        else:
            device = anchor.device
            t_anchor = self.teacher_embedding("anchor", batch, device)
            t_pos = pair_scores(t_anchor, self.teacher_embedding("positive", batch, device), self.teacher_similarity)
            t_neg = pair_scores(t_anchor.repeat(k, 1), self.teacher_embedding("negative", batch, device), self.teacher_similarity)
            margin = t_pos.repeat(k) - t_neg
        s_pos = pair_scores(anchor, positive, self.similarity)
        s_neg = pair_scores(anchor.repeat(k, 1), negative, self.similarity)
        out = margin_mse_loss(s_pos, s_neg, margin)
        stats = pair_stats(anchor, positive, None, None) | out.stats
        stats["margin_teacher"] = margin.detach().float().mean()
        return ObjectiveOutput(out.loss, stats)


class InBatchKL(TeacherScores):
    """In-batch KL distillation: each anchor's softmax over the gathered documents (positives, then hard
    negatives) follows the teacher's, ``mean_i KL(softmax(T_i / tau_t) || softmax(S_i / tau_s))``.

    Documents are gathered from every process (the student's with gradient, the teacher's without), so
    2 processes compute the single-process loss over the concatenated batch.

    Args:
        temperature / teacher_temperature: ``tau_s`` and ``tau_t``.
        similarity / teacher_similarity: the student's and the teacher's similarity.
        gather: documents of every process.
        teacher: a frozen encoder run on the student's views, when the batch has no teacher columns.
    """

    online_views = ("anchor", "positive", "negative")

    def __init__(
        self,
        temperature: float = 0.05,
        *,
        teacher_temperature: float = 0.05,
        similarity: Similarity = "cosine",
        teacher_similarity: Similarity = "cosine",
        gather: bool = True,
        teacher: nn.Module | None = None,
    ) -> None:
        super().__init__(teacher, teacher_similarity)
        self.temperature, self.teacher_temperature = temperature, teacher_temperature
        self.similarity, self.gather = similarity, gather

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        anchor = embeddings["anchor"]
        views = [name for name in ("positive", "negative") if name in embeddings]
        documents = torch.cat([gather(embeddings[name], enabled=self.gather).tensor for name in views])
        device = anchor.device
        teacher_docs = [self.teacher_embedding(name, batch, device) for name in views]
        teacher_docs = [gather_detached(t) if self.gather else t for t in teacher_docs]
        teacher_anchor = self.teacher_embedding("anchor", batch, device)
        student = similarity_matrix(anchor, documents, self.similarity)
        teacher = similarity_matrix(teacher_anchor, torch.cat(teacher_docs), self.teacher_similarity)
        out = in_batch_kl_loss(
            student, teacher, student_temperature=self.temperature, teacher_temperature=self.teacher_temperature
        )
        return ObjectiveOutput(out.loss, pair_stats(anchor, embeddings["positive"], None, None) | out.stats)
