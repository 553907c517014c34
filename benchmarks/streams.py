"""Streamed training against map-style training: memory, throughput and the time a resume takes.

* **memory:** peak RSS of a streamed SimCSE run over a small and a large synthetic JSON-lines file (10,000 and
  2,000,000 pairs by default) at equal steps; the ratio large / small should stay near 1 (target <= 1.1);
* **throughput:** the same run streamed and map-style (the small file loaded with ``datasets``), samples per
  second after warm-up; streamed / map-style (target >= 0.9);
* **resume:** the seconds from ``trainer.train(resume_from_checkpoint=...)`` to its first step after step N,
  against the seconds training took to reach N (target < 10 %).

Each run is its own process (``common.run_worker``): a random-init 2-layer BERT (128 wide), batches of 64 pairs,
one CPU thread. ``--smoke``: 20 and 200 rows, 4 steps.

    python benchmarks/streams.py            # about 15 minutes on 2 CPU cores (writing the large file included)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, apply_smoke, base_parser, format_table, machine_info, run_worker, save_results


def write_pairs(path: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` JSON lines ``{"sent0": ..., "sent1": ...}`` of words drawn from the packaged Wikipedia sentences."""
    if path.is_file():
        return path
    words = (REPO_ROOT / "hfcontrast" / "demo" / "data" / "wiki" / "wiki_sentences.txt").read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            first = rng.choices(words, k=rng.randint(6, 16))
            handle.write(json.dumps({"sent0": " ".join(first), "sent1": " ".join(first[: len(first) // 2 + 2])}) + "\n")
    return path


def worker(a: argparse.Namespace) -> None:
    import datasets
    import torch
    from common import peak_rss_mb
    from transformers import AutoTokenizer, BertConfig, TrainerCallback

    from hfcontrast import ContrastiveTextConfig, ContrastiveTextModel
    from hfcontrast.collators import TextPairCollator
    from hfcontrast.collators.streams import StreamedRows
    from hfcontrast.demo import default_text_model
    from hfcontrast.objectives import SimCSE
    from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

    torch.set_num_threads(1)
    torch.manual_seed(0)
    backbone = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, pooler="mean"))
    tokenizer = AutoTokenizer.from_pretrained(default_text_model())
    if a.mode == "map":
        train = datasets.load_dataset("json", data_files=a.data, split="train")
    else:
        train = StreamedRows({a.data: datasets.load_dataset("json", data_files=a.data, split="train", streaming=True)},
                             shuffle_buffer_size=a.buffer)  # fmt: skip
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            times.append(time.perf_counter())

    steps = a.resume_at if a.stop else a.steps
    args = ContrastiveTrainingArguments(output_dir=a.output, per_device_train_batch_size=a.batch, max_steps=a.steps,
                                        learning_rate=1e-4, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
                                        dataloader_drop_last=True, save_strategy="steps", save_steps=a.resume_at,
                                        logging_steps=1000)  # fmt: skip
    trainer = ContrastiveTrainer(model=model, args=args, objective=SimCSE(0.05), train_dataset=train,
                                 data_collator=TextPairCollator(tokenizer, "sent0", "sent1", max_length=32),
                                 callbacks=[Clock()])  # fmt: skip
    if a.stop:
        trainer.add_callback(_StopAt(steps))
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint="latest" if a.resume else None)
    warm = min(2, len(times) - 1)
    result = {"mode": a.mode, "rows": a.rows, "peak_rss_mb": peak_rss_mb(), "first_step_s": times[0] - start,
              "to_end_s": times[-1] - start,
              "samples_per_s": a.batch * (len(times) - 1 - warm) / (times[-1] - times[warm]) if len(times) > warm + 1 else 0.0}  # fmt: skip
    Path(a.result).write_text(json.dumps(result))


class _StopAt:
    def __new__(cls, step: int):  # type: ignore[no-untyped-def]
        from transformers import TrainerCallback

        class StopAt(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
                if state.global_step >= step:
                    control.should_training_stop = control.should_save = True

        return StopAt()


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--buffer", type=int, default=10_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("mode", "data", "output", "result"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("rows", "resume_at"):
        parser.add_argument(f"--{name}", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.worker:
        return worker(a)
    apply_smoke(a, small=200, large=2000, steps=4, batch=8, buffer=16)
    folder = Path(tempfile.mkdtemp(prefix="bench_streams_"))
    files = {n: write_pairs(folder / f"pairs-{n}.jsonl", n) for n in (a.small, a.large)}
    resume_at = a.steps // 2

    def run(mode: str, rows: int, output: str, *flags: str) -> dict:  # type: ignore[type-arg]
        argv = [__file__, "--worker", "--mode", mode, "--data", str(files[rows]), "--rows", str(rows), "--output", output,
                "--steps", str(a.steps), "--batch", str(a.batch), "--buffer", str(a.buffer), "--resume_at", str(resume_at), *flags]  # fmt: skip
        return run_worker(argv, cwd=Path(__file__).parent)

    runs = [run("stream", a.small, str(folder / "s-small")), run("stream", a.large, str(folder / "s-large")),
            run("map", a.small, str(folder / "m-small"))]  # fmt: skip
    straight = run("stream", a.small, str(folder / "r"), "--stop")
    resumed = run("stream", a.small, str(folder / "r"), "--resume")
    summary = {
        "memory_ratio_large_small": runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"],
        "throughput_ratio_stream_map": runs[0]["samples_per_s"] / runs[2]["samples_per_s"],
        "resume_fraction": resumed["first_step_s"] / straight["to_end_s"],
    }
    print(format_table(["run", "rows", "peak RSS MB", "samples/s"],
                       [[r["mode"], r["rows"], r["peak_rss_mb"], r["samples_per_s"]] for r in runs]))  # fmt: skip
    print(f"memory large / small {summary['memory_ratio_large_small']:.3f} (target <= 1.1); throughput streamed / "
          f"map-style {summary['throughput_ratio_stream_map']:.3f} (>= 0.9); resume reaches step {resume_at + 1} in "
          f"{resumed['first_step_s']:.1f} s against {straight['to_end_s']:.1f} s to train to step {resume_at}: "
          f"{summary['resume_fraction']:.3f} (< 0.1)")  # fmt: skip
    path = save_results(a.results_dir, "streams", {"machine": machine_info(), "runs": [*runs, straight, resumed], "summary": summary})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
