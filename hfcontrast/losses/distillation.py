"""Distillation losses for embedding models: a student learns a teacher's scores.

* **MarginMSE** (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with
  Cross-Architecture Knowledge Distillation"): the student's margin between the positive and the
  negative matches the teacher's,
  ``L = mean_i ((s(q_i, p_i) - s(q_i, n_i)) - (t(q_i, p_i) - t(q_i, n_i)))^2``.
* **In-batch KL** (as in RocketQA v2 / the distillation of E5 and BGE): each query's distribution
  over the batch's documents follows the teacher's,
  ``L = mean_i KL(softmax(T_i / tau_t) || softmax(S_i / tau_s))`` with ``S_ij = s(q_i, d_j)`` and
  ``T_ij`` the teacher's similarity matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_positive, upcast
from .compiled import compilable
from .types import LossOutput


def pair_scores(query: Tensor, document: Tensor, similarity: str = "dot") -> Tensor:
    """Row-wise ``s(q_i, d_i)``: dot product or cosine, in at least fp32."""
    query, document = upcast(query, document)
    if similarity == "cosine":
        query, document = F.normalize(query, dim=-1), F.normalize(document, dim=-1)
    return (query * document).sum(-1)


@compilable
def margin_mse_loss(positive_scores: Tensor, negative_scores: Tensor, teacher_margin: Tensor) -> LossOutput:
    """MarginMSE: ``mean_i ((s_pos_i - s_neg_i) - m_i)^2`` with the teacher's margin ``m``.

    ``negative_scores`` may be ``[k * B]`` (``k`` negatives per query, row ``j * B + i``) with a margin
    per negative (``[k * B]``) or per query (``[B]``, repeated)."""
    b = positive_scores.shape[0]
    if negative_scores.shape[0] % b:
        raise ValueError(f"{negative_scores.shape[0]} negative scores for {b} queries: expected k * {b}")
    k = negative_scores.shape[0] // b
    positive_scores, negative_scores, margin = upcast(positive_scores, negative_scores, teacher_margin)
    if margin.shape[0] == b and k > 1:
        margin = margin.repeat(k)
    if margin.shape != negative_scores.shape:
        raise ValueError(f"teacher margins of shape {tuple(teacher_margin.shape)} for {negative_scores.shape[0]} negatives")
    student = positive_scores.repeat(k) - negative_scores
    return LossOutput(F.mse_loss(student, margin), stats={"margin_student": student.detach().mean()})


@compilable
def in_batch_kl_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
) -> LossOutput:
    """``mean_i KL(softmax(T_i / tau_t) || softmax(S_i / tau_s))`` over rows of ``[N, M]`` score matrices."""
    check_positive("student_temperature", student_temperature)
    check_positive("teacher_temperature", teacher_temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} scores differ")
    student, teacher = upcast(student_logits, teacher_logits.detach())
    log_student = torch.log_softmax(student / student_temperature, dim=-1)
    log_teacher = torch.log_softmax(teacher / teacher_temperature, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)
    agree = (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean()
    return LossOutput(kl.mean(), stats={"teacher_top1_agreement": agree.detach()})
