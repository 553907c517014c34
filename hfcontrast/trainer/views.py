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


_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def _group_key(view: Mapping[str, Tensor]) -> tuple[Any, ...]:
    """Views stack when they have the same inputs and, except for token lengths (padded), the same
    shapes: multi-crop's global and local crops (two resolutions) are two groups, two forwards."""
    return tuple((key, None if key in _TOKEN_KEYS else tuple(view[key].shape[1:])) for key in sorted(view))


def group_views(views: Mapping[str, Mapping[str, Tensor]]) -> list[tuple[list[str], dict[str, Tensor], list[int]]]:
    """Group views with the same input names (one encoder) and image size, and concatenate each group
    along the batch.

    Returns ``[(view_names, concatenated_inputs, rows_per_view), ...]`` in first-seen order.
    """
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, view in views.items():
        groups.setdefault(_group_key(view), []).append(name)
    result = []
    for names in groups.values():
        sizes = [next(iter(views[name].values())).shape[0] for name in names]
        result.append((names, _concat([dict(views[name]) for name in names]), sizes))
    return result


def embed_views(model: nn.Module, views: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Run ``model`` once per group of views with the same input names and return ``{view: [B, D]}``.

    Views that share an encoder (same input keys) are embedded together: pixels in one forward,
    tokens in length buckets (see ``_embed_group``); dropout draws independent masks per row, which
    is what unsupervised SimCSE needs. Losses use the training embedding (``use_head=True``:
    projection heads on), in evaluation too.
    """
    embeddings: dict[str, Tensor] = {}
    for names, batch, sizes in group_views(views):
        embeddings.update(zip(names, torch.split(_embed_group(model, batch, buckets=len(names)), sizes)))
    return embeddings


def _embed_group(model: nn.Module, batch: Mapping[str, Tensor], buckets: int) -> Tensor:
    """Token inputs of several views: rows sorted by length into ``buckets`` forwards, each trimmed to
    its longest row, so a batch pays less padding than one forward per view (one shared length would
    pay the most). Other inputs: one forward."""
    mask = batch.get("attention_mask")
    if buckets < 2 or mask is None or mask.dim() != 2:
        return model_embeddings(model, trim_padding(batch))
    order, chunks = plan_chunks(batch, -(-mask.shape[0] // buckets))
    return unsort_rows(torch.cat([model_embeddings(model, chunk) for chunk in chunks]), order)


def model_embeddings(model: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """The training embedding ``[rows, D]`` of one forward (``use_head=True``, see ``encode``)."""
    return encode(model, inputs)


# ----------------------------------------------------------------------------- chunking (GradCache)


def trim_padding(inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop trailing columns where ``attention_mask`` is 0 for every row (token tensors only)."""
    mask = inputs.get("attention_mask")
    out = dict(inputs)
    if mask is None or mask.dim() != 2 or mask.shape[1] == 0:
        return out
    used = mask.ne(0).any(dim=0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1
    if length == mask.shape[1]:
        return out
    for key in _TOKEN_KEYS:
        value = out.get(key)
        if value is not None and value.dim() >= 2 and value.shape[1] == mask.shape[1]:
            out[key] = value[:, :length]
    return out


def chunk_rows(inputs: Mapping[str, Tensor], chunk_size: int) -> list[dict[str, Tensor]]:
    """Split every tensor of ``inputs`` along dim 0 into chunks of ``chunk_size`` rows (padding trimmed)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows = next(iter(inputs.values())).shape[0]
    return [
        trim_padding({key: value[start : start + chunk_size] for key, value in inputs.items()})
        for start in range(0, rows, chunk_size)
    ]


def length_order(inputs: Mapping[str, Tensor], chunk_size: int) -> Tensor | None:
    """Row order longest-first (stable) for token inputs that span several chunks, else ``None``.

    Chunks of similar lengths carry little padding; the rows go back to their places after stage 1.
    Only for inputs with a 2-D ``attention_mask`` (text): for pixels the order would change nothing but
    BatchNorm's chunk statistics.
    """
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or mask.shape[0] <= chunk_size:
        return None
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    lengths = (mask.ne(0) * positions).amax(dim=1)  # last attended position + 1 (right padding)
    return torch.sort(lengths, descending=True, stable=True).indices


def plan_chunks(inputs: Mapping[str, Tensor], chunk_size: int) -> tuple[Tensor | None, list[dict[str, Tensor]]]:
    """``(order, chunks)``: chunk ``k`` holds rows ``order[k*chunk_size : (k+1)*chunk_size]`` (``order``
    ``None``: the rows in place)."""
    order = length_order(inputs, chunk_size)
    if order is not None:
        inputs = {key: value[order] for key, value in inputs.items()}
    return order, chunk_rows(inputs, chunk_size)


def unsort_rows(stacked: Tensor, order: Tensor | None) -> Tensor:
    """Rows of ``stacked`` (in ``order``) back to the batch order."""
    if order is None:
        return stacked
    out = torch.empty_like(stacked)
    out[order] = stacked
    return out


@torch.no_grad()
def embed_views_chunked(
    model: nn.Module, views: Mapping[str, Mapping[str, Tensor]], chunk_size: int
) -> dict[str, Tensor]:
    """Like :func:`~hfcontrast.trainer.views.embed_views` under ``no_grad``, ``chunk_size`` rows per forward
    (evaluation of a batch too large for one forward)."""
    embeddings: dict[str, Tensor] = {}
    for names, batch, sizes in group_views(views):
        order, chunks = plan_chunks(batch, chunk_size)
        stacked = unsort_rows(torch.cat([model_embeddings(model, chunk) for chunk in chunks]), order)
        embeddings.update(zip(names, torch.split(stacked, sizes)))
    return embeddings
