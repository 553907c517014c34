"""Every training row checked before step 1, so a bad cell cannot end a run hours in.

A collator sees a row only when its batch is built, and ``datasets`` decodes an image before the
collator's own error handling can run. :func:`check_rows` walks the whole dataset first, with
``datasets.map`` (several processes for large data, a progress bar), using the collator's
:class:`RowSpec`: what each column must hold. Images are judged by their header (opened, not
decoded). Every bad row is reported at once, by its dataset row index, column and the data's source;
``policy="skip"`` drops them instead and writes them to ``rejected_rows.jsonl``.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import datasets
import numpy as np
from PIL import Image

from ..distributed import broadcast_object

logger = logging.getLogger(__name__)
_SHOWN = 20
_PARALLEL_ROWS = 20_000  # below this, one process is faster than starting several


@dataclass(frozen=True)
class RowSpec:
    """What the columns of a training row must hold."""

    text: tuple[str, ...] = ()  #: non-empty strings
    captions: tuple[str, ...] = ()  #: a non-empty string, or a non-empty list of them
    images: tuple[str, ...] = ()  #: a readable image: PIL image, path, bytes, ``{"bytes", "path"}``, array
    integers: tuple[str, ...] = ()  #: integers (ids, row indices)
    labels: tuple[str, ...] = ()  #: integers or non-empty strings
    numbers: tuple[str, ...] = ()  #: finite numbers, or non-empty lists of them (teacher scores, embeddings)
    bounded: tuple[tuple[str, float, float], ...] = ()  #: ``(column, low, high)``: a number in ``[low, high]``

    @property
    def columns(self) -> tuple[str, ...]:
        bounded = tuple(column for column, _, _ in self.bounded)
        names = (*self.text, *self.captions, *self.images, *self.integers, *self.labels, *self.numbers, *bounded)
        return tuple(dict.fromkeys(names))


class BadRowsError(ValueError):
    """Rows of the training data cannot become views; the message lists each by row and column."""


@dataclass
class CheckResult:
    """The dataset to train on (bad rows dropped under ``skip``) and how many rows were rejected."""

    dataset: Any
    rejected: int = 0


def _text_problem(value: Any) -> str | None:
    if value is None:
        return "text is None"
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    return None if value.strip() else "text is empty"


def _caption_problem(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        if not value:
            return "the list of captions is empty"
        for k, caption in enumerate(value):
            problem = _text_problem(caption)
            if problem is not None:
                return f"caption {k}: {problem}"
        return None
    return _text_problem(value)


def _header_problem(data: bytes | str, what: str) -> str | None:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            image.size  # noqa: B018  (the header is read; the pixels are not decoded)
    except Exception as error:
        return f"not an image Pillow can read: {what} ({type(error).__name__}: {error})"
    return None


ImageKind = Literal["pil", "array", "bytes", "path", "record"]


def image_kind(value: Any) -> ImageKind | None:
    """How an image value is held: a PIL image, a numpy array, encoded bytes (``bytes``, ``bytearray``,
    ``memoryview``), a path (``str``, ``os.PathLike``) or a ``datasets`` ``Image`` record (a mapping with
    ``bytes`` or ``path``); ``None`` for anything else. The row check and the collators both read it."""
    if isinstance(value, Image.Image):
        return "pil"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    if isinstance(value, str | os.PathLike):
        return "path"
    if isinstance(value, Mapping) and ("bytes" in value or "path" in value):
        return "record"
    return None


def _image_problem(value: Any) -> str | None:
    kind = image_kind(value)
    if value is None:
        return "image is None"
    if kind == "pil":
        return None
    if kind == "array":
        return None if value.ndim in (2, 3) and value.size else f"not an image array: shape {value.shape}"
    if kind == "record":  # datasets' Image feature, undecoded
        data, path = value.get("bytes"), value.get("path")
        if data is not None:
            return "the image data is empty (0 bytes)" if len(data) == 0 else _header_problem(bytes(data), "image bytes")
        if path:
            return _image_problem(str(path))
        return "the image has neither bytes nor a path"
    if kind == "bytes":
        return "the image data is empty (0 bytes)" if not len(value) else _header_problem(bytes(value), "image bytes")
    if kind == "path":
        path = os.fspath(value)
        if not os.path.isfile(path):
            return f"image file not found: {path}"
        if os.path.getsize(path) == 0:
            return f"image file is empty (0 bytes): {path}"
        return _header_problem(path, path)
    return f"expected an image (PIL image, path, bytes), got {type(value).__name__}"


def _integer_problem(value: Any) -> str | None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    return None if ok else f"expected an integer, got {value!r}"


def _label_problem(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else _integer_problem(value)


def _number_problem(value: Any) -> str | None:
    values = value if isinstance(value, list | tuple | np.ndarray) else [value]
    if len(values) == 0:
        return "expected a number or a list of numbers, got an empty list"
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int | float | np.number) or not np.isfinite(item):
            return f"expected finite numbers, got {item!r}"
    return None


def _bounded_problem(value: Any, low: float, high: float) -> str | None:
    if isinstance(value, list | tuple | np.ndarray):
        return f"expected one number, got {type(value).__name__}"
    problem = _number_problem(value)
    if problem is None and not low <= value <= high:
        return f"expected a score in [{low:g}, {high:g}], got {value!r}"
    return problem


def _row_problems(row: Mapping[str, Any], spec: RowSpec) -> list[tuple[str, str]]:
    checks = (
        (spec.text, _text_problem),
        (spec.captions, _caption_problem),
        (spec.images, _image_problem),
        (spec.integers, _integer_problem),
        (spec.labels, _label_problem),
        (spec.numbers, _number_problem),
    )
    found = []
    for columns, check in checks:
        for column in columns:
            problem = check(row[column])
            if problem is not None:
                found.append((column, problem))
    for column, low, high in spec.bounded:
        problem = _bounded_problem(row[column], low, high)
        if problem is not None:
            found.append((column, problem))
    return found


def _problems_of_batch(batch: Mapping[str, list[Any]], indices: list[int], spec: RowSpec) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"row": [], "column": [], "problem": []}
    for position, index in enumerate(indices):
        for column, problem in _row_problems({name: batch[name][position] for name in batch}, spec):
            out["row"].append(index)
            out["column"].append(column)
            out["problem"].append(problem)
    return out


def find_bad_rows(dataset: Any, spec: RowSpec, *, num_proc: int | None = None) -> list[tuple[int, str, str]]:
    """``(row, column, problem)`` for every bad cell of ``dataset`` (a ``datasets.Dataset`` or any
    sequence of row mappings), in row order."""
    if isinstance(dataset, datasets.Dataset):
        checked = dataset.select_columns(list(spec.columns))
        for column in spec.images:
            if isinstance(checked.features[column], datasets.Image):
                checked = checked.cast_column(column, datasets.Image(decode=False))
        if num_proc is None and len(checked) >= _PARALLEL_ROWS:
            num_proc = min(8, os.cpu_count() or 1)
        features = datasets.Features(
            {"row": datasets.Value("int64"), "column": datasets.Value("string"), "problem": datasets.Value("string")}
        )
        found = checked.map(
            _problems_of_batch, batched=True, batch_size=1000, with_indices=True, fn_kwargs={"spec": spec},
            remove_columns=checked.column_names, features=features,
            num_proc=num_proc if num_proc and num_proc > 1 else None, desc="Checking rows",
        )  # fmt: skip
        return sorted(zip(found["row"], found["column"], found["problem"]))
    return [(i, column, problem) for i in range(len(dataset)) for column, problem in _row_problems(dataset[i], spec)]


def _missing_columns(dataset: Any, spec: RowSpec) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None and len(dataset):
        names = list(dataset[0])
    return [column for column in spec.columns if names is not None and column not in names]


def _shown_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _shown_value(item) for key, item in value.items()}
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Image.Image | np.ndarray):
        return f"<{type(value).__name__}>"
    return value if isinstance(value, str | int | float | bool | list | type(None)) else repr(value)


def _write_rejected(path: str, dataset: Any, spec: RowSpec, bad: list[tuple[int, str, str]]) -> None:
    rows: dict[int, list[dict[str, str]]] = {}
    for row, column, problem in bad:
        rows.setdefault(row, []).append({"column": column, "problem": problem})
    raw = dataset.select_columns(list(spec.columns)) if isinstance(dataset, datasets.Dataset) else dataset
    for column in spec.images if isinstance(raw, datasets.Dataset) else ():
        if isinstance(raw.features[column], datasets.Image):
            raw = raw.cast_column(column, datasets.Image(decode=False))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        for row, problems in rows.items():
            values = {column: _shown_value(raw[row][column]) for column in spec.columns}
            stream.write(json.dumps({"row": row, "problems": problems, "values": values}) + "\n")


def check_rows(
    dataset: Any,
    collator: Any,
    *,
    source: str,
    policy: str = "error",
    num_proc: int | None = None,
    rejected_path: str | None = None,
    is_main_process: bool = True,
) -> CheckResult:
    """Check every row of ``dataset`` against ``collator.row_spec()``, on the main process (the others
    receive its findings). ``policy="error"``: raise :class:`BadRowsError` listing every bad row;
    ``"skip"``: drop them, writing them to ``rejected_path``; ``"unchecked"``: no check (the caller's
    choice, e.g. a collator of its own without a row spec). A collator without ``row_spec`` is an error
    otherwise; data without a length (streaming) is not checked here."""
    if policy == "unchecked":
        return CheckResult(dataset)
    spec_of = getattr(collator, "row_spec", None)
    if not callable(spec_of):
        raise BadRowsError(
            f"{source}: the collator {type(collator).__name__} has no row_spec(), so the rows cannot be checked "
            "before training: give it a row_spec() returning a RowSpec, or pass bad_rows='unchecked'"
        )
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        return CheckResult(dataset)
    spec: RowSpec = spec_of()
    missing = _missing_columns(dataset, spec)
    if missing:
        names = getattr(dataset, "column_names", None) or (sorted(dataset[0]) if len(dataset) else [])
        raise BadRowsError(f"{source}: no column {', '.join(map(repr, missing))} (columns: {names})")
    bad = find_bad_rows(dataset, spec, num_proc=num_proc) if is_main_process else None
    bad = broadcast_object(bad)
    assert isinstance(bad, list)
    if not bad:
        return CheckResult(dataset)
    rows = sorted({row for row, _, _ in bad})
    if policy == "error":
        lines = [f"  row {row}, column {column!r}: {problem}" for row, column, problem in bad[:_SHOWN]]
        more = f"\n  ... and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise BadRowsError(
            f"{source}: {len(rows)} of {len(dataset)} rows cannot be used (checked before training):\n"
            + "\n".join(lines) + more + "\nFix them, or pass bad_rows='skip' to train without them "
            "(they are written to rejected_rows.jsonl)"
        )
    if is_main_process and rejected_path is not None:
        _write_rejected(rejected_path, dataset, spec, bad)
    logger.warning("%s: skipping %d bad rows of %d (bad_rows='skip'); they are listed in %s",
                   source, len(rows), len(dataset), rejected_path)  # fmt: skip
    dropped = set(rows)
    keep = [i for i in range(len(dataset)) if i not in dropped]
    kept = dataset.select(keep) if isinstance(dataset, datasets.Dataset) else [dataset[i] for i in keep]
    return CheckResult(kept, len(rows))

