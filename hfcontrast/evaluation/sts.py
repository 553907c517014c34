"""Semantic textual similarity (STS) evaluation: cosine of sentence embeddings vs gold scores.

Spearman correlation over all pairs pooled (SentEval "all" setting, as reported by SimCSE,
Gao et al. 2021), computed by the packaged ``sts_correlation`` evaluate metric.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._common import cosine_normalize, encode_texts, evaluating, model_device
from .metrics import load_metric

_HEADER_ALIASES = {
    "sentence1": ("sentence1", "sentence_1", "sent1", "text1"),
    "sentence2": ("sentence2", "sentence_2", "sent2", "text2"),
    "score": ("score", "similarity_score", "similarity", "label"),
}


class STSFormatError(ValueError):
    """A malformed STS file; the message names the file and the line."""


def _parse_score(value: str, path: Path, line: int) -> float:
    try:
        score = float(value)
    except ValueError:
        raise STSFormatError(f"{path}, line {line}: score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise STSFormatError(f"{path}, line {line}: score {value!r} is not finite")
    return score


def _header_columns(fields: list[str]) -> dict[str, int] | None:
    """Map sentence1/sentence2/score to column positions if ``fields`` is such a header, else None."""
    lowered = [f.strip().lower() for f in fields]
    found: dict[str, int] = {}
    for key, aliases in _HEADER_ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                found[key] = lowered.index(alias)
                break
    return found if len(found) == 3 else None


def load_sts_file(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """Read an STS file into ``{"sentence1": [...], "sentence2": [...], "scores": [...]}``.

    Two layouts, told apart by sniffing the first line:

    * STS Benchmark: tab-separated ``genre, file, year, id, score, sentence1, sentence2[, extra...]``
      with no header; only the first seven columns are read and quotes are literal text.
    * A headed ``.csv`` (comma) or ``.tsv`` (tab) file with columns ``sentence1, sentence2, score``
      (in any order, other columns ignored), read with standard CSV quoting.

    Blank lines are skipped; a malformed row raises :class:`STSFormatError` naming its line.
    """
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        first = f.readline()
        if not first.strip():
            raise STSFormatError(f"{path}, line 1: file is empty or starts with a blank line")
        delimiter = "\t" if "\t" in first else ","
        header = _header_columns(next(csv.reader([first], delimiter=delimiter)))
        f.seek(0)
        if header is not None:
            reader = csv.reader(f, delimiter=delimiter)
            next(reader)
            positions = (header["sentence1"], header["sentence2"], header["score"])
            start = 2
        else:
            if delimiter != "\t":
                raise STSFormatError(
                    f"{path}, line 1: no 'sentence1,sentence2,score' header and not tab-separated STS-B rows"
                )
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            positions = (5, 6, 4)
            start = 1
        needed = max(positions) + 1
        out: dict[str, list[Any]] = {"sentence1": [], "sentence2": [], "scores": []}
        for line, row in enumerate(reader, start=start):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < needed:
                raise STSFormatError(
                    f"{path}, line {line}: expected at least {needed} columns, got {len(row)}"
                )
            s1, s2, score = (row[p] for p in positions)
            for column, text in (("sentence1", s1), ("sentence2", s2)):
                if not text.strip():
                    raise STSFormatError(f"{path}, line {line}: {column} is empty")
            out["sentence1"].append(s1.strip())
            out["sentence2"].append(s2.strip())
            out["scores"].append(_parse_score(score, path, line))
    if not out["scores"]:
        raise STSFormatError(f"{path}: no sentence pairs found")
    return out


class STSEvaluator:
    """Spearman/Pearson correlation between cosine(embedding1, embedding2) and gold similarity scores.

    Each unique sentence is embedded once (``model(**inputs).embeddings``), in batches sorted by
    length, with the model in eval mode under ``torch.inference_mode()`` on the model's device.
    ``last_predictions`` keeps the cosine of every pair from the latest call (CPU float tensor).
    ``prompt`` is prepended to every sentence (E5 / BGE instructions, e.g. ``"query: "``); each width in
    ``dims`` is also scored on the embeddings' first ``d`` values (Matryoshka prefixes, from the same
    forward pass): ``<name>_dim_<d>_spearman``.
    """

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        scores: Sequence[float],
        tokenizer: Any,
        *,
        name: str = "sts",
        batch_size: int = 64,
        max_length: int = 128,
        show_progress_bar: bool = False,
        prompt: str = "",
        dims: Sequence[int] = (),
    ) -> None:
        if not len(sentences1) == len(sentences2) == len(scores):
            raise ValueError(
                f"sentences1, sentences2 and scores must have one entry per pair; got lengths "
                f"{len(sentences1)}, {len(sentences2)}, {len(scores)}"
            )
        if len(scores) < 2:
            raise ValueError(f"need at least 2 pairs for a correlation, got {len(scores)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sentences1 = list(sentences1)
        self.sentences2 = list(sentences2)
        self.scores = [float(s) for s in scores]
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.max_length = max_length
        self.show_progress_bar = show_progress_bar
        self.prompt, self.dims = prompt, tuple(int(d) for d in dims)
        unique = list(dict.fromkeys(self.sentences1 + self.sentences2))
        self._unique = sorted(unique, key=len, reverse=True)
        position = {s: i for i, s in enumerate(self._unique)}
        self._index1 = torch.tensor([position[s] for s in self.sentences1], dtype=torch.long)
        self._index2 = torch.tensor([position[s] for s in self.sentences2], dtype=torch.long)
        self._metric: Any = None
        self.last_predictions: torch.Tensor | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], tokenizer: Any, **kwargs: Any) -> STSEvaluator:
        """Build from an STS file read by :func:`load_sts_file`; ``name`` defaults to ``"sts"``."""
        data = load_sts_file(path)
        return cls(data["sentence1"], data["sentence2"], data["scores"], tokenizer, **kwargs)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def metric(self) -> Any:
        """The ``sts_correlation`` evaluate metric, loaded (offline, from package data) on first use."""
        if self._metric is None:
            self._metric = load_metric("sts_correlation")
        return self._metric

    def embed(self, model: nn.Module) -> torch.Tensor:
        """The embeddings of the unique sentences (prompted), float32 on CPU."""
        with evaluating(model):
            return encode_texts(
                model,
                self.tokenizer,
                [self.prompt + text for text in self._unique] if self.prompt else self._unique,
                device=model_device(model),
                batch_size=self.batch_size,
                max_length=self.max_length,
                show_progress_bar=self.show_progress_bar,
                desc=f"{self.name}: encoding",
            ).cpu()

    def cosines(self, embeddings: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """Cosine of every pair, on the first ``width`` values of each embedding (all by default)."""
        embeddings = cosine_normalize(embeddings if width is None else embeddings[:, :width])
        return (embeddings[self._index1] * embeddings[self._index2]).sum(-1)

    def predict(self, model: nn.Module) -> torch.Tensor:
        """Cosine similarity of every pair, ``[num_pairs]`` float32 on CPU."""
        return self.cosines(self.embed(model))

    def _correlations(self, predictions: torch.Tensor, prefix: str) -> dict[str, float]:
        result = self.metric.compute(predictions=predictions.tolist(), references=self.scores)
        return {f"{prefix}_spearman": float(result["spearman"]), f"{prefix}_pearson": float(result["pearson"])}

    def __call__(self, model: nn.Module) -> dict[str, float]:
        embeddings = self.embed(model)
        predictions = self.cosines(embeddings)
        self.last_predictions = predictions
        metrics = self._correlations(predictions, self.name)
        for width in self.dims:
            metrics.update(self._correlations(self.cosines(embeddings, width), f"{self.name}_dim_{width}"))
        return metrics
