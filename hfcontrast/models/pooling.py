"""Token pooling and projection heads shared by the encoders (copied into checkpoints, so no hfcontrast imports)."""

from __future__ import annotations

import torch
from torch import nn

TEXT_POOLERS = ("cls", "cls_before_pooler", "mean", "first_last_avg", "max")


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens whose mask is 1: sum_t m_t h_t / sum_t m_t."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def pool_tokens(
    pooler: str,
    last_hidden_state: torch.Tensor,
    attention_mask: torch.Tensor,
    hidden_states: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """Pool token states into one vector per sequence, as in SimCSE (Gao et al. 2021).

    ``cls``/``cls_before_pooler``: the first token; ``mean``: masked mean of the last layer;
    ``first_last_avg``: masked mean of (first layer + last layer) / 2; ``max``: masked max.
    """
    if pooler in ("cls", "cls_before_pooler"):
        return last_hidden_state[:, 0]
    if pooler == "mean":
        return masked_mean(last_hidden_state, attention_mask)
    if pooler == "first_last_avg":
        if hidden_states is None:
            raise ValueError("pooler 'first_last_avg' needs the backbone's hidden_states")
        # hidden_states[0] are the embeddings; [1] is the first transformer layer (SimCSE's convention).
        return masked_mean((hidden_states[1] + hidden_states[-1]) / 2.0, attention_mask)
    if pooler == "max":
        mask = attention_mask.unsqueeze(-1).bool()
        return last_hidden_state.masked_fill(~mask, torch.finfo(last_hidden_state.dtype).min).amax(dim=1)
    raise ValueError(f"unknown pooler {pooler!r}; choose one of {TEXT_POOLERS}")


class MLPHead(nn.Module):
    """Projection head: ``Linear -> activation`` (SimCSE) or ``Linear -> BN -> ReLU -> Linear`` (SimCLR)."""

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
            raise ValueError(f"unknown head kind {kind!r}; choose 'simcse', 'linear' or 'simclr'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
