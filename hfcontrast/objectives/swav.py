"""SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments").

Each crop's normalised embedding ``z`` is scored against ``K`` learnable prototypes ``c`` (unit rows):
``p = z c^T``. The codes ``q`` of the two global crops (views ``query`` and ``key``) come from
Sinkhorn-Knopp over the global batch (sums all-reduced across processes), optionally with the queued
embeddings of earlier batches in front of it for small batches. Each code is predicted from every other
crop (the other global crop and the ``local_*`` crops of multi-crop):
``L = -1/|pairs| sum_{i, v != i} sum_k q_i[k] log softmax(p_v / tau)[k]``
(:func:`~hfcontrast.losses.clustering.swapped_prediction_loss`). The prototypes are normalised after every
optimizer step and frozen (no gradient) for the first ``freeze_prototypes_steps`` steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import all_reduce_sum, rank
from ..losses import sinkhorn_knopp, swapped_prediction_loss
from ..memory import host_scalar, register_host_scalar, set_host_scalar
from .base import ContrastiveObjective, ObjectiveOutput, embedding_width, pair_stats
from .state import KeyQueue

GLOBAL_VIEWS = ("query", "key")


def _summed(value: Tensor) -> Tensor:
    return all_reduce_sum(value).to(value.device)


class SwAV(ContrastiveObjective):
    """Swapped prediction of Sinkhorn codes over views ``query``, ``key`` and any ``local_*`` crops.

    Args:
        encoder / embedding_dim: the model being trained (or the embedding width), to size the prototypes.
        num_prototypes: ``K`` (SwAV: 3000 on ImageNet).
        temperature: ``tau`` of the prediction softmax (SwAV: 0.1).
        epsilon / sinkhorn_iterations: Sinkhorn-Knopp's entropy weight and iteration count (0.05, 3).
        freeze_prototypes_steps: optimizer steps during which the prototypes get no gradient.
        queue_size: embeddings of earlier batches (per global crop) put in front of the batch for the codes.
    """

    online_views = None
    multi_crop = True
    augmentation = "byol"
    tag = "swav"
    prototypes: nn.Linear

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        embedding_dim: int | None = None,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        freeze_prototypes_steps: int = 0,
        queue_size: int = 0,
    ) -> None:
        super().__init__()
        if num_prototypes < 2 or sinkhorn_iterations < 1 or freeze_prototypes_steps < 0 or queue_size < 0:
            raise ValueError("SwAV needs num_prototypes >= 2, sinkhorn_iterations >= 1 and non-negative step/queue sizes")
        self.embedding_dim, self.num_prototypes, self.queue_size = embedding_dim, num_prototypes, queue_size
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, sinkhorn_iterations
        self.freeze_prototypes_steps = freeze_prototypes_steps
        register_host_scalar(self, "steps_done", 0)  # read every step: a Python int, checkpointed
        self.queues: list[KeyQueue] = []
        if encoder is not None or embedding_dim is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The prototypes (unit rows) and the optional per-crop queues, as wide as the training-time embedding."""
        dim = embedding_width(encoder, self.embedding_dim, "SwAV")
        self.prototypes = nn.Linear(dim, self.num_prototypes, bias=False)
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=-1))
        for i, _ in enumerate(GLOBAL_VIEWS if self.queue_size else ()):
            queue = KeyQueue(self.queue_size, dim)
            self.add_module(f"queue_{i}", queue)
            self.queues.append(queue)

    def codes(self, scores: Tensor, index: int) -> Tensor:
        """Sinkhorn codes of global crop ``index``'s scores, with its queue's scores in front when full. The
        queue is the same on every process, so it enters the all-reduced sums once: on the first process."""
        rows = scores.shape[0]
        with torch.no_grad():
            full = bool(self.queues) and self.queues[index].queue.is_full and rank() == 0
            stored = self.queues[index].negatives() if full else None
            if stored is not None:
                scores = torch.cat([stored.to(scores.dtype) @ self.prototypes.weight.T.to(scores.dtype), scores])
            codes = sinkhorn_knopp(scores.detach(), epsilon=self.epsilon, iterations=self.iterations, all_reduce=_summed)
        return codes[-rows:]

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        names = [*GLOBAL_VIEWS, *sorted(n for n in embeddings if n.startswith("local"))]
        missing = [n for n in GLOBAL_VIEWS if n not in embeddings]
        if missing:
            raise ValueError(f"SwAV needs the global crops {list(GLOBAL_VIEWS)}, missing {missing}")
        z = [F.normalize(embeddings[n], dim=-1) for n in names]
        weight = self.prototypes.weight
        if self.training and host_scalar(self, "steps_done") < self.freeze_prototypes_steps:
            weight = weight.detach()
        scores = [crop @ weight.T.to(crop.dtype) for crop in z]
        codes = [self.codes(scores[i].detach(), i) for i in range(len(GLOBAL_VIEWS))]
        out = swapped_prediction_loss(scores, codes, self.temperature)
        if self.training and self.queues:
            for queue, crop in zip(self.queues, z):
                queue.stage(crop.detach())
        stats = pair_stats(z[0], z[1], None, None)
        stats["code_entropy"] = -(codes[0] * codes[0].clamp_min(1e-12).log()).sum(-1).mean().detach().float()
        return ObjectiveOutput(out.loss, stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=-1))
        set_host_scalar(self, "steps_done", host_scalar(self, "steps_done") + 1)
        for queue in self.queues:
            queue.flush()
