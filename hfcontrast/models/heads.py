"""Heads on top of a pooled feature: projection heads (in the models) and predictors (held by objectives).

Copied into checkpoints with the models: no hfcontrast imports.
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_KINDS = ("simcse", "linear", "simclr")


class MLPHead(nn.Module):
    """Projection head: ``Linear -> Tanh`` (``simcse``, Gao et al. 2021), ``Linear`` (``linear``) or
    ``Linear -> BN -> ReLU -> Linear`` (``simclr``, Chen et al. 2020)."""

    def __init__(self, in_dim: int, out_dim: int, kind: str = "simcse", hidden_dim: int | None = None) -> None:
        super().__init__()
        self.kind = kind
        if kind == "simcse":
            self.layers = nn.Sequential(nn.Linear(in_dim, out_dim), nn.Tanh())
        elif kind == "linear":
            self.layers = nn.Sequential(nn.Linear(in_dim, out_dim))
        elif kind == "simclr":
            hidden = hidden_dim or in_dim
            self.layers = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
            )
        else:
            raise ValueError(f"unknown head kind {kind!r}; choose one of {HEAD_KINDS}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Predictor(nn.Sequential):
    """Prediction MLP ``q(z) = W2 ReLU(BN(W1 z)) + b2`` of BYOL (hidden 4096), SimSiam (bottleneck 512) and
    MoCo v3 (hidden 4096). ``W1`` has no bias: the BatchNorm that follows would cancel it. A training
    head: objectives own it, exported models never hold it."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None) -> None:
        if dim < 1 or hidden_dim < 1:
            raise ValueError(f"predictor dims must be >= 1, got dim={dim}, hidden_dim={hidden_dim}")
        super().__init__(
            nn.Linear(dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim or dim),
        )

    def both(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict both views in one batch (one set of BatchNorm statistics); return the two halves."""
        out = self(torch.cat([first, second]))
        return out[: first.shape[0]], out[first.shape[0] :]


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021): a 3-layer GELU MLP to a bottleneck, L2 normalisation, then
    a linear layer without bias to ``out_dim`` prototype logits. A training head held by the objective (the
    student's; the teacher keeps an EMA copy). The paper's weight normalisation of the last layer is left
    out."""

    def __init__(self, dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256) -> None:
        super().__init__()
        if min(dim, out_dim, hidden_dim, bottleneck_dim) < 1:
            raise ValueError("DINO head widths must be >= 1")
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )  # fmt: skip
        self.last = nn.Linear(bottleneck_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(nn.functional.normalize(self.mlp(x), dim=-1))
