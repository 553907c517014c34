"""Split a collated batch into named views and embed them, one forward per group of compatible views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..collators.lengths import ViewLengths
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
    along the batch (token views right-padded to the group's widest, a shape known on the host).

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


def group_lengths(names: list[str], lengths: ViewLengths | None) -> list[int] | None:
    """The host's token counts of the rows of a group of views (``None``: not known, or left padding)."""
    if lengths is None or lengths.side != "right":
        return None
    return lengths.of(names)


#: How the text views of one encoder are embedded (``ContrastiveTrainingArguments.view_forwards``).
VIEW_FORWARDS = ("merged", "length_buckets", "per_view")


def embed_views(
    model: nn.Module,
    views: Mapping[str, Mapping[str, Tensor]],
    lengths: ViewLengths | None = None,
    forwards: str = "length_buckets",
    packed: bool = False,
) -> dict[str, Tensor]:
    """Embed the views, views with the same input names (one encoder) and image size together; ``{view: [B, D]}``.

    ``forwards`` says how a group of text views runs:

    * ``"merged"``: one forward, all views concatenated and padded once to the group's longest row (like
      sentence-transformers' merged forward);
    * ``"length_buckets"``: the group's rows sorted by length (from ``lengths``, the collator's counts on the
      host) and cut into as many forwards as there are views, each padded to its own longest row: the fewest
      padded tokens, at the cost of a few more forwards;
    * ``"per_view"``: one forward per view, each padded to its own longest row.

    ``packed`` (padding-free): each group of text views runs as one forward of its rows packed one after another
    (:func:`packed_inputs`), no padding at all; ``forwards`` does not apply.

    Pixels of one size always run in one forward. Nothing is read back from the device. Dropout draws
    independent masks per row, which is what unsupervised SimCSE needs. Losses use the training embedding
    (``use_head=True``: projection heads on), in evaluation too.
    """
    if forwards not in VIEW_FORWARDS:
        raise ValueError(f"view_forwards must be one of {VIEW_FORWARDS}, got {forwards!r}")
    embeddings: dict[str, Tensor] = {}
    for names, batch, sizes in group_views(views):
        text = batch.get("attention_mask") is not None and len(names) > 1
        if packed and batch.get("attention_mask") is not None:
            rows = group_lengths(names, lengths)
            if rows is None:
                raise ValueError("padding_free packs rows by their lengths: use an hfcontrast text collator (batch['lengths'])")
            embeddings.update(zip(names, torch.split(model_embeddings(model, packed_inputs(batch, rows)), sizes)))
        elif text and forwards == "per_view":
            embeddings.update((name, model_embeddings(model, views[name])) for name in names)
        elif text and forwards == "length_buckets":
            order, chunks = plan_chunks(batch, -(-sum(sizes) // len(names)), group_lengths(names, lengths))
            stacked = unsort_rows(torch.cat([model_embeddings(model, chunk) for chunk in chunks]), order)
            embeddings.update(zip(names, torch.split(stacked, sizes)))
        else:
            embeddings.update(zip(names, torch.split(model_embeddings(model, batch), sizes)))
    return embeddings


def packed_inputs(inputs: Mapping[str, Tensor], lengths: Sequence[int]) -> dict[str, Any]:
    """The rows of a right-padded token batch packed one after another into one sequence (padding-free):
    ``input_ids [1, T]`` (``T = sum(lengths)``), ``position_ids`` restarting at 0 for each row, ``cu_seq_lens``
    (int32, ``[R + 1]``) and ``max_length``. The indices are made on the host from ``lengths`` and copied over
    without waiting (no device read)."""
    counts = np.asarray(lengths, dtype=np.int64)
    width = inputs["input_ids"].shape[1]
    cu = np.concatenate([[0], np.cumsum(counts)])
    positions = np.arange(int(cu[-1])) - np.repeat(cu[:-1], counts)
    flat = np.repeat(np.arange(len(counts)) * width, counts) + positions
    device = inputs["input_ids"].device

    def on_device(array: np.ndarray, dtype: torch.dtype = torch.long) -> Tensor:
        return torch.from_numpy(array).to(device=device, dtype=dtype, non_blocking=True)

    index = on_device(flat)
    out: dict[str, Any] = {key: inputs[key].reshape(-1).index_select(0, index)[None]
                           for key in ("input_ids", "token_type_ids") if key in inputs}  # fmt: skip
    out["position_ids"] = on_device(positions)[None]
    out["cu_seq_lens"] = on_device(cu, torch.int32)
    out["max_length"] = int(counts.max(initial=1))
    return out


def model_embeddings(model: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """The training embedding ``[rows, D]`` of one forward (``use_head=True``, see ``encode``)."""
    return encode(model, inputs)


# ----------------------------------------------------------------------------- chunking (GradCache)


def trim_padding(inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop trailing columns where ``attention_mask`` is 0 for every row (token tensors only). It reads the mask
    on the host (a sync): for inputs whose lengths nothing else knows; the training step cuts from the
    collator's lengths instead (:func:`plan_chunks`)."""
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


def plan_chunks(
    inputs: Mapping[str, Tensor], chunk_size: int, lengths: Sequence[int] | None = None, tokens: int | None = None
) -> tuple[Tensor | None, list[dict[str, Tensor]]]:
    """``(order, chunks)``: chunk ``k`` holds rows ``order[k*chunk_size : (k+1)*chunk_size]`` (``order``
    ``None``: the rows in place).

    Token inputs (a 2-D ``attention_mask``) are sorted longest-first and every chunk is cut to its longest row,
    from ``lengths``, each row's token count known on the host (the collator's :class:`ViewLengths`): no
    device read. With ``tokens`` (a budget) a chunk takes as many rows as fit ``rows x width <= tokens`` (at
    least one), so short rows travel in large chunks and long ones in small. Without ``lengths`` the counts
    are read from the mask: one host sync. Pixels: chunks of ``chunk_size`` rows, in place.
    """
    mask = inputs.get("attention_mask")
    rows = next(iter(inputs.values())).shape[0]
    if mask is None or mask.dim() != 2 or (rows <= chunk_size and tokens is None):
        if rows <= chunk_size:
            return None, [dict(inputs)]
        return None, [{key: value[start : start + chunk_size] for key, value in inputs.items()}
                      for start in range(0, rows, chunk_size)]  # fmt: skip
    if lengths is None:
        positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        lengths = (mask.ne(0) * positions).amax(dim=1).tolist()  # last attended position + 1: one host read
    order = sorted(range(rows), key=lambda i: -lengths[i])  # stable: equal lengths keep their order
    spans = _spans([lengths[i] for i in order], chunk_size, tokens)
    if len(spans) == 1 and spans[0][1] - spans[0][0] == rows and order == sorted(order):
        return None, [{key: _cut(key, value, max(lengths, default=1)) for key, value in inputs.items()}]
    index = torch.tensor(order).to(mask.device, non_blocking=True)
    chunks = []
    for start, end in spans:
        width = max(1, lengths[order[start]])
        chunks.append({key: _cut(key, value.index_select(0, index[start:end]), width) for key, value in inputs.items()})
    return index, chunks


def _spans(sorted_lengths: Sequence[int], chunk_size: int, tokens: int | None) -> list[tuple[int, int]]:
    """Row ranges of the chunks over rows sorted longest-first: ``chunk_size`` rows each, or, with ``tokens``,
    as many as keep ``rows x longest`` within the budget."""
    rows, spans, start = len(sorted_lengths), [], 0
    while start < rows:
        size = chunk_size if tokens is None else max(1, tokens // max(1, sorted_lengths[start]))
        spans.append((start, min(rows, start + size)))
        start += size
    return spans


def _cut(key: str, value: Tensor, width: int) -> Tensor:
    return value[:, :width] if key in _TOKEN_KEYS and value.dim() >= 2 and value.shape[1] > width else value


def unsort_rows(stacked: Tensor, order: Tensor | None) -> Tensor:
    """Rows of ``stacked`` (in ``order``) back to the batch order."""
    if order is None:
        return stacked
    out = torch.empty_like(stacked)
    out[order] = stacked
    return out


@torch.no_grad()
def embed_views_chunked(
    model: nn.Module, views: Mapping[str, Mapping[str, Tensor]], chunk_size: int, lengths: ViewLengths | None = None
) -> dict[str, Tensor]:
    """Like :func:`~hfcontrast.trainer.views.embed_views` under ``no_grad``, ``chunk_size`` rows per forward
    (evaluation of a batch too large for one forward)."""
    embeddings: dict[str, Tensor] = {}
    for names, batch, sizes in group_views(views):
        order, chunks = plan_chunks(batch, chunk_size, group_lengths(names, lengths))
        stacked = unsort_rows(torch.cat([model_embeddings(model, chunk) for chunk in chunks]), order)
        embeddings.update(zip(names, torch.split(stacked, sizes)))
    return embeddings
