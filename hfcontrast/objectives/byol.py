"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent").

Online projections ``z1, z2`` of the views ``query`` and ``key`` go through a predictor ``q``; the
targets ``z'1, z'2`` come from a momentum (EMA) copy of the encoder, with no gradient. Symmetric loss
(paper, eq. 2 and its symmetrisation ``L + L~``):

``L = mean_i (2 - 2 cos(q(z1_i), sg(z'2_i))) + mean_i (2 - 2 cos(q(z2_i), sg(z'1_i)))``

The target weights follow ``xi <- m xi + (1 - m) theta`` after every optimizer step, with ``m`` going
from ``momentum`` to ``final_momentum`` on BYOL's cosine schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..losses import byol_loss, collapse_std
from ..models.heads import Predictor
from .base import ContrastiveObjective, ObjectiveOutput, embedding_width, pair_stats, scalar_stat
from .state import MomentumEncoder, check_momentum


class BYOL(ContrastiveObjective):
    """BYOL over views ``query`` and ``key``; the target network and the predictor live here.

    Args:
        encoder: the model being trained (copied once as the target network).
        predictor_hidden_dim: hidden width of the predictor (paper: 4096).
        momentum / final_momentum: target EMA momentum, cosine-scheduled (paper: 0.996 -> 1).
        embedding_dim: predictor width; default the encoder's ``train_embedding_dim``.
    """

    online_views = ("query", "key")
    augmentation = "byol"
    tag = "byol"
    target_encoder: MomentumEncoder
    predictor: Predictor

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        predictor_hidden_dim: int = 4096,
        momentum: float = 0.99,
        final_momentum: float | None = 1.0,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.predictor_hidden_dim, self.embedding_dim = predictor_hidden_dim, embedding_dim
        check_momentum(momentum, final_momentum)
        self.momentum, self.final_momentum = momentum, final_momentum
        if encoder is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The target network (a momentum copy of ``encoder``) and the predictor."""
        if encoder is None:
            raise ValueError("BYOL copies the model being trained as its target network: bind it to the model")
        dim = embedding_width(encoder, self.embedding_dim, "BYOL")
        self.target_encoder = MomentumEncoder(encoder, self.momentum, self.final_momentum)
        self.predictor = Predictor(dim, self.predictor_hidden_dim)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        z1, z2 = embeddings["query"], embeddings["key"]
        p1, p2 = self.predictor.both(z1, z2)
        t1, t2 = self.target_encoder.embed_views(batch, ("query", "key"))
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        stats = pair_stats(z1, z2, None, None)
        stats["momentum"] = scalar_stat(self.target_encoder.momentum, z1)
        stats["collapse_std"] = collapse_std(z1)
        return ObjectiveOutput(loss, stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        self.target_encoder.update(model, step, max_steps)
