"""Which candidate columns are positives, negatives or ignored for each query row.

Known false negatives (Chuang et al. 2020 call them "sampling bias"; Huynh et al. 2022 "false
negatives") are candidates that are duplicates of the query's own example: the same id column, the
same text after normalisation (:func:`text_ids`) or the same image id. They are *ignored* (neither
positive nor negative). With labels (SupCon, Khosla et al. 2020) every candidate with the query's
label is a *positive*.

:class:`ColumnRoles` describes all of this in ``O(N + M)`` memory (indices, ids, labels) and builds the
dense ``[rows, M]`` masks for one chunk of rows at a time, so a loss computed in row chunks never
holds an ``N x M`` mask (see :func:`hfcontrast.losses.contrastive_loss`, the engine).
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import checking_values
from .guided import GuidedNegatives

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lowercase, NFKC-normalise, strip ASCII punctuation and collapse whitespace.

    ``"  Hello,   World! "`` and ``"hello world"`` normalise to the same string.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PUNCTUATION.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def text_ids(texts: Iterable[str]) -> Tensor:
    """Int64 ids of texts by their normalised form (:func:`normalize_text`): equal text, equal id.

    Ids are the first 63 bits of the BLAKE2b hash of the normalised text, so they are the same in
    every process and every run (unlike Python's salted ``hash``); collisions are negligible
    (``~n^2 / 2^64``). Always ``>= 0`` (``-1`` is reserved for "no id").
    """
    ids = []
    for text in texts:
        digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest()
        ids.append(int.from_bytes(digest, "little") >> 1)
    return torch.tensor(ids, dtype=torch.long)


def duplicate_mask(query_ids: Tensor, candidate_ids: Tensor) -> Tensor:
    """Bool ``[N, M]``: ``True`` where candidate ``j`` has the id of query ``i`` (ids ``< 0`` never match)."""
    _check_ids("query_ids", query_ids)
    _check_ids("candidate_ids", candidate_ids)
    q = query_ids.long()[:, None]
    return (q == candidate_ids.to(query_ids.device).long()[None, :]) & (q >= 0)


def same_label_mask(query_labels: Tensor, candidate_labels: Tensor) -> Tensor:
    """Bool ``[N, M]``: ``True`` where candidate ``j`` has the label of query ``i`` (labels ``< 0`` never match)."""
    return duplicate_mask(query_labels, candidate_labels)


def _check_ids(name: str, ids: Tensor) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be a 1-D integer tensor")


@dataclass(frozen=True)
class ColumnRoles:
    """Roles of the ``M`` candidate columns for ``N`` query rows, stored compactly.

    For row ``i`` and column ``j`` (later rules win over earlier ones, except that the row's own
    positive is never ignored):

    * positive if ``j == positive_index[i]``;
    * ignored if ``j == self_index[i]`` (the query itself among the candidates, e.g. SimCLR);
    * ignored if ``j < paired_columns`` and ``j != positive_index[i]`` (a block of row-paired columns,
      e.g. MoCo v2's in-batch keys, which are not negatives);
    * ignored if ``candidate_ids[j] == query_ids[i] >= 0`` (a known duplicate of the row's example);
    * ignored if ``ignore[i, j]`` (a dense ``[N, M]`` mask, for irregular cases; quadratic memory);
    * positive if ``candidate_labels[j] == query_labels[i] >= 0`` and not ignored (SupCon);
    * ignored if ``guide`` flags it (GISTEmbed: the guide scores it above the row's positive,
      :class:`~hfcontrast.losses.guided.GuidedNegatives`) and it is not a positive;
    * negative otherwise.

    ``weighted_index``/``weight``: ``weight`` is added to the logit of column ``weighted_index[i]``
    of row ``i`` (SimCSE's hard-negative weight, Gao et al. 2021); ``weight = 0`` disables it.

    ``indices_in_range``: the caller built the index tensors from aranges that fit the columns (the
    objectives' in-batch layouts), so :meth:`validate` checks their shapes only and never reads their
    values back to the host (on a GPU that read is a synchronisation per step).
    """

    positive_index: Tensor
    self_index: Tensor | None = None
    paired_columns: int = 0
    query_ids: Tensor | None = None
    candidate_ids: Tensor | None = None
    query_labels: Tensor | None = None
    candidate_labels: Tensor | None = None
    ignore: Tensor | None = None
    weighted_index: Tensor | None = None
    weight: float = 0.0
    indices_in_range: bool = False
    guide: GuidedNegatives | None = None

    @property
    def rows(self) -> int:
        return int(self.positive_index.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.query_labels is not None

    @property
    def masks_columns(self) -> bool:
        """True when some column may be ignored for some row (self, paired block, ids or a dense mask)."""
        return bool(
            self.self_index is not None
            or self.paired_columns
            or self.query_ids is not None
            or self.ignore is not None
            or self.guide is not None
        )

    def validate(self, columns: int) -> None:
        """Check shapes and ranges against ``N`` rows and ``M = columns`` candidates."""
        n, values = self.rows, not self.indices_in_range and checking_values()
        _index("positive_index", self.positive_index, n, 0, columns, values)
        if self.self_index is not None:
            _index("self_index", self.self_index, n, -1, columns, values)
            if values and bool((self.self_index == self.positive_index).any()):
                raise ValueError(
                    "self_index equals positive_index for some rows: a row cannot be its own positive"
                )
        if self.weighted_index is not None:
            _index("weighted_index", self.weighted_index, n, 0, columns, values)
        if not 0 <= self.paired_columns <= columns:
            raise ValueError(f"paired_columns must lie in [0, {columns}], got {self.paired_columns}")
        for kind, q, c in (
            ("ids", self.query_ids, self.candidate_ids),
            ("labels", self.query_labels, self.candidate_labels),
        ):
            if (q is None) != (c is None):
                raise ValueError(f"pass both query_{kind} and candidate_{kind}, or neither")
            if q is not None and c is not None:
                _check_ids(f"query_{kind}", q)
                _check_ids(f"candidate_{kind}", c)
                if q.shape[0] != n or c.shape[0] != columns:
                    raise ValueError(
                        f"query_{kind} must have {n} entries and candidate_{kind} {columns}, "
                        f"got {q.shape[0]} and {c.shape[0]}"
                    )
        if self.ignore is not None and (
            self.ignore.dtype != torch.bool or tuple(self.ignore.shape) != (n, columns)
        ):
            raise ValueError(f"ignore must be a bool [{n}, {columns}] tensor")
        if self.guide is not None and (self.guide.rows.shape[0] != n or self.guide.columns.shape[0] != columns):
            raise ValueError(
                f"the guide embeds {self.guide.rows.shape[0]} rows and {self.guide.columns.shape[0]} columns; "
                f"the loss has {n} and {columns}"
            )

    def masks(self, start: int, end: int, columns: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(positive, ignore)`` bool masks ``[end - start, columns]`` for rows ``start .. end-1``."""
        cols = torch.arange(columns, device=device)[None, :]
        own = cols == self.positive_index[start:end].to(device)[:, None]
        ignore = torch.zeros_like(own)
        if self.self_index is not None:
            ignore |= cols == self.self_index[start:end].to(device)[:, None]
        if self.paired_columns:
            ignore |= cols < self.paired_columns
        if self.query_ids is not None and self.candidate_ids is not None:
            ignore |= duplicate_mask(self.query_ids[start:end].to(device), self.candidate_ids)
        if self.ignore is not None:
            extra = self.ignore[start:end].to(device)
            if checking_values() and bool((extra & own).any()):
                raise ValueError("the dense ignore mask excludes a row's own positive")
            ignore |= extra
        ignore &= ~own
        positive = own
        if self.query_labels is not None and self.candidate_labels is not None:
            positive = own | (
                same_label_mask(self.query_labels[start:end].to(device), self.candidate_labels) & ~ignore
            )
        if self.guide is not None:
            ignore = ignore | (self.guide.mask(start, end, self.positive_index[start:end].to(device)) & ~positive)
        return positive, ignore


def _index(name: str, index: Tensor, n: int, low: int, upper: int, values: bool) -> None:
    if not isinstance(index, Tensor) or index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64/int32 tensor")
    if index.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(index.shape)}")
    if n and values:
        smallest, largest = torch.stack(torch.aminmax(index)).tolist()  # one reduction, one host read
        if smallest < low or largest >= upper:
            raise ValueError(f"{name} values must lie in [{low}, {upper}), got [{smallest}, {largest}]")
