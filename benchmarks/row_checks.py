"""What checking every row before step 1 costs (``hfcontrast.collators.checks.check_rows``).

Two data sets of the demos: the 60,000 Fashion-MNIST training images (MultiViewCollator: every image's
PNG header is opened) and the 11,913 packaged Wikipedia sentences (UnsupervisedSimCSECollator). The
reference, measured in the same run, is what a training epoch spends on the same rows in the
collator alone (augmentation or tokenisation, no model): the check's cost as a fraction of one epoch's
data preparation.

    python benchmarks/row_checks.py            # both sets; --quick: 12,000 images
"""

from __future__ import annotations

import os
import sys
import time

from common import apply_smoke, base_parser, format_table, machine_info, save_results, wait_until_quiet


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _epoch(dataset, collator, batch_size: int) -> float:  # type: ignore[no-untyped-def]
    def run() -> None:
        for start in range(0, len(dataset), batch_size):
            collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])

    return _timed(run)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--num-proc", type=int, default=None, help="processes for the check (default: auto)")
    args = parser.parse_args()
    smoke = apply_smoke(args)
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    from transformers import AutoTokenizer

    from hfcontrast.augment import view_pipelines
    from hfcontrast.collators import MultiViewCollator, UnsupervisedSimCSECollator, with_index_column
    from hfcontrast.collators.checks import check_rows
    from hfcontrast.demo import WIKI_SENTENCES, data_file, default_text_model, load_text_dataset
    from hfcontrast.demo.fashion_mnist import load_fashion_mnist

    images = with_index_column(load_fashion_mnist("train", max_samples=256 if smoke else 12000 if args.quick else None))
    views = MultiViewCollator(
        "image", pipeline=view_pipelines("light", 28, (0.286,), (0.353,)), seed=0, index_column="row_index"
    )
    texts = load_text_dataset(data_file(WIKI_SENTENCES), max_samples=256 if smoke else None)
    sentences = UnsupervisedSimCSECollator(AutoTokenizer.from_pretrained(default_text_model()), "text", max_length=32)
    rows = []
    for name, dataset, collator, batch in (("Fashion-MNIST images", images, views, 128), ("Wikipedia sentences", texts, sentences, 64)):
        check = _timed(lambda d=dataset, c=collator, n=name: check_rows(d, c, source=n, num_proc=args.num_proc))
        epoch = _epoch(dataset, collator, batch)
        rows.append({"data": name, "rows": len(dataset), "check_s": round(check, 2), "collator_epoch_s": round(epoch, 2),
                     "check_over_epoch": round(check / epoch, 3)})  # fmt: skip
    print(format_table(
        ["data", "rows", "row check (s)", "one epoch in the collator (s)", "check / epoch"],
        [[r["data"], r["rows"], r["check_s"], r["collator_epoch_s"], r["check_over_epoch"]] for r in rows],
    ))  # fmt: skip
    path = save_results(args.results_dir, "row_checks", {"machine": machine_info(), "cpus": os.cpu_count(), "rows": rows})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
