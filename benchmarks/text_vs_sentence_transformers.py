"""Supervised SimCSE with hfcontrast vs sentence-transformers' MultipleNegativesRankingLoss (and CoSENT vs CoSENT).

    python benchmarks/text_vs_sentence_transformers.py --quick                # ~8 min on 2 idle CPU cores
    python benchmarks/text_vs_sentence_transformers.py                        # full
    python benchmarks/text_vs_sentence_transformers.py --quick --task cosent  # -> cosent_vs_sentence_transformers

``--task cosent``: both libraries train MiniLM with CoSENT (Su 2022, scale 20) on the packaged STS-B train pairs
(scores / 5): ``CoSENTLoss`` against ``ScoredPairs("cosent")`` with ``TextPairCollator(score_column=...)``;
everything else below holds for it too.

Both libraries start from the same weights (all-MiniLM-L6-v2, and a small random BERT built from a
config with MiniLM's tokenizer, saved once and loaded by both), train on the same SNLI triplets
(anchor, positive, hard negative) with the same batch, learning rate, steps, seed, max length,
optimizer (AdamW, linear decay, no warm-up, no weight decay) and the same loss (in-batch + hard
negatives, cosine, scale 20 == temperature 0.05):

* peer: ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` on ``SentenceTransformer(path)``
  (MiniLM: its own sentence-transformers config, mean pooling);
* ours: ``ContrastiveTrainer`` + ``SimCSE`` (``TextPairCollator``, mean pooling).

Every run is its own process (peak RSS = its ``ru_maxrss``), runs alternate A B A B, and the
medians are reported. Throughput counts only steps after the warm-up, end of step to end of step.
Both exported models are scored on STS-B dev by the same code here: ``SentenceTransformer(path)``
encodes (max length 128), cosine, ``scipy.stats.spearmanr``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import interval_text, interval_verdicts
from common import (
    SEEDS,
    SHARED_DATA,
    LoadSampler,
    LoopTimer,
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    median,
    peak_rss_mb,
    plot_side_by_side,
    ratio,
    run_worker,
    save_results,
    step_timer_callback,
    wait_until_quiet,
    write_result,
)

NAME = "text_vs_sentence_transformers"
NLI = SHARED_DATA / "nli" / "snli_dev_triplets.csv"
STS_DEV = SHARED_DATA / "stsb" / "sts-dev.csv"
STS_TRAIN = SHARED_DATA / "stsb" / "sts-train.csv"
#: Per task: the results' name, the training data, the targets (throughput ratio, Spearman delta in points),
#: the models and the quick run's steps.
TASKS: dict[str, dict[str, Any]] = {
    "nli": {"name": NAME, "data": NLI, "throughput": 1.15, "delta": -0.5, "models": ["minilm", "random-bert"], "quick_steps": 12},
    "cosent": {"name": "cosent_vs_sentence_transformers", "data": STS_TRAIN, "throughput": 1.0, "delta": -0.3,
               "models": ["minilm"], "quick_steps": 60},
}  # fmt: skip
RANDOM_BERT = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "max_position_embeddings": 512,
}


# ----------------------------------------------------------------------------- workers
def _common_args(a: argparse.Namespace, output_dir: str) -> dict[str, Any]:
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": a.batch_size,
        "learning_rate": a.lr,
        "max_steps": a.steps,
        "seed": a.seed,
        "data_seed": a.seed,
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "lr_scheduler_type": "linear",
        "logging_steps": 10,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_drop_last": True,
        "dataloader_num_workers": 0,
        "use_cpu": True,
    }


def train_worker(a: argparse.Namespace) -> dict[str, Any]:
    import datasets
    import torch
    from transformers import set_seed

    if a.threads:
        torch.set_num_threads(a.threads)
    set_seed(a.seed)
    cosent = a.task == "cosent"
    if cosent:  # sentence1, sentence2, score (0-5) from STS-B's layout
        from hfcontrast.demo.text import load_text_dataset

        data = load_text_dataset(str(STS_TRAIN))
    else:
        data = datasets.load_dataset("csv", data_files=str(NLI), split="train")
    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as scratch:
        if a.lib == "ours":
            from transformers import AutoTokenizer

            from hfcontrast import ContrastiveTextModel
            from hfcontrast.collators import TextPairCollator
            from hfcontrast.objectives import ScoredPairs, SimCSE
            from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

            model = ContrastiveTextModel.from_backbone_pretrained(a.model_path, pooler="mean")
            tokenizer = AutoTokenizer.from_pretrained(a.model_path)
            scored = {"score_column": "score", "score_scale": 5.0} if cosent else {}
            trainer = ContrastiveTrainer(
                model=model,
                args=ContrastiveTrainingArguments(**_common_args(a, scratch), view_forwards=a.view_forwards),
                objective=ScoredPairs("cosent", scale=a.scale) if cosent else SimCSE(temperature=1.0 / a.scale),
                train_dataset=data,
                data_collator=TextPairCollator.from_column_names(
                    tokenizer, data.column_names, max_length=a.max_length, **scored
                ),
                processing_class=tokenizer,
                callbacks=[step_timer_callback(timer)],
            )
        else:
            from sentence_transformers import (
                SentenceTransformer,
                SentenceTransformerTrainer,
                SentenceTransformerTrainingArguments,
            )
            from sentence_transformers.sentence_transformer.losses import (
                CoSENTLoss,
                MultipleNegativesRankingLoss,
            )

            model = SentenceTransformer(a.model_path, device="cpu")
            model.max_seq_length = a.max_length
            if cosent:
                train = data.map(lambda row: {"score": row["score"] / 5.0})
                loss: Any = CoSENTLoss(model, scale=a.scale)
            else:
                train, loss = data.select_columns(["sent0", "sent1", "hard_neg"]), MultipleNegativesRankingLoss(model, scale=a.scale)
            trainer = SentenceTransformerTrainer(
                model=model,
                args=SentenceTransformerTrainingArguments(**_common_args(a, scratch)),
                train_dataset=train,
                loss=loss,
                callbacks=[step_timer_callback(timer)],
            )
        result = trainer.train()
        rss = peak_rss_mb()
        if a.lib == "ours":
            trainer.save_model(a.export)
        else:
            model.save(a.export)
    return {
        "lib": a.lib,
        "peak_rss_mb": rss,
        "train_loss": float(result.training_loss),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **timer.throughput(a.warmup, a.batch_size),
    }


def sts_pairs(path: Path = STS_DEV) -> tuple[list[str], list[str], list[float]]:
    """STS-B dev: tab-separated genre, file, year, id, score, sentence1, sentence2 (extra columns ignored)."""
    first, second, scores = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) < 7:
            continue
        scores.append(float(fields[4]))
        first.append(fields[5])
        second.append(fields[6])
    return first, second, scores


def eval_worker(a: argparse.Namespace) -> dict[str, Any]:
    """The one STS evaluation both libraries' exports go through."""
    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    import hfcontrast  # noqa: F401  (registers the exported model type with AutoModel)

    if a.threads:
        torch.set_num_threads(a.threads)
    first, second, scores = sts_pairs()
    out = {}
    for path in a.paths:
        model = SentenceTransformer(path, device="cpu", trust_remote_code=True)
        model.max_seq_length = 128
        model.eval()
        with torch.inference_mode():
            x = model.encode(first, batch_size=128, convert_to_tensor=True)
            y = model.encode(second, batch_size=128, convert_to_tensor=True)
        cosine = torch.nn.functional.cosine_similarity(x, y).tolist()
        out[path] = 100.0 * float(spearmanr(cosine, scores).correlation)
    return {"spearman": out}


# ----------------------------------------------------------------------------- driver
def make_random_bert(folder: Path, minilm: str, seed: int) -> str:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **RANDOM_BERT)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def plot(path: Path, summary: dict[str, Any]) -> None:
    plot_side_by_side(
        path, summary,
        [("samples_per_s", "training samples/s (median)"), ("peak_rss_mb", "peak RSS MiB (median)"),
         ("spearman", "STS-B dev Spearman x100")],
        [("st", "sentence-transformers"), ("ours", "hfcontrast")],
    )  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("train", "eval"))
    parser.add_argument("--lib", choices=("ours", "st"))
    parser.add_argument("--model-path")
    parser.add_argument("--export")
    parser.add_argument("--paths", nargs="*")
    parser.add_argument("--result")
    parser.add_argument("--task", choices=sorted(TASKS), default="nli", help="nli: SimCSE vs MNRL; cosent: CoSENT vs CoSENT")
    parser.add_argument("--models", nargs="*", default=None, help="default: the task's (nli: minilm random-bert)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps at the start")
    parser.add_argument("--batch-size", type=int, default=None, help="triplets per step (quick 32, full 64)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--scale", type=float, default=20.0, help="MNRL scale = 1 / SimCSE temperature")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--view-forwards", default="length_buckets", help="ours: merged | length_buckets | per_view")
    parser.add_argument("--seed", type=int, default=42, help="a worker's seed")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="one pair of runs per seed (fixed in advance: the verdict's interval is over them)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (0: torch default; default: 1 with --quick, else 0)",
    )
    a = parser.parse_args()
    if a.worker == "train":
        return write_result(a.result, train_worker(a))
    if a.worker == "eval":
        return write_result(a.result, eval_worker(a))

    from hfcontrast.demo import default_text_model

    task = TASKS[a.task]
    a.models = a.models or task["models"]
    apply_smoke(a, steps=2, warmup=1, batch_size=8, models=["random-bert"], seeds=[42])
    # A random 2-layer BERT step takes ~0.2 s: it gets 5x the steps so its timed window is seconds, not noise.
    quick = task["quick_steps"]
    steps = {m: a.steps or (quick if a.quick else 40) * (5 if m == "random-bert" else 1) for m in a.models}
    a.warmup = a.warmup or (3 if a.quick else 5)
    a.batch_size = a.batch_size or (32 if a.quick else 64)
    a.threads = (1 if a.quick else 0) if a.threads is None else a.threads
    if not task["data"].is_file() or not STS_DEV.is_file():
        raise SystemExit(f"needs {task['data']} and {STS_DEV} (the packaged data, or HFCONTRAST_SHARED_DATA)")
    quiet = wait_until_quiet(a.wait_quiet) if a.wait_quiet else None
    runs: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_text_"))
    try:
        minilm = default_text_model()
        paths = {(m, seed): minilm if m == "minilm" else make_random_bert(tmp / f"random-bert-{seed}", minilm, seed)
                 for m in a.models for seed in a.seeds}  # fmt: skip
        with LoadSampler() as load:
            for model in a.models:
                for rep, seed in enumerate(a.seeds):
                    for lib in ("st", "ours") if rep % 2 == 0 else ("ours", "st"):
                        export = tmp / f"{model}-{lib}-{seed}"
                        argv = [__file__, "--worker", "train", "--lib", lib, "--model-path", paths[(model, seed)],
                                "--export", str(export), "--seed", str(seed)]  # fmt: skip
                        for flag in ("task", "warmup", "batch_size", "lr", "scale", "max_length", "threads", "view_forwards"):
                            argv += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
                        argv += ["--steps", str(steps[model])]
                        run = run_worker(argv)
                        run.update(model=model, seed=seed, export=str(export))
                        runs.append(run)
                        print(
                            f"[{model} seed {seed} {lib:4s}] {run['samples_per_s']:.1f} samples/s, "
                            f"rss {run['peak_rss_mb']:.0f} MiB, loss {run['train_loss']:.4f}",
                            flush=True,
                        )
        before = sorted(set(paths.values()))
        scored = run_worker([__file__, "--worker", "eval", "--threads", str(a.threads), "--paths", *before,
                             *[r["export"] for r in runs]])  # fmt: skip
        spearman = scored["spearman"]
        for run in runs:
            run["spearman"] = spearman[run.pop("export")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary: dict[str, Any] = {}
    rows = []
    for model in a.models:
        summary[model] = {"before_spearman": median(spearman[paths[(model, seed)]] for seed in a.seeds)}
        pairs = [[next(r for r in runs if (r["model"], r["seed"], r["lib"]) == (model, seed, lib)) for lib in ("st", "ours")]
                 for seed in a.seeds]  # fmt: skip
        for index, lib in enumerate(("st", "ours")):
            summary[model][lib] = {
                k: median(p[index][k] for p in pairs) for k in ("samples_per_s", "peak_rss_mb", "spearman")
            }
        ours, st = summary[model]["ours"], summary[model]["st"]
        summary[model]["throughput_ratio"] = ratio(ours["samples_per_s"], st["samples_per_s"])
        summary[model]["rss_ratio"] = ratio(ours["peak_rss_mb"], st["peak_rss_mb"])
        summary[model]["spearman_delta"] = ours["spearman"] - st["spearman"]
        summary[model].update(
            interval_verdicts(pairs, "samples_per_s", "spearman", task["throughput"], task["delta"])
        )
        rows.append([model, st["samples_per_s"], ours["samples_per_s"], interval_text(summary[model], "throughput_ratio"),
                     st["peak_rss_mb"], ours["peak_rss_mb"], summary[model]["rss_ratio"],
                     summary[model]["before_spearman"], st["spearman"], ours["spearman"],
                     interval_text(summary[model], "spearman_delta"), summary[model]["target"]])  # fmt: skip

    info = machine_info()
    info.update(load.summary())
    if quiet:
        info["wait_quiet"] = quiet
    settings = {
        k: getattr(a, k)
        for k in ("task", "quick", "steps", "warmup", "batch_size", "lr", "scale", "max_length", "seed", "threads", "view_forwards")
    }
    settings["seeds"], settings["steps"] = a.seeds, steps
    payload = {
        "name": task["name"],
        "machine": info,
        "settings": settings,
        "summary": summary,
        "runs": runs,
        "targets": {"throughput_ratio": task["throughput"], "spearman_delta_points": task["delta"]},
    }
    results_dir = Path(a.results_dir)
    save_results(results_dir, task["name"], payload)
    plot(results_dir / f"{task['name']}.png", {m: summary[m] for m in a.models})
    print(json.dumps(settings))
    print(f"\nload average (1 min) during the runs: {info['load1_min']:.2f} .. {info['load1_max']:.2f}")
    print(f"{task['name']}: medians over seeds {a.seeds} (one alternated pair each), 95% intervals over the pairs; target "
          f"throughput >= {task['throughput']}x ST at Spearman delta >= {task['delta']} points, met only when "
          "the whole interval clears it")  # fmt: skip
    print(
        format_table(
            [
                "model",
                "ST samples/s",
                "ours samples/s",
                "ratio",
                "ST RSS MiB",
                "ours RSS MiB",
                "RSS ratio",
                "Spearman before",
                "ST Spearman",
                "ours Spearman",
                "delta (pts)",
                "target",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
