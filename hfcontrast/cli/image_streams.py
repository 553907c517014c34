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

import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from ..collators.decoding import load_rgb_image
from ..collators.validation import CollatorInputError
from ..demo import captions
from ..demo.image_text import ImageTextData, load_image_text_data
from ..demo.images import ImageSplits, _labels_as_classes, load_test_split
from .runs import image_stream_rows, training_rows

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
    if train_file and isinstance(stream.features[image_column], datasets.Image):
        stream = stream.cast_column(image_column, datasets.Image(decode=False))  # local files, decoded per view
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
        label = row.get(label_column)
        if not isinstance(label, int) or not 0 <= label < len(names):
            return {caption_column: None}  # a bad row: the row checks name it (no caption)
        return {caption_column: [captions.fill(t, names[label]) for t in captions.TRAIN_TEMPLATES]}

    return stream.map(caption)


def streamed_knn_splits(
    streams: Sequence[Any],
    *,
    name: str,
    validation_file: str | None,
    dataset_name: str | None,
    image_column: str,
    label_column: str,
    bank_size: int | None,
    max_eval_samples: int | None,
    seed: int = 0,
) -> ImageSplits:
    """The kNN evaluation of a streamed image run (see the module): ``train`` and ``knn_train`` are the memory bank,
    ``bank_size`` (default 10,000) labelled rows with a readable image from the start of the streams read in a
    seeded random order of their files (an image folder's files: a random draw of the folder, whatever the order of
    its classes; a table's rows: behind a buffer of 1,000); ``knn_test`` the labelled test rows."""
    test = load_test_split(validation_file, dataset_name, image_column=image_column, max_samples=max_eval_samples)
    features = streams[0].features
    if test is None or label_column not in test.column_names or label_column not in (features or {}):
        logger.warning("no labelled test split (validation_file with a %r column, and labels in the stream): no kNN "
                       "evaluation", label_column)  # fmt: skip
        return ImageSplits(datasets.Dataset.from_dict({}), None, None, name)
    bank_kind, test_kind = _label_kind(features[label_column]), _label_kind(test.features[label_column])
    if "names" in (bank_kind, test_kind) and bank_kind != test_kind and (bank_kind, test_kind) != ("classes", "names"):
        raise ValueError(f"{name}'s labels are class {bank_kind} and {validation_file or dataset_name}'s are class "
                         f"{test_kind} (column {label_column!r}): give both the same kind")  # fmt: skip
    rows: list[dict[str, Any]] = []
    unreadable, wanted = 0, bank_size if bank_size else 10_000
    shuffled = (stream.shuffle(seed=seed, buffer_size=1_000) for stream in streams)
    for row in itertools.islice(itertools.chain.from_iterable(shuffled), wanted):
        try:
            load_rgb_image(row[image_column], row=len(rows), column=image_column)
            rows.append(row)
        except CollatorInputError:  # the training stream's row checks name it (a bad row)
            unreadable += 1
    if unreadable:
        logger.warning("%s: %d of the %d rows read for the kNN memory bank have no readable image: left out",
                       name, unreadable, len(rows) + unreadable)  # fmt: skip
    bank = datasets.Dataset.from_list(rows, features=features)
    bank, test = _labels_as_classes(bank, test, label_column, train_name=name, test_name=validation_file or str(dataset_name))
    missing = sorted(set(test[label_column]) - set(bank[label_column]))
    if missing:
        logger.warning("%s: the kNN memory bank (%d rows) has no row of test classes %s: raise --knn_train_samples",
                       name, len(bank), missing[:10])  # fmt: skip
    return ImageSplits(bank, bank, test, name)


def image_text_training_data(args: Any, seed: int, bad_rows: str) -> tuple[Any, ImageTextData, str]:
    """The CLIP recipe's ``(training rows, evaluation data, training data's name)``: map-style rows (the demo's, or
    ``--train_file`` / ``--train_dir`` / ``--dataset_name`` loaded), ``--train_shards`` or ``--streaming`` (streams;
    the evaluation: :func:`image_text_evaluation`). A stream without captions but with class names (an image
    folder) gets captions from them."""
    if not args.streaming and not args.train_shards:
        data = load_image_text_data(
            train_source=args.train_file or args.train_dir, dataset_name=args.dataset_name,
            validation_file=args.validation_file, image_column=args.image_column, caption_column=args.caption_column,
            label_column=args.label_column, max_train_samples=args.max_train_samples,
            max_eval_samples=args.max_eval_samples, seed=seed,
        )  # fmt: skip
        return training_rows(data.train, None, args.shuffle_buffer_size, bad_rows), data, data.name
    if args.train_shards:
        if args.streaming:
            raise ValueError("--streaming reads --train_file, --train_dir or --dataset_name; --train_shards is streamed already")
        rows = training_rows(None, args.train_shards, args.shuffle_buffer_size, bad_rows)
        # without --validation_file, the demo loaded as before (its training rows too: what benchmarks/streams.py measured)
        return rows, image_text_evaluation(args, seed, args.max_train_samples), Path(args.train_shards).name
    streams = image_stream(args.train_file or args.train_dir, args.dataset_name, image_column=args.image_column,
                           max_samples=args.max_train_samples)  # fmt: skip
    (name, stream), = streams.items()
    if args.caption_column not in (stream.column_names or []):
        names = class_names(stream, args.label_column)
        if names is None:
            raise ValueError(f"{name}: no caption column {args.caption_column!r} and no class-label column "
                             f"{args.label_column!r} to build captions from (columns: {stream.column_names})")  # fmt: skip
        stream = with_class_captions(stream, names, label_column=args.label_column, caption_column=args.caption_column)
    rows = image_stream_rows({name: stream}, args.shuffle_buffer_size)
    return rows, image_text_evaluation(args, seed), Path(name).name


def image_text_evaluation(args: Any, seed: int, demo_train_samples: int | None = 2) -> ImageTextData:
    """The evaluation of a CLIP run that streams its training rows (``--streaming``, ``--train_shards``): all of
    ``--validation_file``, else the packaged demo's test split (its ``train``, cut to ``demo_train_samples``, is not
    used; ``name``: the evaluation data's)."""
    source = args.validation_file
    return load_image_text_data(
        train_source=source, dataset_name=None, validation_file=source, image_column=args.image_column,
        caption_column=args.caption_column, label_column=args.label_column,
        max_train_samples=1 if source else demo_train_samples, max_eval_samples=args.max_eval_samples, seed=seed,
    )  # fmt: skip


def _label_kind(feature: Any) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return "classes"  # ids with names: a test set's names are cast to them
    return "names" if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string") else "ids"
