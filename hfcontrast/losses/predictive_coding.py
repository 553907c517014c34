"""Contrastive predictive coding over a grid of patches (van den Oord et al. 2018, *Representation Learning with
Contrastive Predictive Coding*; on images as Hénaff et al. 2020, *Data-Efficient Image Recognition with Contrastive
Predictive Coding*, CPC v2).

An image is cut into a ``G x G`` grid of overlapping patches, each encoded to ``z_{i,j}``; a context network reads
the patches of column ``j`` from the top down to row ``i`` (``c_{i,j}``), and a linear predictor ``W_k`` per offset
``k`` predicts the patch ``k`` rows below from it:

``L = 1/|T| sum_{(b,i,j,k) in T} -log(exp(z_{b,i+k,j} . W_k c_{b,i,j}) / sum_{n} exp(z_n . W_k c_{b,i,j}))``

over every prediction ``T`` with ``i + k < G``, the ``z_n`` every patch of the batch (of every process: the
objective gathers them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def cpc_predictions(
    patches: Tensor, context: Tensor, predictors: Sequence[nn.Module], offset: int = 0
) -> tuple[Tensor, Tensor]:
    """``(predictions [T, D], positive_index [T])``: ``W_k c_{b,i,j}`` for every ``k`` (``predictors[k - 1]``) and
    every position with a patch ``k`` rows below, and that patch's row in ``patches.reshape(-1, D)`` (plus
    ``offset``, this process's first row among the gathered patches). ``patches`` and ``context``: ``[B, G, G, D]``,
    indexed ``[b, row, column]``."""
    if patches.dim() != 4 or patches.shape[1] != patches.shape[2] or context.shape[:3] != patches.shape[:3]:
        raise ValueError(f"patches and context must be [batch, G, G, dim], got {tuple(patches.shape)} and {tuple(context.shape)}")
    b, g = patches.shape[0], patches.shape[1]
    if not 1 <= len(predictors) < g:
        raise ValueError(f"{len(predictors)} offsets for a {g} x {g} grid: give 1 to {g - 1}")
    index = torch.arange(b * g * g, device=patches.device).reshape(b, g, g)
    predictions, positives = [], []
    for k, predictor in enumerate(predictors, start=1):
        predictions.append(predictor(context[:, : g - k].reshape(-1, context.shape[-1])))
        positives.append(index[:, k:].reshape(-1) + offset)
    return torch.cat(predictions), torch.cat(positives)
