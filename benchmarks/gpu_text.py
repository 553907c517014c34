"""Supervised SimCSE on one CUDA GPU: hfcontrast vs sentence-transformers, bf16, with MFU and peak memory.

    python benchmarks/gpu_text.py            # on a CUDA machine: ~6 min on one H100/H200
    python benchmarks/gpu_text.py --smoke    # anywhere: a tiny BERT on the CPU, 2 steps, both libraries

A random bert-base (built from ``BertConfig()``, MiniLM's tokenizer) trains on the packaged SNLI triplets
(anchor, positive, hard negative), length 32, in bf16, every run in its own process (peak memory is that
process's ``torch.cuda.max_memory_allocated``), alternating A B A B:

* batch 64 and 256: ours ``ContrastiveTrainer`` + ``SimCSE`` (length buckets, and the merged forward as a second
  row) against ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss``;
* batch 2048: ours with GradCache (chunks of 128 rows) against ``CachedMultipleNegativesRankingLoss``
  (mini-batches of 128).

Throughput counts the steps after the warm-up, with the device synchronised at both ends. MFU is the model's
FLOPs over the card's bf16 peak: ``6 * N * T`` for the weights (``N`` non-embedding parameters, ``T`` the real,
unpadded tokens of the timed steps) plus ``12 * layers * hidden * sum(len^2)`` for attention; GradCache's extra
forward is work, not model FLOPs, so it is not counted. No registry or Hub access is needed on the GPU machine:
see "GPU benchmarks" in ``benchmarks/README.md`` for the wheels to carry.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
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
    run_worker,
    save_results,
)

NAME = "gpu_text"
NLI = SHARED_DATA / "nli" / "snli_dev_triplets.csv"
#: Dense bf16 peak FLOP/s (no sparsity) by device name.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
#: ``(batch, gradcache chunk or None, warm-up steps, timed steps)``.
CASES = [(64, None, 5, 30), (256, None, 5, 20), (2048, 128, 2, 6)]
SMOKE_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TARGETS = {"64": 1.15, "256": 1.3, "2048": 1.15}


def peak_flops(device_name: str) -> float | None:
    return next((flops for name, flops in PEAK_BF16.items() if name in device_name), None)


def model_flops(config: Any, lengths: list[int]) -> float:
    """Training FLOPs of a BERT encoder over rows of ``lengths`` real tokens: ``6 N T + 12 L H sum(len^2)``."""
    hidden, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    weights = layers * (4 * hidden * hidden + 2 * hidden * inter)  # attention projections + feed-forward
    return 6.0 * weights * sum(lengths) + 12.0 * layers * hidden * sum(n * n for n in lengths)


class _Timed:
    """Marks the host time at the end of the warm-up and of the last step, after synchronising the device, and
    counts the real tokens of the timed steps."""

    def __init__(self, warmup: int, steps: int) -> None:
        from transformers import TrainerCallback

        self.warmup, self.steps, self.start, self.end = warmup, steps, 0.0, 0.0
        outer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                import time

                import torch

                if state.global_step in (outer.warmup, outer.steps):
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    if state.global_step == outer.warmup:
                        outer.start = time.perf_counter()
                    else:
                        outer.end = time.perf_counter()

        self.callback = Callback()


def worker(a: Any) -> dict[str, Any]:
    import datasets
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hfcontrast.demo import default_text_model

    cuda = torch.cuda.is_available()
    steps = a.warmup + a.steps
    tokenizer = AutoTokenizer.from_pretrained(default_text_model())
    config = BertConfig(vocab_size=tokenizer.vocab_size, **(SMOKE_BERT if a.tiny else {}))
    data = datasets.load_dataset("csv", data_files=str(NLI), split="train").select_columns(["sent0", "sent1", "hard_neg"])
    while len(data) < a.batch * steps:
        data = datasets.concatenate_datasets([data, data])
    data = data.select(range(a.batch * steps))
    lengths = [min(a.max_length, len(ids)) for column in ("sent0", "sent1", "hard_neg")
               for ids in tokenizer(data[a.batch * a.warmup :][column])["input_ids"]]  # fmt: skip
    timed = _Timed(a.warmup, steps)
    common = dict(per_device_train_batch_size=a.batch, max_steps=steps, learning_rate=5e-5, bf16=cuda, use_cpu=not cuda,
                  logging_steps=1000, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_drop_last=True,
                  dataloader_num_workers=4 if cuda else 0, seed=0)  # fmt: skip
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        if a.lib == "ours":
            from hfcontrast import (
                ContrastiveTextConfig,
                ContrastiveTextModel,
                ContrastiveTrainer,
                ContrastiveTrainingArguments,
                SimCSE,
            )
            from hfcontrast.collators import TextPairCollator

            model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=config, pooler="mean"))
            args = ContrastiveTrainingArguments(output_dir=folder, gradcache_chunk_size=a.chunk, view_forwards=a.forwards, **common)
            collator = TextPairCollator.from_column_names(tokenizer, data.column_names, max_length=a.max_length)
            trainer = ContrastiveTrainer(model=model, args=args, objective=SimCSE(0.05), train_dataset=data, data_collator=collator,
                                         processing_class=tokenizer, callbacks=[timed.callback])  # fmt: skip
        else:
            from sentence_transformers import (
                SentenceTransformer,
                SentenceTransformerTrainer,
                SentenceTransformerTrainingArguments,
            )
            from sentence_transformers.sentence_transformer.losses import (
                CachedMultipleNegativesRankingLoss,
                MultipleNegativesRankingLoss,
            )

            BertModel(config, add_pooling_layer=False).save_pretrained(folder + "/bert")
            tokenizer.save_pretrained(folder + "/bert")
            model = SentenceTransformer(folder + "/bert", device="cuda" if cuda else "cpu")
            model.max_seq_length = a.max_length
            loss = (MultipleNegativesRankingLoss(model, scale=20.0) if a.chunk is None
                    else CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=a.chunk))  # fmt: skip
            args = SentenceTransformerTrainingArguments(output_dir=folder + "/out", **common)
            trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss, callbacks=[timed.callback])
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    seconds = timed.end - timed.start
    flops = model_flops(config, lengths)
    peak = peak_flops(torch.cuda.get_device_name()) if cuda else None
    return {
        "lib": a.lib, "batch": a.batch, "chunk": a.chunk, "forwards": a.forwards if a.lib == "ours" else None,
        "samples_per_s": a.steps * a.batch / seconds, "seconds": seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "model_tflops_per_s": flops / seconds / 1e12, "mfu": flops / seconds / peak if peak else None,
        "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
    }  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--lib", choices=("ours", "st"))
    parser.add_argument("--batch", type=int)
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--forwards", default="length_buckets")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer BERT (the smoke run)")
    parser.add_argument("--result")
    a = parser.parse_args()
    if a.worker:
        Path(a.result).write_text(json.dumps(worker(a)))
        return
    smoke = apply_smoke(a, reps=1)
    reps = a.reps or 2
    cases = [(8, None, 1, 1), (16, 4, 1, 1)] if smoke else CASES
    runs = []
    for batch, chunk, warmup, steps in cases:
        variants = [("st", "-"), ("ours", "length_buckets")] + ([("ours", "merged")] if chunk is None else [])
        for rep in range(reps):
            for lib, forwards in variants if rep % 2 == 0 else variants[::-1]:
                argv = [__file__, "--worker", "--lib", lib, "--batch", str(batch), "--warmup", str(warmup), "--steps", str(steps),
                        "--forwards", forwards, "--max-length", str(a.max_length)]  # fmt: skip
                argv += (["--chunk", str(chunk)] if chunk else []) + (["--tiny"] if smoke else [])
                run = run_worker(argv)
                runs.append(run)
                print(f"[batch {batch} {lib} {forwards}] {run['samples_per_s']:.0f} samples/s, MFU {run['mfu']}, "
                      f"peak {run['peak_memory_gib']} GiB", flush=True)  # fmt: skip
    rows, summary = [], {}
    for batch, chunk, _, _ in cases:
        peer = [r for r in runs if r["batch"] == batch and r["lib"] == "st"]
        for forwards in ("length_buckets", "merged"):
            ours = [r for r in runs if r["batch"] == batch and r["lib"] == "ours" and r["forwards"] == forwards]
            if not ours:
                continue
            speed = ratio(median(r["samples_per_s"] for r in ours), median(r["samples_per_s"] for r in peer))
            key = f"{batch}" + ("" if forwards == "length_buckets" else f"-{forwards}")
            summary[key] = {"ratio": speed, "target": TARGETS.get(str(batch)), "chunk": chunk,
                            "mfu": median(r["mfu"] for r in ours) if ours[0]["mfu"] is not None else None,
                            "peak_memory_ratio": ratio(median(r["peak_memory_gib"] or 0 for r in ours),
                                                       median(r["peak_memory_gib"] or 0 for r in peer))}  # fmt: skip
            rows.append([batch, chunk or "-", forwards, median(r["samples_per_s"] for r in peer),
                         median(r["samples_per_s"] for r in ours), speed, summary[key]["mfu"] or float("nan"),
                         summary[key]["peak_memory_ratio"]])  # fmt: skip
    print(format_table(["batch", "GradCache chunk", "ours forwards", "ST samples/s", "ours samples/s", "ratio", "ours MFU",
                        "peak memory ours/ST"], rows))  # fmt: skip
    info = machine_info() | {"device": runs[0]["device"] if runs else None}
    save_results(Path(a.results_dir), NAME, {"name": NAME, "machine": info, "runs": runs, "summary": summary, "reps": reps})


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
