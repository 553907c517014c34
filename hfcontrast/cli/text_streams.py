"""``--streaming`` in the text recipe: the files (or Hub datasets) as ``datasets`` streams, and one stream of rows
for the trainer (:class:`~hfcontrast.collators.streams.StreamedRows`), or several mixed batch by batch
(:class:`~hfcontrast.collators.stream_mix.MixedStreams`) under ``--multi_dataset_policy``:

* ``round_robin``: the streams in turn;
* ``proportional`` / ``temperature``: each batch's source drawn with ``p_s ∝ n_s^(1/T)`` (``T = 1`` for
  proportional), ``n_s`` the rows of stream ``s``, counted once before training for a local file (a pass over
  its lines, not a load) and read from the dataset's card for a Hub dataset. A stream has no epoch of shuffled
  groups as map-style data has, so ``proportional`` is the draw, not a permutation.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from ..collators import MultiSourceCollator
from ..collators.stream_mix import MixedStreams
from ..collators.streams import StreamedRows

if TYPE_CHECKING:
    from .text import TextDataArguments

logger = logging.getLogger(__name__)

STREAM_BUILDERS = {".txt": "text", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


def text_streams(args: TextDataArguments) -> dict[str, Any]:
    """``--streaming``: each ``--train_file`` (``.txt``: column ``text``, ``.csv``/``.tsv``, ``.json(l)``) or
    ``--dataset_name`` as a ``datasets`` streaming ``IterableDataset``, cut to ``--max_train_samples``."""
    names = args.train_file or args.dataset_name
    if not names:
        raise ValueError("--streaming reads --train_file or --dataset_name (the packaged demo data fits in memory)")
    streams = {}
    for name in names:
        if args.train_file:
            builder = STREAM_BUILDERS.get(Path(name).suffix.lower())
            if builder is None:
                raise ValueError(f"--train_file {name}: expected .txt, .csv, .tsv, .json or .jsonl")
            if not Path(name).is_file():
                raise FileNotFoundError(f"--train_file {name}: no such file")
            options = {"delimiter": "\t"} if name.lower().endswith(".tsv") else {}
            stream = datasets.load_dataset(builder, data_files=name, split="train", streaming=True, **options)
            if builder == "text":  # one string column, named as the map-style reader names it
                stream = stream.cast(datasets.Features({"text": datasets.Value("string")}))
        else:
            stream = datasets.load_dataset(name, split="train", streaming=True)
        if stream.column_names is None:
            stream = stream._resolve_features()  # reads the first rows to learn the columns
        streams[name] = stream.take(args.max_train_samples) if args.max_train_samples else stream
    return streams


def stream_rows_count(name: str, stream: Any, local: bool) -> int:
    """The rows of stream ``name``: a local file's (blank lines aside; a CSV's records after its header; a ``.json``
    file must hold one object per line), or a Hub dataset's ``train`` split as its card gives it."""
    if not local:
        splits = getattr(getattr(stream, "info", None), "splits", None) or {}
        if "train" not in splits or not splits["train"].num_examples:
            raise ValueError(f"--dataset_name {name}: its card gives no size for the 'train' split, which "
                             "--multi_dataset_policy proportional/temperature weigh by; use round_robin")  # fmt: skip
        return int(splits["train"].num_examples)
    path = Path(name)
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() in (".csv", ".tsv"):
            records = csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            return max(0, sum(1 for record in records if record) - 1)
        if path.suffix.lower() == ".json" and handle.read(1).lstrip() == "[":
            raise ValueError(f"--train_file {name}: a JSON array has no size without loading it; write it as JSON "
                             "lines (one object per line) to weigh it by its size, or use round_robin")  # fmt: skip
        handle.seek(0)
        return sum(1 for line in handle if line.strip())


def text_stream_rows(
    sources: dict[str, Any], collators: dict[str, Any], args: TextDataArguments, mix: str | None, temperature: float = 1.0
) -> tuple[Any, Any]:
    """``--streaming``: the files as one stream, read in turn (the files of one dataset: the same columns), or with
    ``--multi_dataset_policy`` mixed batch by batch, each batch from one file (the module's policies). The trainer
    sets each process's share and the checks."""
    def rows(named: dict[str, Any]) -> StreamedRows:
        blank = ("text",) if all(name.lower().endswith(".txt") for name in named) else ()
        return StreamedRows(named, shuffle_buffer_size=args.shuffle_buffer_size, drop_blank=blank)

    if mix is None or len(sources) == 1:
        columns = {name: collator.columns for name, collator in collators.items()}
        if len(set(columns.values())) > 1:
            raise ValueError(f"--streaming reads its files as one stream, so they need the same columns, got {columns}; "
                             "--multi_dataset_policy round_robin (or proportional, temperature) mixes files of other "
                             "columns batch by batch")  # fmt: skip
        return rows(sources), next(iter(collators.values()))
    streams = {name: rows({name: source}) for name, source in sources.items()}
    if mix == "round_robin":
        return MixedStreams(streams), MultiSourceCollator(collators)
    if mix not in ("proportional", "temperature"):
        raise ValueError(f"--multi_dataset_policy must be proportional, round_robin or temperature, got {mix!r}")
    if temperature <= 0:
        raise ValueError(f"--multi_dataset_temperature must be > 0, got {temperature}")
    sizes = {name: stream_rows_count(name, source, bool(args.train_file)) for name, source in sources.items()}
    if args.max_train_samples:
        sizes = {name: min(size, args.max_train_samples) for name, size in sizes.items()}
    if not all(sizes.values()):
        raise ValueError(f"--multi_dataset_policy {mix}: a stream has no rows ({sizes})")
    power = 1.0 if mix == "proportional" else 1.0 / temperature
    weights = [float(size) ** power for size in sizes.values()]
    logger.info("streams mixed by %s: rows %s, batch shares %s", mix, sizes,
                [round(w / sum(weights), 4) for w in weights])  # fmt: skip
    return MixedStreams(streams, policy="weighted", weights=weights), MultiSourceCollator(collators)
