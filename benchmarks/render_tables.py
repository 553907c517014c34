"""The results tables of the docs, rendered from ``benchmarks/results/*.json``: no number is typed by hand.

    python benchmarks/render_tables.py           # rewrite every results block in DOCS
    python benchmarks/render_tables.py --check   # exit 1 when a block differs from its JSON (CI's test)

A block is the text between ``<!-- results:TABLE -->`` and ``<!-- /results:TABLE -->``; ``TABLE`` is a key of
:data:`TABLES`, which names the JSONs it reads. Each block opens with where its numbers come from (the
command, the commit, the date, the seeds); quality is mean ± sd over the seeds, speed and quality
differences carry their 95 % interval over the paired seeds (``claims.interval_verdicts``), and the verdict
is "met" only when the whole interval clears the target. ``tests/test_benchmark_claims.py`` checks that
every block equals its rendering, that its JSONs are clean and current (``claims.stale``), and that no
ratio is quoted outside a block.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import ratio_interval
from claims import verdict as interval_verdict
from survey_tables import survey_long_tail_table, survey_recipes_table
from table_cells import ROOT, interval, load, mean_sd, source, table, values, verdict

#: issue 24's bar: no slowdown against the commit before the work.
AGAINST_REF_TARGET = 0.98
#: The files whose results blocks are rendered (and checked).
DOCS = ("README.md", "benchmarks/README.md", "docs/images.md", "docs/clip.md", "docs/performance.md", "docs/text_techniques.md",
        "docs/data.md")
BLOCK = re.compile(r"(<!-- results:(?P<table>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=table) -->)", re.S)


# ----------------------------------------------------------------------------- tables
def text_table(results: Mapping[str, dict[str, Any]], name: str = "text_vs_sentence_transformers") -> str:
    result = results[name]
    runs, targets = result["runs"], result["targets"]
    labels = {"minilm": "all-MiniLM-L6-v2", "random-bert": "random BERT 2x128"}
    rows = []
    for model, entry in result["summary"].items():
        st, ours = (values(runs, "spearman", model=model, lib=lib) for lib in ("st", "ours"))
        speed = [mean_sd(values(runs, "samples_per_s", model=model, lib=lib)) for lib in ("st", "ours")]
        rows.append([labels.get(model, model), *speed, interval(entry, "throughput_ratio", unit="x"),
                     f"{entry['rss_ratio']:.2f}x", f"{entry['before_spearman']:.2f}", mean_sd(st, 2),
                     mean_sd(ours, 2), interval(entry, "spearman_delta", signed=True), verdict(entry)])  # fmt: skip
    header = ["model", "ST samples/s", "ours samples/s", "ratio (95 % CI)", "RSS ours/ST", "Spearman before",
              "ST Spearman", "ours Spearman", "Δ pts (95 % CI)",
              f"target ≥ {targets['throughput_ratio']}x, Δ ≥ {targets['spearman_delta_points']}"]  # fmt: skip
    return f"{source(result, name)}\n\n{table(header, rows)}"


def image_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "image_vs_lightly"
    result = results[name]
    labels = {"simclr": "SimCLR", "moco": "MoCo v2"}
    body = _vs_lightly(result, labels, lambda method, entry: entry["calib_ratio"], _target(result["targets"], "knn_delta_points"))
    return f"{source(result, name)}\n\n{body}"


def _vs_lightly(result: Mapping[str, Any], labels: Mapping[str, str], calib: Callable[[str, Any], float], target: str) -> str:
    """One row per method against lightly: speed, ratio, the torch builds' ``calib``, kNN, Δ, verdict."""
    runs, rows = result["runs"], []
    for method, entry in result["summary"].items():
        speed = [mean_sd(values(runs, "images_per_s", method=method, lib=lib)) for lib in ("lightly", "ours")]
        knn = [mean_sd(values(runs, "knn_top1", method=method, lib=lib), 2) for lib in ("lightly", "ours")]
        rows.append([labels.get(method, method), *speed, interval(entry, "throughput_ratio", unit="x"),
                     f"{calib(method, entry):.2f}", *knn, interval(entry, "knn_delta", signed=True), verdict(entry)])  # fmt: skip
    header = ["method", "lightly img/s", "ours img/s", "ratio (95 % CI)", "calib (torch build)", "lightly kNN",
              "ours kNN", "Δ pts (95 % CI)", target]  # fmt: skip
    return table(header, rows)


def _target(targets: Mapping[str, Any], quality: str) -> str:
    quality_target = targets.get(quality)
    return f"target ≥ {targets['throughput_ratio']}x" + (f", Δ ≥ {quality_target}" if quality_target is not None else "")


def cluster_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "cluster_vs_lightly"
    result = results[name]
    runs = result["runs"]
    labels = {"swav": "SwAV (2 + 4 crops)", "dino": "DINO (2 + 4 crops)", "nnclr": "NNCLR (2 crops)"}
    rows = []
    for method, entry in result["summary"].items():
        per_crop = values(runs, "images_per_s", method=method, lib="lightly_per_crop")
        speed = [mean_sd(values(runs, "images_per_s", method=method, lib=lib)) for lib in ("lightly", "ours")]
        knn = [mean_sd(values(runs, "knn_top1", method=method, lib=lib), 2) for lib in ("lightly", "ours")]
        rows.append([labels.get(method, method), speed[0], mean_sd(per_crop) if per_crop else "-", speed[1],
                     interval(entry, "throughput_ratio", unit="x"), *knn, interval(entry, "knn_delta", signed=True),
                     verdict(entry)])  # fmt: skip
    header = ["method", "lightly img/s (crops grouped)", "lightly img/s (per crop)", "ours img/s",
              "ratio vs grouped (95 % CI)", "lightly kNN", "ours kNN", "Δ pts (95 % CI)",
              "target ≥ 1.0x, Δ ≥ -1"]  # fmt: skip
    init = list(result["knn_top1_at_init"].values())
    return (f"{source(result, name)} kNN top-1 of the initial weights: {mean_sd(init, 2)}.\n\n"
            f"{table(header, rows)}")  # fmt: skip


def redundancy_table(results: Mapping[str, dict[str, Any]]) -> str:
    """Barlow Twins, VICReg and DirectCLR against lightly; ``calib``: the torch builds' backbone time, lightly's / ours."""
    name = "redundancy_vs_lightly"
    result = results[name]
    labels = {"barlowtwins": "Barlow Twins", "vicreg": "VICReg", "directclr": "DirectCLR (64 dims)"}

    def calib(method: str, entry: Any) -> float:
        lightly, ours = (values(result["runs"], "calib_s", method=method, lib=lib) for lib in ("lightly", "ours"))
        return (sum(lightly) / len(lightly)) / (sum(ours) / len(ours))

    init = list(result["knn_top1_at_init"].values())
    return (f"{source(result, name)} kNN top-1 of the initial weights: {mean_sd(init, 2)}.\n\n"
            f"{_vs_lightly(result, labels, calib, 'target ≥ 1.0x, Δ ≥ -1')}")  # fmt: skip


def clip_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "clip_vs_hf_dual_encoder"
    result = results[name]
    runs = result["runs"]
    rows = []
    for run_name, entry in result["summary"].items():
        processes = int(run_name.split()[0])
        speed = [mean_sd(values(runs, "samples_per_s", processes=processes, lib=lib)) for lib in ("peer", "ours")]
        zeroshot = [mean_sd(values(runs, "zeroshot_top1", processes=processes, lib=lib)) for lib in ("peer", "ours")]
        recall = [f"{mean_sd(values(runs, 'text_to_image_R@1', processes=processes, lib=lib))} / "
                  f"{mean_sd(values(runs, 'image_to_text_R@1', processes=processes, lib=lib))}"
                  for lib in ("peer", "ours")]  # fmt: skip
        negatives = entry["negatives_per_row"]
        rows.append([run_name, *speed, interval(entry, "throughput_ratio", unit="x"), *zeroshot,
                     interval(entry, "zeroshot_delta", 1, signed=True), *recall,
                     f"{negatives['peer']} / {negatives['ours']}", verdict(entry)])  # fmt: skip
    header = ["run", "HF samples/s", "ours samples/s", "ratio (95 % CI)", "HF zero-shot", "ours zero-shot",
              "Δ pts (95 % CI)", "HF t2i / i2t R@1", "ours t2i / i2t R@1", "candidates per row HF / ours",
              f"target ≥ {result['targets']['throughput_ratio']}x"
              + (f", Δ ≥ {result['targets']['zeroshot_delta_points']}" if "zeroshot_delta_points" in result["targets"] else "")]  # fmt: skip
    return f"{source(result, name)}\n\n{table(header, rows)}"


def loss_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "loss_kernels"
    result = results[name]
    runs = result["runs"]
    rows = []
    for key, entry in result["summary"].items():
        loss, batch = key.split("@")
        cells = {r["impl"]: r for r in runs if r["loss"] == loss and r["batch"] == int(batch)}
        naive = cells.get("naive")
        rows.append([loss, batch, f"{cells['ours']['ms']:.1f}", f"{cells['reference']['ms']:.1f}",
                     f"{entry['speedup']:.2f}x", f"{naive['ms']:.1f}" if naive else "-",
                     f"{cells['ours']['peak_mib']:.1f}", f"{cells['reference']['peak_mib']:.1f}",
                     f"{entry['memory_ratio']:.2f}x"])  # fmt: skip
    header = ["loss", "B", "ours ms", "reference ms", "speedup", "naive exp/sum/log ms", "ours MiB", "reference MiB",
              "memory ours/reference"]  # fmt: skip
    return f"{source(result, name)} One run per cell, no interval, no target.\n\n{table(header, rows)}"


def gradcache_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "gradcache_memory"
    result = results[name]
    labels = {"ours_uncached": "ours, plain step", "st_uncached": "ST MultipleNegativesRankingLoss",
              "ours_gradcache": "ours, GradCache", "st_cached": "ST CachedMultipleNegativesRankingLoss",
              "ours_gradcache_stats_as_is": "ours, GradCache, statistics as computed"}  # fmt: skip
    rows = [[labels.get(r["method"], r["method"]), str(r["batch"]), f"{r['peak_rss_mib']:.0f}", f"{r['step_mib']:.0f}",
             f"{r['ms_per_sample']:.1f}", str(r["tokens_encoded"] or r["tokens_padded"])]
            for r in result["results"]]  # fmt: skip
    header = ["run", "B", "peak RSS MiB", "step MiB (above the model)", "ms per sample", "tokens through the model"]
    ratios = "; ".join(f"{key.replace('_', ' ')} {value:.2f}" for key, value in result["summary"].items())
    return f"{source(result, name)} One run per row.\n\n{table(header, rows)}\n\nRatios: {ratios}."


def chunked_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "chunked_loss_memory"
    result = results[name]
    rows = [[str(r["batch"]), f"{r['plain']['peak_mib']:.1f}", f"{r['chunked']['peak_mib']:.1f}",
             f"{r['plain']['peak_mib'] / r['chunked']['peak_mib']:.2f}", f"{r['plain']['seconds']:.2f}",
             f"{r['chunked']['seconds']:.2f}"] for r in result["rows"]]  # fmt: skip
    header = ["B", "plain loss peak MiB", f"chunked (chunk {result['chunk_size']}) peak MiB", "plain / chunked memory",
              "plain s", "chunked s"]  # fmt: skip
    equal = result["equality"]
    return (f"{source(result, name)} d {result['dim']}, {result['threads']} threads, one run per cell; at B "
            f"{equal['batch']} the losses differ by {equal['loss_abs_diff']:.1e} and the gradients by at most "
            f"{equal['grad_max_abs_diff']:.1e}.\n\n{table(header, rows)}")  # fmt: skip


def row_checks_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "row_checks"
    result = results[name]
    rows = [[r["data"], str(r["rows"]), f"{r['check_s']:.2f}", f"{r['collator_epoch_s']:.2f}",
             f"{r['check_over_epoch']:.3f}"] for r in result["rows"]]  # fmt: skip
    header = ["data", "rows", "row check s (before step 1)", "one epoch through the collator s", "check / epoch"]
    return f"{source(result, name)}\n\n{table(header, rows)}"


def image_views_table(results: Mapping[str, dict[str, Any]]) -> str:
    name = "image_views"
    result = results[name]
    columns = [k for k in result["results"][0] if k != "augmentation"]
    rows = [[r["augmentation"], *(f"{r[c]:.0f}" for c in columns)] for r in result["results"]]
    return f"{source(result, name)} Views per second.\n\n{table(['augmentation', *columns], rows)}"


def host_syncs_table(results: Mapping[str, dict[str, Any]]) -> str:
    """Host syncs and tensor literals per non-logging step, every family and the peer (counts: no spread)."""
    name = "host_syncs"
    result = results[name]
    rows = []
    for run in result["runs"]:
        budget = run.get("budget")
        within = "-" if budget is None else ("**met**" if run["within_budget"] else "missed")
        where = "; ".join(f"{count:g} {site}" for site, count in run["sites"].items())
        rows.append([run["family"], f"{run['per_step']:g}", "-" if budget is None else f"{budget:g}", within,
                     f"{run['literals_per_step']:g}", where])  # fmt: skip
    settings = result["settings"]
    head = (f"{source(result, name)} {settings['steps'] - settings['warmup']} counted steps after {settings['warmup']} "
            f"of warm-up, text batch {settings['text_batch']}, image batch {settings['image_batch']}.")  # fmt: skip
    return f"{head}\n\n{table(['training', 'host syncs per step', 'budget', 'within', 'tensor literals per step', 'where'], rows)}"


def ir_speed_table(results: Mapping[str, dict[str, Any]]) -> str:
    """Seconds per full retrieval evaluation, sentence-transformers' evaluator against ours (same model, corpus)."""
    name = "ir_evaluator_speed"
    result = results[name]
    rounds = result["rounds"]
    labels = {"small": "random BERT 2x128 (MiniLM's tokenizer)", "minilm": "all-MiniLM-L6-v2"}
    row = [f"{result['docs']:,} docs, {result['queries']:,} queries", labels.get(result["model"], result["model"]),
           mean_sd([r["peer_s"] for r in rounds]), mean_sd([r["ours_s"] for r in rounds]),
           interval(result, "ratio", unit="x"), f"{rounds[0]['peer_mrr@10']:.4f} / {rounds[0]['ours_mrr@10']:.4f}",
           verdict(result)]  # fmt: skip
    header = ["corpus", "model", "ST s per evaluation", "ours s per evaluation", "speed ratio ST s / ours s (95 % CI)",
              "MRR@10 ST / ours", "target ≥ 1.0x"]  # fmt: skip
    return f"{source(result, name)} {len(rounds)} rounds, the order alternating.\n\n{table(header, [row])}"


def streams_table(results: Mapping[str, dict[str, Any]]) -> str:
    """Streamed against map-style training: peak memory small vs large set, throughput, the time a resume takes."""
    name = "streams"
    result = results[name]
    labels = {"text": "SimCSE, JSON lines", "clip": "CLIP, WebDataset shards"}
    rows = []
    for task in ("text", "clip"):
        entry = result[task]
        rounds, sizes = entry["rounds"], entry["settings"]
        rss = [mean_sd([r[k]["peak_rss_mb"] for r in rounds], 0) for k in ("stream", "large")]
        speed = [mean_sd([r[k]["samples_per_s"] for r in rounds]) for k in ("map", "stream")]
        rows.append([labels[task], f"{sizes['small']:,} / {sizes['large']:,}", f"{rss[0]} / {rss[1]}",
                     interval(entry, "memory_ratio", digits=3, unit="x"), _met(entry["memory_target"]),
                     f"{speed[0]} / {speed[1]}", interval(entry, "throughput_ratio", unit="x"), _met(entry["throughput_target"]),
                     interval(entry, "resume_fraction", digits=3), _met(entry["resume_target"])])  # fmt: skip
    header = ["run", "rows small / large", "peak RSS MB small / large", "memory large / small (95 % CI)", "≤ 1.1",
              "samples/s map-style / streamed", "streamed / map-style (95 % CI)", "≥ 0.9",
              "resume time / time to its step (95 % CI)", "< 0.1"]  # fmt: skip
    rounds = result["text"]["settings"]["rounds"]
    return (f"{source(result, name)} {rounds} rounds, the order of streamed and map-style alternating; one thread; "
            f"text {result['text']['settings']['steps']} steps, images {result['clip']['settings']['steps']}, batch "
            f"{result['text']['settings']['batch']}.\n\n{table(header, rows)}")


def _met(target: str) -> str:
    return "**met**" if target == "met" else "not shown"


def against_ref_table(results: Mapping[str, dict[str, Any]]) -> str:
    """A comparison of two recorded commits (it never goes stale: it speaks for those two)."""
    name = "against_ref_trainer_step"
    result = results[name]
    this = result["this"]
    target = result.get("target", AGAINST_REF_TARGET)
    rows = []
    for r in result["runs"]:
        mean, low, high = ratio_interval(r["speed_this"], r["speed_ref"])
        rows.append([r["case"], ", ".join(f"{x:.3f}" for x in r["ratio_per_round"]), f"**{mean:.3f}** ({low:.3f} to {high:.3f})",
                     interval_verdict(low, high, target)])  # fmt: skip
    return (f"`{result['machine']['command']}`, {result['machine']['date']}: commit `{this['commit']}` against "
            f"`{result['ref']}` (`benchmarks/results/{name}.json`). {this['note']} Target: this / ref >= {target} over "
            "the whole 95 % interval of the rounds' log ratios.\n\n"
            f"{table(['case', 'speed this / ref per round', 'geometric mean (95 % CI)', f'target >= {target}'], rows)}")  # fmt: skip


def headline(results: Mapping[str, dict[str, Any]]) -> str:
    """The README's lines: each peer comparison's speed ratio and quality difference with their intervals."""
    text, image = results["text_vs_sentence_transformers"], results["image_vs_lightly"]
    cluster, clip = results["cluster_vs_lightly"], results["clip_vs_hf_dual_encoder"]
    redundancy = results["redundancy_vs_lightly"]
    lines = []
    for model, entry in text["summary"].items():
        lines.append(f"text ({model}) vs sentence-transformers: {_pair(entry, 'spearman_delta', 'STS-B Spearman')}")
    for result in (image, cluster, redundancy):
        for method, entry in result["summary"].items():
            lines.append(f"{method} vs lightly: {_pair(entry, 'knn_delta', 'kNN top-1')}")
    for run_name, entry in clip["summary"].items():
        lines.append(f"CLIP ({run_name}) vs the HF dual encoder: {_pair(entry, 'zeroshot_delta', 'zero-shot')}")
    commits = sorted({r["provenance"]["commit"][:9] for r in results.values()})
    return "\n".join(f"* {line}" for line in lines) + f"\n\n(measured at commit {', '.join(commits)})"


def _pair(entry: Mapping[str, Any], delta: str, quality: str) -> str:
    return (f"throughput {interval(entry, 'throughput_ratio', unit='x')}, {quality} Δ "
            f"{interval(entry, delta, signed=True)} points: {verdict(entry)}")  # fmt: skip


@dataclass(frozen=True)
class Table:
    sources: tuple[str, ...]
    render: Callable[[Mapping[str, dict[str, Any]]], str]
    #: The numbers speak for the current code (checked against ``claims.MEASURED``), not for fixed commits.
    current: bool = True


TABLES: dict[str, Table] = {
    "text": Table(("text_vs_sentence_transformers",), text_table),
    "cosent": Table(("cosent_vs_sentence_transformers",), lambda r: text_table(r, "cosent_vs_sentence_transformers")),
    "image": Table(("image_vs_lightly",), image_table),
    "cluster": Table(("cluster_vs_lightly",), cluster_table),
    "redundancy": Table(("redundancy_vs_lightly",), redundancy_table),
    "clip": Table(("clip_vs_hf_dual_encoder",), clip_table),
    "loss-kernels": Table(("loss_kernels",), loss_table),
    "gradcache": Table(("gradcache_memory",), gradcache_table),
    "chunked-loss": Table(("chunked_loss_memory",), chunked_table),
    "row-checks": Table(("row_checks",), row_checks_table),
    "image-views": Table(("image_views",), image_views_table),
    "against-ref": Table(("against_ref_trainer_step",), against_ref_table, current=False),
    "host-syncs": Table(("host_syncs",), host_syncs_table),
    "ir-speed": Table(("ir_evaluator_speed",), ir_speed_table),
    "streams": Table(("streams",), streams_table),
    "survey-recipes": Table(("survey_quality_recipes",), survey_recipes_table),
    "survey-long-tail": Table(("survey_quality_long_tail",), survey_long_tail_table),
    "headline": Table(("text_vs_sentence_transformers", "image_vs_lightly", "cluster_vs_lightly",
                       "redundancy_vs_lightly", "clip_vs_hf_dual_encoder"), headline),
}  # fmt: skip


def render(name: str) -> str:
    spec = TABLES[name]
    return spec.render({source: load(source) for source in spec.sources})


def rendered(text: str) -> str:
    """``text`` with every results block replaced by its rendering."""

    def replace(match: re.Match[str]) -> str:
        if match["table"] not in TABLES:
            raise KeyError(f"unknown results block {match['table']!r}: one of {sorted(TABLES)}")
        return f"{match.group(1)}{render(match['table'])}\n{match.group(4)}"

    return BLOCK.sub(replace, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block is out of date")
    parser.add_argument("--smoke", action="store_true", help="the benchmark smoke run: the same as --check")
    a = parser.parse_args(argv)
    stale = []
    for doc in DOCS:
        path = ROOT / doc
        text = path.read_text()
        new = rendered(text)
        if new != text:
            stale.append(doc)
            if not (a.check or a.smoke):
                path.write_text(new)
    verb = "out of date" if a.check or a.smoke else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every results block matches its JSON")
    return 1 if stale and (a.check or a.smoke) else 0


if __name__ == "__main__":
    sys.exit(main())
