"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"): self-distillation
without labels.

The student (the trained encoder plus a :class:`~hfcontrast.models.DINOHead`) sees every crop; the teacher
(an EMA of both, :class:`MomentumEncoder`) sees the global crops ``query`` and ``key`` only. With the
centre ``c`` and the teacher temperature ``tau_t`` (linearly warmed up from ``warmup_teacher_temperature``):

``L = -1/|pairs| sum_{i in global, v != i} sum_k softmax((t_i - c) / tau_t)[k] log softmax(s_v / tau_s)[k]``

(:func:`~hfcontrast.losses.clustering.dino_loss`). After each optimizer step the centre follows the teacher
outputs' mean over the global batch (all-reduced), ``c <- m c + (1 - m) mean_b t_b``, and the teacher takes
its EMA step. Centre, teacher and step count are objective state, saved in checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import all_reduce_sum
from ..losses import dino_loss
from ..memory import ema_update_, host_scalar, make_momentum_copy, register_host_scalar, set_host_scalar
from ..models import DINOHead
from .base import ContrastiveObjective, ObjectiveOutput, embedding_width, pair_stats, scalar_stat
from .state import MomentumEncoder, check_momentum

GLOBAL_VIEWS = ("query", "key")


class DINO(ContrastiveObjective):
    """DINO over the global crops ``query``, ``key`` and any ``local_*`` crops.

    Args:
        encoder: the model being trained (its EMA copy is the teacher's backbone).
        out_dim / hidden_dim / bottleneck_dim: the DINO head (paper: 65536 / 2048 / 256).
        student_temperature / teacher_temperature: ``tau_s`` (0.1) and ``tau_t`` after warm-up (0.04-0.07).
        warmup_teacher_temperature / warmup_steps: ``tau_t`` rises linearly from this over these steps.
        center_momentum: ``m`` of the centre (0.9).
        momentum / final_momentum: the teacher's EMA momentum and the end of its cosine schedule (0.996 -> 1).
    """

    online_views = None
    multi_crop = True
    augmentation = "byol"
    tag = "dino"
    head: DINOHead
    teacher_encoder: MomentumEncoder
    teacher_head: nn.Module

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        embedding_dim: int | None = None,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: float | None = None,
        warmup_steps: int = 0,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        final_momentum: float | None = 1.0,
    ) -> None:
        super().__init__()
        check_momentum(momentum, final_momentum)
        self.embedding_dim, self.head_dims = embedding_dim, (out_dim, hidden_dim, bottleneck_dim)
        self.momentum, self.final_momentum = momentum, final_momentum
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature
        self.warmup_teacher_temperature = teacher_temperature if warmup_teacher_temperature is None else warmup_teacher_temperature
        self.warmup_steps, self.center_momentum = warmup_steps, center_momentum
        self.center: Tensor
        self.register_buffer("center", torch.zeros(out_dim))
        register_host_scalar(self, "steps_done", 0)  # read every step: a Python int, checkpointed
        self._pending: list[Tensor] = []
        if encoder is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The student's DINO head and the teacher: EMA copies of ``encoder`` and of that head."""
        if encoder is None:
            raise ValueError("DINO's teacher is a momentum copy of the model being trained: bind it to the model")
        self.head = DINOHead(embedding_width(encoder, self.embedding_dim, "DINO"), *self.head_dims)
        self.teacher_encoder = MomentumEncoder(encoder, self.momentum, self.final_momentum)
        self.teacher_head = make_momentum_copy(self.head)

    def teacher_temperature_at(self, step: int) -> float:
        """``tau_t`` at optimizer step ``step``: linear warm-up, then constant."""
        if step >= self.warmup_steps:
            return self.teacher_temperature
        return self.warmup_teacher_temperature + (self.teacher_temperature - self.warmup_teacher_temperature) * step / self.warmup_steps

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        names = [*GLOBAL_VIEWS, *sorted(n for n in embeddings if n.startswith("local"))]
        student = [self.head(embeddings[n]) for n in names]
        with torch.no_grad():
            self.teacher_head.train(self.training)
            teacher = [self.teacher_head(t) for t in self.teacher_encoder.embed_views(batch, GLOBAL_VIEWS)]
        tau_t = self.teacher_temperature_at(host_scalar(self, "steps_done"))
        out = dino_loss(student, teacher, self.center, student_temperature=self.student_temperature, teacher_temperature=tau_t)
        if self.training:
            outputs = torch.cat(teacher).to(self.center.dtype)
            self._pending.append(torch.cat([outputs.sum(0), outputs.new_full((1,), outputs.shape[0])]))
        stats = pair_stats(embeddings["query"], embeddings["key"], None, None) | out.stats
        stats["teacher_temperature"] = scalar_stat(tau_t, student[0])
        return ObjectiveOutput(out.loss, stats)

    @torch.no_grad()
    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        self.teacher_encoder.update(model, step, max_steps)
        ema_update_(self.teacher_head, self.head, self.teacher_encoder.momentum)
        if self._pending:  # the mean teacher output over the global batch (every micro-batch of the step)
            total = all_reduce_sum(torch.stack(self._pending).sum(0)).to(self.center.device)
            batch_center = total[:-1] / total[-1]
            self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
            self._pending.clear()
        set_host_scalar(self, "steps_done", host_scalar(self, "steps_done") + 1)
