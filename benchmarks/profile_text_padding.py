"""Diagnosis for the text benchmark: how much of a supervised-SimCSE step is padding?

    python benchmarks/profile_text_padding.py --quick

``TextPairCollator`` tokenises anchor, positive and hard negative in ONE call (one padding length for
all ``3B`` texts) and ``embed_views`` runs them as ONE concatenated forward. SNLI premises are about
twice as long as hypotheses, so every hypothesis row is padded to the longest premise.
sentence-transformers pads each column to its own longest text and runs one forward per column.

This script runs the same batches through the same model and loss both ways, in one process,
alternating, and reports the tokens the encoder processes and the CPU/wall time of forward+backward:

* ``shipped``: ``TextPairCollator`` + ``embed_views`` (as ``ContrastiveTrainer`` does);
* ``per_view``: each column tokenised with its own padding, one forward per view (as
  sentence-transformers does), same ``SimCSE`` objective;
* ``length_buckets``: all ``3B`` texts sorted by length and cut into chunks of ``B`` rows, each chunk
  padded to its own longest text (a possible fix that pads less than either).

A ``torch.profiler`` table of one step of each (top ops by self CPU time) goes to the JSON.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    SHARED_DATA,
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    median,
    ratio,
    save_results,
)

NAME = "profile_text_padding"


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--batches", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()
    apply_smoke(a, batches=2, batch_size=8)
    batches = a.batches or (6 if a.quick else 20)

    import datasets
    import torch
    from transformers import AutoTokenizer

    from hfcontrast import ContrastiveTextModel
    from hfcontrast.collators import TextPairCollator
    from hfcontrast.demo import default_text_model
    from hfcontrast.objectives import SimCSE
    from hfcontrast.trainer.views import embed_views

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    path = default_text_model()
    model = ContrastiveTextModel.from_backbone_pretrained(path, pooler="mean").train()
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = datasets.load_dataset("csv", data_files=str(SHARED_DATA / "nli" / "snli_dev_triplets.csv"), split="train")
    collator = TextPairCollator.from_column_names(tokenizer, data.column_names, max_length=a.max_length)
    objective = SimCSE(temperature=0.05)
    rows = list(data)
    random.Random(0).shuffle(rows)

    def shipped(features: list[dict[str, Any]]) -> tuple[Any, int]:
        batch = collator(features)
        tokens = sum(v["input_ids"].numel() for v in batch.values())
        return objective(embed_views(model, batch), batch).loss, tokens

    def per_view(features: list[dict[str, Any]]) -> tuple[Any, int]:
        batch, tokens, embeddings = {}, 0, {}
        for view, column in zip(("anchor", "positive", "negative"), collator.columns):
            batch[view] = dict(tokenizer([r[column] for r in features], padding=True, truncation=True,
                                         max_length=a.max_length, return_tensors="pt"))
            tokens += batch[view]["input_ids"].numel()
            embeddings[view] = model(**batch[view], use_head=True).embeddings
        return objective(embeddings, batch).loss, tokens

    def length_buckets(features: list[dict[str, Any]]) -> tuple[Any, int]:
        """All 3B texts sorted by token length, cut into chunks of B rows, each padded to its own
        longest text: one forward per chunk, rows put back in view order afterwards."""
        texts = [r[column] for column in collator.columns for r in features]
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=a.max_length)["input_ids"]]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out, tokens = [None] * len(texts), 0
        for start in range(0, len(order), a.batch_size):
            rows_ = order[start : start + a.batch_size]
            encoded = dict(tokenizer([texts[j] for j in rows_], padding=True, truncation=True,
                                     max_length=a.max_length, return_tensors="pt"))
            tokens += encoded["input_ids"].numel()
            for j, row in zip(rows_, model(**encoded, use_head=True).embeddings):
                out[j] = row
        stacked = torch.stack(out)  # type: ignore[arg-type]
        b = len(features)
        embeddings = dict(zip(("anchor", "positive", "negative"), stacked.split(b)))
        return objective(embeddings, {}).loss, tokens

    variants = {"shipped": shipped, "per_view": per_view, "length_buckets": length_buckets}
    measured: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": [], "tokens": []} for k in variants}
    for i in range(batches + 1):
        features = rows[i * a.batch_size : (i + 1) * a.batch_size]
        order = list(variants) if i % 2 == 0 else list(variants)[::-1]
        for name in order:
            wall, cpu = time.perf_counter(), time.process_time()
            loss, tokens = variants[name](features)
            loss.backward()
            model.zero_grad(set_to_none=True)
            if i > 0:  # batch 0 is warm-up
                measured[name]["cpu"].append(time.process_time() - cpu)
                measured[name]["wall"].append(time.perf_counter() - wall)
                measured[name]["tokens"].append(tokens)

    profiles = {}
    from torch.profiler import ProfilerActivity, profile

    features = rows[: a.batch_size]
    for name, fn in variants.items():
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            loss, _ = fn(features)
            loss.backward()
        model.zero_grad(set_to_none=True)
        profiles[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)

    summary = {name: {k: median(v) for k, v in m.items()} for name, m in measured.items()}
    summary["tokens_ratio"] = ratio(summary["shipped"]["tokens"], summary["per_view"]["tokens"])
    summary["cpu_ratio"] = ratio(summary["shipped"]["cpu"], summary["per_view"]["cpu"])
    summary["wall_ratio"] = ratio(summary["shipped"]["wall"], summary["per_view"]["wall"])
    summary["buckets_vs_per_view_cpu_ratio"] = ratio(summary["length_buckets"]["cpu"], summary["per_view"]["cpu"])
    summary["buckets_vs_per_view_tokens_ratio"] = ratio(summary["length_buckets"]["tokens"],
                                                        summary["per_view"]["tokens"])
    payload = {"name": NAME, "machine": machine_info(), "settings": vars(a) | {"batches": batches},
               "summary": summary, "profiles": profiles}
    save_results(a.results_dir, NAME, payload)
    for name, table in profiles.items():
        print(f"--- torch.profiler, one step, {name} ---\n{table}")
    print(f"{NAME}: MiniLM, batch {a.batch_size} triplets, max length {a.max_length}, {a.threads} thread(s), "
          f"median over {batches} batches (shipped / per_view > 1: padding costs)")
    print(format_table(
        ["variant", "tokens / step", "CPU s / step", "wall s / step"],
        [[n, summary[n]["tokens"], summary[n]["cpu"], summary[n]["wall"]] for n in variants]
        + [["shipped / per_view", summary["tokens_ratio"], summary["cpu_ratio"], summary["wall_ratio"]],
           ["length_buckets / per_view", summary["buckets_vs_per_view_tokens_ratio"],
            summary["buckets_vs_per_view_cpu_ratio"], float("nan")]],
    ))


if __name__ == "__main__":
    main()
