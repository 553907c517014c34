"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent"), and the predictor shared by BYOL-like objectives.

Online projections ``z1, z2`` of the views ``query`` and ``key`` go through a predictor ``q``; the
targets ``z'1, z'2`` come from a momentum (EMA) copy of the encoder, with no gradient. Symmetric loss
(paper, eq. 2 and its symmetrisation ``L + L~``):

``L = mean_i (2 - 2 cos(q(z1_i), sg(z'2_i))) + mean_i (2 - 2 cos(q(z2_i), sg(z'1_i)))``

The target weights follow ``xi <- m xi + (1 - m) theta`` after every optimizer step, with ``m`` going
from ``momentum`` to ``final_momentum`` on BYOL's cosine schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import byol_loss
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats
from .state import MomentumEncoder


class Predictor(nn.Sequential):
    """Prediction MLP ``q(z) = W2 ReLU(BN(W1 z)) + b2`` (BYOL: hidden 4096; SimSiam: bottleneck 512;
    MoCo v3: hidden 4096). ``W1`` has no bias: the BatchNorm that follows would cancel it."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None) -> None:
        if dim < 1 or hidden_dim < 1:
            raise ValueError(f"predictor dims must be >= 1, got dim={dim}, hidden_dim={hidden_dim}")
        super().__init__(
            nn.Linear(dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim or dim),
        )


def resolve_embedding_dim(encoder: nn.Module | None, embedding_dim: int | None, owner: str) -> int:
    """``embedding_dim`` if given, else ``encoder.config.train_embedding_dim`` (the training-time width)."""
    if embedding_dim is not None:
        return int(embedding_dim)
    dim = getattr(getattr(encoder, "config", None), "train_embedding_dim", None)
    if dim is None:
        raise ValueError(
            f"{owner} needs the width of the training-time embedding: pass embedding_dim=<int>, or an "
            "encoder whose config has train_embedding_dim (e.g. ContrastiveVisionModel)"
        )
    return int(dim)


def momentum_embed(encoder: MomentumEncoder, batch: Mapping[str, Any], names: Sequence[str]) -> list[Tensor]:
    """Embed views ``names`` with the momentum encoder (no grad), in one forward when they stack (as
    the trainer does for the online model, so both branches see the same BatchNorm batches)."""
    views = [batch[name] for name in names]
    keys = list(views[0])
    stackable = all(list(v) == keys for v in views) and all(
        v[k].shape[1:] == views[0][k].shape[1:] for v in views for k in keys
    )
    if not stackable:
        return [encoder(view) for view in views]
    merged = {k: torch.cat([view[k] for view in views]) for k in keys}
    sizes = [next(iter(view.values())).shape[0] for view in views]
    return list(torch.split(encoder(merged), sizes))


def predict(predictor: nn.Module, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """Apply the predictor to both views in one batch; return the two halves."""
    p1, p2 = torch.split(predictor(torch.cat([first, second])), [first.shape[0], second.shape[0]])
    return p1, p2


@torch.no_grad()
def collapse_std(z: Tensor) -> Tensor:
    """SimSiam's collapse monitor: mean over channels of the std of ``z / ||z||`` (``~1/sqrt(d)`` when
    healthy, ``0`` when collapsed; Chen & He 2021, fig. 2)."""
    return F.normalize(z.detach().float(), dim=-1).std(dim=0).mean()


class BYOL(ContrastiveObjective):
    """BYOL over views ``query`` and ``key``; the target network and the predictor live here.

    Args:
        encoder: the model being trained (copied once as the target network).
        predictor_hidden_dim: hidden width of the predictor (paper: 4096).
        momentum / final_momentum: target EMA momentum, cosine-scheduled (paper: 0.996 -> 1).
        embedding_dim: predictor width; default ``encoder.config.train_embedding_dim``.
    """

    online_views = ("query", "key")

    def __init__(
        self,
        encoder: nn.Module,
        *,
        predictor_hidden_dim: int = 4096,
        momentum: float = 0.99,
        final_momentum: float | None = 1.0,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        dim = resolve_embedding_dim(encoder, embedding_dim, "BYOL")
        self.target_encoder = MomentumEncoder(encoder, momentum, final_momentum)
        self.predictor = Predictor(dim, predictor_hidden_dim)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        z1, z2 = embeddings["query"], embeddings["key"]
        p1, p2 = predict(self.predictor, z1, z2)
        t1, t2 = momentum_embed(self.target_encoder, batch, ("query", "key"))
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        stats = pair_stats(z1, z2, None, None)
        stats["momentum"] = self.target_encoder.current_momentum.detach().clone()
        stats["collapse_std"] = collapse_std(z1)
        return ObjectiveOutput(loss, stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        self.target_encoder.update(model, step, max_steps)
