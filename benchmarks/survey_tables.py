"""Issue 29's tables (``benchmarks/survey_quality.py``), rendered by ``render_tables.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from table_cells import mean_sd, source, table


def survey_recipes_table(results: Mapping[str, dict[str, Any]]) -> str:
    """Each survey method's recipe default: the independent kNN of its export against random inits (issue 29)."""
    name = "survey_quality_recipes"
    result = results[name]
    rows = [[_method(r), f"`{r['recipe']}`", f"{100 * r['export_knn_top1']:.1f}",
             mean_sd([100 * v for v in r["random_init_knn_top1"]]), f"{r['gain_points']:+.1f}",
             "**met**" if r["target"] == "met" else "not met",
             f"{100 * r['recipe_before_knn_top1']:.1f} -> {100 * r['recipe_after_knn_top1']:.1f}", f"{r['wall_s'] / 60:.0f}"]
            for r in result["rows"]]  # fmt: skip
    header = ["method", "recipe", "export kNN top-1", "random inits (3)", "gain (points)", ">= +3", "the recipe's own kNN",
              "minutes (1 core)"]  # fmt: skip
    whole = [f"{r['method']} read on the whole image instead, as the other rows are: {100 * r['whole_image_knn_top1']:.1f}, "
             f"random inits {mean_sd([100 * v for v in r['whole_image_random_init_knn_top1']])}."
             for r in result["rows"] if "whole_image_knn_top1" in r]  # fmt: skip
    return "\n\n".join([source(result, name), table(header, rows), *whole])


def _method(row: Mapping[str, Any]) -> str:
    """The method, and its readout where it is not the whole image."""
    if not row.get("readout"):
        return str(row["method"])
    grid, patch = row["readout"]
    return f"{row['method']} (mean of its {grid} x {grid} patches of {patch} px)"


def _over_seeds(runs: list[dict[str, Any]], key: str) -> list[str]:
    """``key`` in percent: mean ± sd, then each seed's value."""
    values = [100 * r[key] for r in runs]
    return [mean_sd(values, 2), " / ".join(f"{v:.2f}" for v in values)]


def survey_long_tail_table(results: Mapping[str, dict[str, Any]]) -> str:
    """SupCon, KCL and BCL on the long-tailed demo: balanced accuracy of each linear probe (issue 29)."""
    name = "survey_quality_long_tail"
    result = results[name]
    methods = list(dict.fromkeys(r["method"] for r in result["rows"]))
    seeds = result["settings"]["seeds"]
    probes = result.get("beats_supcon_by_probe", {})
    rows = []
    for method in methods:
        runs = sorted(
            (r for r in result["rows"] if r["method"] == method), key=lambda r: seeds.index(r["seed"])
        )
        cells = []
        for probe in PROBE_TITLES:
            verdict = "" if method == "SupCon" else probes.get(probe, {}).get(method, "")
            mark = {"met": ", **above SupCon**", "not met": ", not above SupCon", "": ""}[verdict]
            cells.append(f"{_over_seeds([r['probes'] for r in runs], probe)[0]}{mark}")
        rows.append([method, *cells, _over_seeds(runs, "recipe_linear_probe_top1")[0]])
    header = ["method", *PROBE_TITLES.values(), "the recipe's own probe (hfcontrast, L2-normalised)"]
    return f"{source(result, name)}\n\n{table(header, rows)}"


#: The long-tail study's scikit-learn probes, as the table names them.
PROBE_TITLES = {
    "standardised": "standardised features",
    "l2": "L2-normalised (the recipe's protocol)",
    "l2_class_weighted": "L2-normalised, classes weighted",
}
