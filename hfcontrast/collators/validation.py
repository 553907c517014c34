"""Row validation shared by every collator: each error names the row and the column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class CollatorInputError(ValueError):
    """A dataset row cannot be turned into views; the message names the row and the column."""


def check_batch_size(features: Sequence[Any], minimum: int = 2, *, what: str = "in-batch negatives") -> None:
    """A contrastive batch needs at least ``minimum`` rows, or there is nothing to contrast against."""
    if len(features) < minimum:
        raise CollatorInputError(
            f"batch has {len(features)} row(s) but at least {minimum} are needed for {what}; "
            "increase per_device_train_batch_size or set dataloader_drop_last=True"
        )


def require_column(row: Mapping[str, Any], column: str, position: int) -> Any:
    """Return ``row[column]`` or raise naming the row, the column and the columns that exist."""
    if column not in row:
        raise CollatorInputError(
            f"row {position}: missing column {column!r}; the row has columns {sorted(row)}"
        )
    return row[column]


def require_text(row: Mapping[str, Any], column: str, position: int) -> str:
    """Return a non-empty string from ``row[column]``; None, non-strings and blank text are errors."""
    value = require_column(row, column, position)
    if value is None:
        raise CollatorInputError(f"row {position}, column {column!r}: text is None")
    if not isinstance(value, str):
        raise CollatorInputError(
            f"row {position}, column {column!r}: expected a string, got {type(value).__name__}"
        )
    if not value.strip():
        raise CollatorInputError(f"row {position}, column {column!r}: text is empty")
    return value
