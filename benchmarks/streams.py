"""Streamed training against map-style training: memory, throughput and the time a resume takes, text and images.

* **memory:** peak RSS of a streamed run over a small and a large data set at equal steps (text: SimCSE over
  JSON-lines files of 10,000 and 2,000,000 pairs; images: CLIP over WebDataset shards of 1,000 and 100,000
  image-caption samples); the ratio large / small should stay near 1 (target <= 1.1);
* **throughput:** the same run streamed and map-style (the small set loaded with ``datasets``), samples per
  second after two warm-up steps; streamed / map-style (target >= 0.9);
* **resume:** the seconds from ``trainer.train(resume_from_checkpoint=...)`` to the end of the first step after
  step N (the checkpoint's), against the seconds training took to reach N (target < 10 %).

Every run is its own process (``common.run_worker``) on one CPU thread; ``--reps`` rounds (default 3), the order of
streamed and map-style alternating; each ratio's 95 % interval over the rounds (``claims.ratio_interval``) decides
its verdict. Text: a random-init 2-layer BERT (128 wide), batches of 64 pairs, 150 steps. Images: the CLIP recipe's
default towers (a random ViT on 28 px, MiniLM's text tower locked), batches of 64, 60 steps; the images are 1,000
distinct noise squares, cycled through the large set with their own captions. ``--smoke``: tiny sizes, 4 steps.

    python benchmarks/streams.py            # about 25 minutes on one core (writing the large sets included)
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from claims import paired_interval, ratio_interval, verdict
from common import (
    REPO_ROOT,
    LoadSampler,
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    run_worker,
    save_results,
)

TASKS = {"text": {"small": 10_000, "large": 2_000_000, "steps": 150}, "clip": {"small": 1_000, "large": 100_000, "steps": 60}}


def write_pairs(path: Path, rows: int, seed: int = 0) -> str:
    """``rows`` JSON lines ``{"sent0": ..., "sent1": ...}`` of words drawn from the packaged Wikipedia sentences."""
    if not path.is_file():
        words = (REPO_ROOT / "hfcontrast" / "demo" / "data" / "wiki" / "wiki_sentences.txt").read_text(encoding="utf-8").split()
        rng = random.Random(seed)
        with path.open("w", encoding="utf-8") as handle:
            for _ in range(rows):
                first = rng.choices(words, k=rng.randint(6, 16))
                handle.write(json.dumps({"sent0": " ".join(first), "sent1": " ".join(first[: len(first) // 2 + 2])}) + "\n")
    return str(path)


def write_image_shards(folder: Path, rows: int, seed: int = 0) -> str:
    """``rows`` image-caption samples in shards of 500 (1,000 distinct 28 px noise squares, cycled); the pattern."""
    import numpy as np
    from PIL import Image

    from hfcontrast.shards import write_shards

    pattern = folder / "train-%05d.tar"
    if not folder.is_dir():
        rng = np.random.default_rng(seed)
        images = []
        for _ in range(min(rows, 1000)):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(buffer, format="PNG")
            images.append(buffer.getvalue())
        samples = ({"image": images[i % len(images)], "extension": ".png", "caption": f"a picture of item {i}, kind {i % 10}"}
                   for i in range(rows))  # fmt: skip
        folder.mkdir(parents=True)
        paths = write_shards(samples, str(pattern), samples_per_shard=500)
        return f"{folder}/train-{{00000..{len(paths) - 1:05d}}}.tar"
    last = max(int(p.stem.split("-")[1]) for p in folder.glob("train-*.tar"))
    return f"{folder}/train-{{00000..{last:05d}}}.tar"


def _text_setup(a: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    import datasets
    from transformers import AutoTokenizer, BertConfig

    from hfcontrast import ContrastiveTextConfig, ContrastiveTextModel
    from hfcontrast.collators import TextPairCollator
    from hfcontrast.collators.streams import StreamedRows
    from hfcontrast.demo import default_text_model
    from hfcontrast.objectives import SimCSE

    backbone = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
    model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, pooler="mean"))
    tokenizer = AutoTokenizer.from_pretrained(default_text_model())
    if a.mode == "map":
        train = datasets.load_dataset("json", data_files=a.data, split="train")
    else:
        stream = datasets.load_dataset("json", data_files=a.data, split="train", streaming=True)
        train = StreamedRows({a.data: stream}, shuffle_buffer_size=a.buffer)
    return model, train, TextPairCollator(tokenizer, "sent0", "sent1", max_length=32), SimCSE(0.05)


def _clip_setup(a: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    import datasets

    from hfcontrast.cli.clip import (
        DualModelArguments,
        build_dual_encoder_from,
        image_processor_for,
        image_views,
    )
    from hfcontrast.collators import ImageTextCollator, with_index_column
    from hfcontrast.collators.streams import StreamedRows
    from hfcontrast.objectives import CLIP
    from hfcontrast.shards import shard_streams
    from hfcontrast.trainer.defaults import INDEX_COLUMN

    model, tokenizer, _ = build_dual_encoder_from(DualModelArguments(), siglip=False)
    view, _ = image_views(model, image_processor_for(model, None), augment=False)
    collator = ImageTextCollator(view, tokenizer, seed=0, index_column=INDEX_COLUMN, image_column="image",
                                 caption_column="caption", max_length=32)  # fmt: skip
    streams = shard_streams(a.data)
    if a.mode == "map":  # the same samples, read into memory first
        rows = [row for stream in streams.values() for row in stream]
        table = {"image": [r["image"]["bytes"] for r in rows], "caption": [r["caption"] for r in rows]}
        features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
        train = with_index_column(datasets.Dataset.from_dict(table, features=features), INDEX_COLUMN)
    else:
        train = StreamedRows(streams, shuffle_buffer_size=a.buffer, index_column=INDEX_COLUMN)
    return model, train, collator, CLIP()


def worker(a: argparse.Namespace) -> None:
    import torch
    from common import peak_rss_mb
    from transformers import TrainerCallback

    from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, train, collator, objective = (_text_setup if a.task == "text" else _clip_setup)(a)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            times.append(time.perf_counter())
            if a.stop and state.global_step >= a.resume_at:
                control.should_training_stop = control.should_save = True

    args = ContrastiveTrainingArguments(output_dir=a.output, per_device_train_batch_size=a.batch, max_steps=a.steps,
                                        learning_rate=1e-4, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
                                        dataloader_drop_last=True, save_strategy="steps", save_steps=a.resume_at,
                                        logging_steps=1000, remove_unused_columns=False)  # fmt: skip
    trainer = ContrastiveTrainer(model=model, args=args, objective=objective, train_dataset=train, data_collator=collator,
                                 callbacks=[Clock()])  # fmt: skip
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint="latest" if a.resume else None)
    warm = min(2, len(times) - 1)
    result = {"task": a.task, "mode": a.mode, "rows": a.rows, "peak_rss_mb": peak_rss_mb(),
              "first_step_s": times[0] - start, "to_end_s": times[-1] - start, "steps": len(times),
              "samples_per_s": a.batch * (len(times) - 1 - warm) / (times[-1] - times[warm]) if len(times) > warm + 1 else 0.0}  # fmt: skip
    Path(a.result).write_text(json.dumps(result))


def measure(a: argparse.Namespace, task: str, folder: Path, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of: the small and the large set streamed, the small one map-style (alternating first), and
    a run stopped at the checkpoint then resumed."""
    sizes = TASKS[task]
    write = write_pairs if task == "text" else write_image_shards
    data = {n: write(folder / (f"{task}-{n}.jsonl" if task == "text" else f"{task}-{n}"), n) for n in (sizes["small"], sizes["large"])}
    steps = sizes["steps"]
    resume_at = steps // 2
    buffer = a.buffer if task == "text" else a.image_buffer

    def run(mode: str, rows: int, output: str, *flags: str) -> dict[str, Any]:
        argv = [__file__, "--worker", "--task", task, "--mode", mode, "--data", data[rows], "--rows", str(rows),
                "--output", output, "--steps", str(steps), "--batch", str(a.batch), "--buffer", str(buffer),
                "--resume_at", str(resume_at), *flags]  # fmt: skip
        return run_worker(argv, cwd=Path(__file__).parent)

    results = []
    for r in range(rounds):
        small, large = sizes["small"], sizes["large"]
        out = folder / f"{task}-round{r}"
        first, second = ("map", "stream") if r % 2 else ("stream", "map")
        runs = {mode: run(mode, small, str(out / f"{mode}-small")) for mode in (first, second)}
        runs["large"] = run("stream", large, str(out / "stream-large"))
        runs["straight"] = run("stream", small, str(out / "resume"), "--stop")
        runs["resumed"] = run("stream", small, str(out / "resume"), "--resume")
        results.append(runs)
        print(f"[{task} round {r}] {json.dumps({k: round(v['samples_per_s'], 1) for k, v in runs.items()})}", flush=True)
    settings = {**sizes, "batch": a.batch, "shuffle_buffer_size": buffer, "resume_at": resume_at, "rounds": rounds}
    if rounds < 2:  # a smoke run: no interval from one round
        return {"settings": settings, "rounds": results}
    memory = ratio_interval([r["large"]["peak_rss_mb"] for r in results], [r["stream"]["peak_rss_mb"] for r in results])
    speed = ratio_interval([r["stream"]["samples_per_s"] for r in results], [r["map"]["samples_per_s"] for r in results])
    fractions = [r["resumed"]["first_step_s"] / r["straight"]["to_end_s"] for r in results]
    resume = paired_interval(fractions, [0.0] * len(fractions))
    return {
        "settings": settings, "rounds": results,
        "memory_ratio_interval": memory, "memory_target": "met" if memory[2] <= 1.1 else f"not shown ({memory[1]:.3g} to {memory[2]:.3g} vs <= 1.1)",
        "throughput_ratio_interval": speed, "throughput_target": verdict(speed[1], speed[2], 0.9),
        "resume_fraction_interval": resume, "resume_target": "met" if resume[2] < 0.1 else f"not shown ({resume[1]:.3g} to {resume[2]:.3g} vs < 0.1)",
    }  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--task", choices=("text", "clip", "all"), default="all")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--buffer", type=int, default=10_000, help="text: rows in the shuffle buffer")
    parser.add_argument("--image_buffer", type=int, default=1_000, help="images: samples in the shuffle buffer")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("mode", "data", "output", "result"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("rows", "resume_at", "steps"):
        parser.add_argument(f"--{name}", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.worker:
        return worker(a)
    if apply_smoke(a, batch=4, buffer=16, image_buffer=8, reps=1):
        TASKS.update(text={"small": 40, "large": 400, "steps": 4}, clip={"small": 20, "large": 60, "steps": 4})
    folder = Path(tempfile.mkdtemp(prefix="bench_streams_"))
    tasks = ("text", "clip") if a.task == "all" else (a.task,)
    with LoadSampler() as load:
        results = {task: measure(a, task, folder, a.reps or 3) for task in tasks}
    rows = []
    for task, result in results.items():
        if "memory_ratio_interval" not in result:
            continue
        memory, speed, resume = (result[f"{k}_interval"] for k in ("memory_ratio", "throughput_ratio", "resume_fraction"))
        rows.append([task, f"{memory[0]:.3f} ({memory[1]:.3f}-{memory[2]:.3f})", result["memory_target"],
                     f"{speed[0]:.3f} ({speed[1]:.3f}-{speed[2]:.3f})", result["throughput_target"],
                     f"{resume[0]:.3f} ({resume[1]:.3f}-{resume[2]:.3f})", result["resume_target"]])  # fmt: skip
    if rows:  # a smoke run has one round: no interval, no table
        print(format_table(["task", "memory large/small", "<= 1.1", "speed stream/map", ">= 0.9", "resume fraction", "< 0.1"], rows))
    path = save_results(a.results_dir, "streams", {"machine": {**machine_info(), **load.summary()}, **results})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
