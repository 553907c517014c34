"""Mine hard negatives for (anchor, positive) pairs; the output trains supervised SimCSE directly.

    accelerate launch recipes/mine_negatives.py                     # offline demo: packaged SNLI pairs, MiniLM
    accelerate launch recipes/mine_negatives.py --train_file pairs.csv --corpus_file corpus.txt \\
        --num_negatives 3 --range_min 10 --range_max 100 --max_score_ratio 0.95 --output_file mined.jsonl
    accelerate launch recipes/simcse.py --train_file outputs/mined-negatives.jsonl   # negative_1..k detected

Several processes (``accelerate launch --num_processes N``) split the embedding and the search; the
main process writes the file. Wiring only: arguments -> dataset -> encoder -> mine_hard_negatives -> file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from accelerate import PartialState
from transformers import AutoTokenizer, HfArgumentParser

from hfcontrast.cli.flags import flag_errors
from hfcontrast.cli.runs import use_all_cpu_cores_when_alone
from hfcontrast.cli.text import load_text_encoder
from hfcontrast.collators import TextPairCollator
from hfcontrast.demo import SNLI_TRIPLETS, data_file, default_text_model, load_text_dataset
from hfcontrast.mining import mine_hard_negatives

logger = logging.getLogger("mine_negatives")


@dataclass
class MiningArguments:
    train_file: str | None = field(default=None, metadata={"help": "Pairs (.csv/.json/.jsonl); default: packaged SNLI."})
    anchor_column: str | None = field(default=None, metadata={"help": "Anchor column (default: detect)."})
    positive_column: str | None = field(default=None, metadata={"help": "Positive column (default: detect)."})
    corpus_file: str | None = field(default=None, metadata={"help": "Extra candidates: .txt (a text per line) or a table."})
    corpus_column: str | None = field(default=None, metadata={"help": "Text column of a table --corpus_file."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Encoder (default: packaged MiniLM, mean pooling)."})
    num_negatives: int = field(default=1, metadata={"help": "Negatives per pair: columns negative_1 .. negative_k."})
    range_min: int = field(default=0, metadata={"help": "Skip the range_min best candidates (rank window start)."})
    range_max: int = field(default=50, metadata={"help": "Consider candidates up to this rank."})
    margin: float | None = field(default=None, metadata={"help": "Skip candidates scoring above s(positive) - margin."})
    max_score_ratio: float | None = field(
        default=None, metadata={"help": "Skip candidates scoring above this fraction of s(positive), e.g. 0.95."}
    )
    batch_size: int = field(default=128, metadata={"help": "Texts per forward."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate texts to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N pairs."})
    use_faiss: bool | None = field(default=None, metadata={"help": "Default: faiss when installed; false: never."})
    output_file: str = field(default="outputs/mined-negatives.jsonl", metadata={"help": ".jsonl, .csv or .parquet."})
    overwrite_output: bool = field(default=False, metadata={"help": "Replace an existing --output_file."})


def main() -> None:
    (args,) = HfArgumentParser(MiningArguments).parse_args_into_dataclasses()
    state = PartialState()
    logging.basicConfig(level=logging.INFO if state.is_main_process else logging.WARNING)
    use_all_cpu_cores_when_alone()
    if os.path.exists(args.output_file) and not args.overwrite_output:
        raise FileExistsError(f"--output_file {args.output_file} exists: pass --overwrite_output or another path")
    suffix = os.path.splitext(args.output_file)[1]
    if suffix not in (".jsonl", ".csv", ".parquet"):
        raise ValueError(f"--output_file {args.output_file}: expected .jsonl, .csv or .parquet")
    train_file = args.train_file or data_file(SNLI_TRIPLETS)
    table = load_text_dataset(train_file)
    pairs = table.select(range(min(args.max_train_samples, len(table)))) if args.max_train_samples else table
    columns = TextPairCollator.from_column_names(
        None, pairs.column_names, anchor_column=args.anchor_column, positive_column=args.positive_column  # type: ignore[arg-type]
    ).columns
    anchor, positive = columns[0], columns[1]
    corpus: list[str] = []
    if args.corpus_file:
        extra = load_text_dataset(args.corpus_file, flag="--corpus_file")
        corpus = list(extra[args.corpus_column or extra.column_names[0]])
    elif args.train_file is None:  # the demo: every SNLI sentence is a candidate (all rows' contradictions too)
        corpus = list(dict.fromkeys(table["hard_neg"]))
    pairs = pairs.select_columns([anchor, positive])
    path = args.model_name_or_path or default_text_model()
    model = load_text_encoder(path, pooler="mean").to(state.device)
    mined = mine_hard_negatives(
        pairs, model, AutoTokenizer.from_pretrained(path), anchor_column=anchor, positive_column=positive,
        corpus=corpus, num_negatives=args.num_negatives, range_min=args.range_min, range_max=args.range_max,
        margin=args.margin, max_score_ratio=args.max_score_ratio, batch_size=args.batch_size,
        max_length=args.max_seq_length, use_faiss=args.use_faiss,
    )  # fmt: skip
    if state.is_main_process:
        os.makedirs(os.path.dirname(os.path.abspath(args.output_file)), exist_ok=True)
        {".jsonl": mined.to_json, ".csv": mined.to_csv, ".parquet": mined.to_parquet}[suffix](args.output_file)
        print(f"\nmined {args.num_negatives} negative(s) for {len(mined)} of {len(pairs)} pairs -> {args.output_file}")
    state.wait_for_everyone()


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
