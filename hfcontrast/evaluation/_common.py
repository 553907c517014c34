"""Helpers shared by the evaluators: eval mode, device, batching, progress bars, feature extraction."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode under ``torch.inference_mode()``; restore its training flag after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model holding neither."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


def to_device(inputs: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor value of ``inputs`` to ``device``; other values pass through unchanged."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def as_features(output: Any, where: str) -> torch.Tensor:
    """A ``[B, D]`` tensor from a model output: a tensor, or ``.embeddings``, or ``.pooler_output``.

    ``transformers`` 5 ``CLIPModel.get_*_features`` return a ``BaseModelOutputWithPooling`` whose
    ``pooler_output`` holds the projected features; hfcontrast encoders return ``.embeddings``.
    """
    if isinstance(output, torch.Tensor):
        features = output
    elif getattr(output, "embeddings", None) is not None:
        features = output.embeddings
    elif getattr(output, "pooler_output", None) is not None:
        features = output.pooler_output
    else:
        raise TypeError(
            f"{where} returned {type(output).__name__}; expected a [batch, dim] tensor or an object "
            "with an `embeddings` field"
        )
    if features.dim() != 2:
        raise ValueError(
            f"{where} returned embeddings of shape {tuple(features.shape)}; expected [batch, dim]"
        )
    return features


def cosine_normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows in float32 (cosine similarity is then a dot product)."""
    return F.normalize(x.float(), dim=-1)


def batched(items: Sequence[Any], batch_size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``batch_size`` elements."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def progress(iterable: Any, *, enabled: bool, desc: str, total: int | None = None) -> Any:
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` (disabled by default in every evaluator)."""
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False)


def encode_texts(
    encode: Callable[..., Any],
    tokenizer: Any,
    texts: Sequence[str],
    *,
    device: torch.device,
    batch_size: int,
    max_length: int,
    show_progress_bar: bool = False,
    desc: str = "encoding texts",
) -> torch.Tensor:
    """Tokenise ``texts`` in batches and return ``encode(**inputs)`` features as a float32 ``[N, D]``.

    Call inside :func:`evaluating`. ``encode`` is ``model`` (``.embeddings``) or ``model.get_text_features``.
    """
    chunks: list[torch.Tensor] = []
    n_batches = (len(texts) + batch_size - 1) // batch_size
    for batch in progress(batched(texts, batch_size), enabled=show_progress_bar, desc=desc, total=n_batches):
        inputs = tokenizer(
            list(batch), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        chunks.append(as_features(encode(**to_device(inputs, device)), "text encoder").float())
    if not chunks:
        raise ValueError("no texts to encode")
    return torch.cat(chunks)


def rows_at(dataset: Any, indices: range) -> list[Any]:
    """Rows ``dataset[i]`` for ``i`` in ``indices`` (works for lists and ``datasets.Dataset``)."""
    return [dataset[i] for i in indices]


def encode_rows(
    model: nn.Module,
    dataset: Any,
    collate_fn: Callable[[list[Any]], Mapping[str, Any]],
    *,
    device: torch.device,
    batch_size: int,
    encode: Callable[..., Any] | None = None,
    show_progress_bar: bool = False,
    desc: str = "encoding images",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed a labelled dataset: ``collate_fn(rows)`` gives ``{"labels": ..., **model_inputs}``.

    Every key other than ``labels`` is passed to ``encode`` (default ``model``). Returns float32
    embeddings ``[N, D]`` and long labels ``[N]``, both on ``device``. Call inside :func:`evaluating`.
    """
    encode = encode if encode is not None else model
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty")
    embs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    starts = range(0, n, batch_size)
    for start in progress(starts, enabled=show_progress_bar, desc=desc, total=len(starts)):
        batch = collate_fn(rows_at(dataset, range(start, min(start + batch_size, n))))
        if "labels" not in batch:
            raise KeyError(f"collate_fn output has keys {sorted(batch)}; a 'labels' key is required")
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        embs.append(as_features(encode(**to_device(inputs, device)), "image encoder").float())
        labels.append(torch.as_tensor(batch["labels"]).long().to(device))
    return torch.cat(embs), torch.cat(labels)


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    show_progress_bar: bool = False,
    desc: str = "encoding texts",
) -> torch.Tensor:
    """The exported embeddings (``model(**inputs).embeddings``, eval mode, no grad) of ``texts`` as a float32
    ``[N, D]`` tensor on the model's device, in the order of ``texts``; batches go longest first, so each
    is padded to little more than its own length. A ``SentenceTransformer`` (``tokenizer=None``) is asked
    through its ``encode``."""
    if tokenizer is None and callable(getattr(model, "encode", None)):
        out = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, show_progress_bar=show_progress_bar)
        return out.float()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    with evaluating(model):
        embeddings = encode_texts(
            model, tokenizer, [texts[i] for i in order], device=model_device(model), batch_size=batch_size,
            max_length=max_length, show_progress_bar=show_progress_bar, desc=desc,
        )  # fmt: skip
    restore = torch.empty(len(order), dtype=torch.long)
    restore[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return embeddings[restore.to(embeddings.device)]
