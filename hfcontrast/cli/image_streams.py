"""``--streaming`` in the image and image-text recipes: ``--train_file`` (an image folder, or a ``.csv`` / ``.tsv`` /
``.json(l)`` of image paths) or ``--dataset_name`` read as a ``datasets`` stream, never loaded whole.

The trainer gets :class:`~hfcontrast.collators.streams.StreamedRows` over it, as for ``--train_shards``: each
process its share, a seeded shuffle buffer, rows checked as they arrive, an exact resume. The images stay undecoded
(``{"bytes", "path"}``, or a path) until the collator draws their views.

The evaluation needs labelled rows that fit in memory. The image recipes' kNN tests on ``--validation_file`` (or a
Hub dataset's ``test`` / ``validation`` split), with a memory bank of the stream's first ``--knn_train_samples``
labelled rows; without a test set there is no kNN, as for map-style data. The CLIP recipe evaluates on
``--validation_file``, or the packaged demo's test split without one, as with shards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from ..collators.images import load_rgb_image
from ..collators.validation import CollatorInputError
from ..demo import captions
from ..demo.image_text import ImageTextData, load_image_text_data
from ..demo.images import ImageSplits, _labels_as_classes, load_image_dataset

logger = logging.getLogger(__name__)

TABLE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


def image_stream(
    train_file: str | None, dataset_name: str | None, *, image_column: str, max_samples: int | None = None
) -> dict[str, Any]:
    """``{name: stream}``: ``train_file`` (an image folder: ``datasets``' ``imagefolder``, class sub-folders become
    ``label``; a table of image paths, relative ones against its folder) or the Hub dataset ``dataset_name``
    (split ``train``), streamed, cut to ``max_samples`` rows."""
    if train_file:
        path = Path(train_file)
        if path.is_dir():
            stream = datasets.load_dataset("imagefolder", data_dir=str(path), split="train", streaming=True)
        else:
            builder = TABLE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise ValueError(f"--train_file {train_file}: expected an image folder or a .csv/.tsv/.json/.jsonl file")
            if not path.is_file():
                raise FileNotFoundError(f"--train_file {train_file}: no such file")
            options = {"delimiter": "\t"} if builder == "csv" and path.suffix.lower() == ".tsv" else {}
            stream = datasets.load_dataset(builder, data_files=str(path), split="train", streaming=True, **options)
            stream = stream.map(_resolve_path, fn_kwargs={"column": image_column, "folder": str(path.parent)})
        name = train_file
    elif dataset_name:
        stream, name = datasets.load_dataset(dataset_name, split="train", streaming=True), dataset_name
    else:
        raise ValueError("--streaming reads --train_file or --dataset_name (the packaged demo data fits in memory)")
    if stream.features is None:
        stream = stream._resolve_features()  # reads the first rows to learn the columns
    if image_column not in (stream.column_names or []):
        raise ValueError(f"{name}: no image column {image_column!r} (columns: {stream.column_names}); pass --image_column")
    if isinstance(stream.features[image_column], datasets.Image):
        stream = stream.cast_column(image_column, datasets.Image(decode=False))  # decoded by the collator, per view
    return {name: stream.take(max_samples) if max_samples else stream}


def _resolve_path(row: dict[str, Any], column: str, folder: str) -> dict[str, Any]:
    value = row.get(column)
    if isinstance(value, str) and value and not os.path.isabs(value):
        return {column: os.path.join(folder, value)}
    return {}


def class_names(stream: Any, label_column: str) -> list[str] | None:
    """The stream's class names, when its label column is a ``ClassLabel`` (an image folder's sub-folders)."""
    feature = (stream.features or {}).get(label_column)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def with_class_captions(stream: Any, names: Sequence[str], *, label_column: str, caption_column: str) -> Any:
    """A labelled stream without captions gets, per row, its class name in every training template (as the
    map-style CLIP recipe builds them)."""

    def caption(row: dict[str, Any]) -> dict[str, Any]:
        return {caption_column: [captions.fill(t, names[int(row[label_column])]) for t in captions.TRAIN_TEMPLATES]}

    return stream.map(caption)


def streamed_knn_splits(
    stream: Any,
    *,
    name: str,
    validation_file: str | None,
    dataset_name: str | None,
    image_column: str,
    label_column: str,
    bank_size: int | None,
    max_eval_samples: int | None,
) -> ImageSplits:
    """The kNN evaluation of a streamed image run (see the module): ``train`` and ``knn_train`` are the memory bank,
    the stream's first ``bank_size`` (default 10,000) labelled rows with a readable image; ``knn_test`` the labelled test rows."""
    test = None
    if validation_file:
        test = load_image_dataset(validation_file, image_column=image_column, max_samples=max_eval_samples)
    elif dataset_name:
        for split in ("test", "validation"):
            try:
                test = load_image_dataset(None, dataset_name, split=split, image_column=image_column, max_samples=max_eval_samples)
                break
            except ValueError:  # no such split
                continue
    if test is None or label_column not in test.column_names or label_column not in (stream.column_names or []):
        logger.warning("no labelled test split (validation_file with a %r column, and labels in the stream): no kNN "
                       "evaluation", label_column)  # fmt: skip
        return ImageSplits(datasets.Dataset.from_dict({}), None, None, name)
    rows: list[dict[str, Any]] = []
    unreadable = 0
    for row in stream.take(bank_size or 10_000):
        try:
            load_rgb_image(row[image_column], row=len(rows), column=image_column)
            rows.append(row)
        except CollatorInputError:  # the training stream's row checks name it (a bad row)
            unreadable += 1
    if unreadable:
        logger.warning("%s: %d of the first %d rows have no readable image: the kNN memory bank leaves them out",
                       name, unreadable, len(rows) + unreadable)  # fmt: skip
    bank = datasets.Dataset.from_list(rows, features=stream.features)
    bank, test = _labels_as_classes(bank, test, label_column)
    kinds = {split: "names" if _is_text(data.features[label_column]) else "ids" for split, data in (("stream", bank), ("test", test))}
    if kinds["stream"] != kinds["test"]:
        raise ValueError(f"{name}'s labels are class {kinds['stream']} and {validation_file or dataset_name}'s are class "
                         f"{kinds['test']} (column {label_column!r}): give both the same kind")  # fmt: skip
    return ImageSplits(bank, bank, test, name)


def streamed_image_text(args: Any, seed: int) -> tuple[dict[str, Any], ImageTextData]:
    """``--streaming`` in the CLIP recipe: ``({name: stream}, evaluation data)``. A stream without captions but
    with class names (an image folder) gets captions from them; the evaluation is :func:`image_text_evaluation`."""
    source = args.train_file or args.train_dir
    streams = image_stream(source, args.dataset_name, image_column=args.image_column, max_samples=args.max_train_samples)
    (name, stream), = streams.items()
    if args.caption_column not in (stream.column_names or []):
        names = class_names(stream, args.label_column)
        if names is None:
            raise ValueError(f"{name}: no caption column {args.caption_column!r} and no class-label column "
                             f"{args.label_column!r} to build captions from (columns: {stream.column_names})")  # fmt: skip
        stream = with_class_captions(stream, names, label_column=args.label_column, caption_column=args.caption_column)
    data = image_text_evaluation(args, seed)
    return {name: stream}, ImageTextData(None, data.evaluation, data.pairs, data.class_names, Path(name).name)


def image_text_evaluation(args: Any, seed: int) -> ImageTextData:
    """The evaluation of a CLIP run that streams its training rows (``--streaming``, ``--train_shards``): all of
    ``--validation_file``, else the packaged demo's test split (its ``train`` is not used)."""
    source = args.validation_file
    return load_image_text_data(
        train_source=source, dataset_name=None, validation_file=source, image_column=args.image_column,
        caption_column=args.caption_column, label_column=args.label_column, max_train_samples=1 if source else 2,
        max_eval_samples=args.max_eval_samples, seed=seed,
    )  # fmt: skip


def _is_text(feature: Any) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
