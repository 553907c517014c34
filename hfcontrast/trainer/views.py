"""Split a collated batch into named views and embed them, one forward per group of compatible views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..objectives.base import encode


def split_views(batch: Mapping[str, Any]) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """Views are the mapping-valued entries of a batch; everything else (ids, labels) is extra."""
    views = {name: dict(value) for name, value in batch.items() if isinstance(value, Mapping)}
    extras = {name: value for name, value in batch.items() if not isinstance(value, Mapping)}
    if not views:
        raise ValueError(
            f"the batch has no views (mapping-valued entries); got keys {sorted(batch)}. "
            "Use an hfcontrast collator, which returns e.g. {'anchor': {...}, 'positive': {...}}"
        )
    return views, extras


def _concat(group: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate views along the batch; token tensors are right-padded to a common length with 0
    (the attention mask marks the padding, so pad ids never reach a pooled embedding)."""
    keys = group[0].keys()
    merged: dict[str, Tensor] = {}
    for key in keys:
        tensors = [view[key] for view in group]
        if key in ("input_ids", "attention_mask", "token_type_ids") and len({t.shape[1] for t in tensors}) > 1:
            length = max(t.shape[1] for t in tensors)
            tensors = [F.pad(t, (0, length - t.shape[1]), value=0) for t in tensors]
        merged[key] = torch.cat(tensors, dim=0)
    return merged


def group_views(views: Mapping[str, Mapping[str, Tensor]]) -> list[tuple[list[str], dict[str, Tensor], list[int]]]:
    """Group views with the same input names (one encoder) and concatenate each group along the batch.

    Returns ``[(view_names, concatenated_inputs, rows_per_view), ...]`` in first-seen order.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, view in views.items():
        groups.setdefault(tuple(sorted(view)), []).append(name)
    result = []
    for names in groups.values():
        sizes = [next(iter(views[name].values())).shape[0] for name in names]
        result.append((names, _concat([dict(views[name]) for name in names]), sizes))
    return result


def embed_views(model: nn.Module, views: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Run ``model`` once per group of views with the same input names and return ``{view: [B, D]}``.

    Views that share an encoder (same input keys) are concatenated into one forward: one kernel
    launch per layer instead of one per view, and dropout still draws independent masks per row,
    which is exactly what unsupervised SimCSE needs. Losses use the training embedding
    (``use_head=True``: projection heads on), in evaluation too.
    """
    embeddings: dict[str, Tensor] = {}
    for names, batch, sizes in group_views(views):
        embeddings.update(zip(names, torch.split(model_embeddings(model, batch), sizes)))
    return embeddings


def model_embeddings(model: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """The training embedding ``[rows, D]`` of one forward (``use_head=True``)."""
    output = model(**inputs, use_head=True)
    return output.embeddings if hasattr(output, "embeddings") else output[0]
