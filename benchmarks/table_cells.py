"""The cells every results table is made of (``render_tables.py``): a JSON loaded, mean ± sd, intervals, verdicts,
the provenance line."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def load(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is quoted by a results block but does not exist: run the benchmark")
    result: dict[str, Any] = json.loads(path.read_text())
    return result


# ----------------------------------------------------------------------------- cells
def mean_sd(values: Sequence[float], digits: int = 1) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "-"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def interval(entry: Mapping[str, Any], key: str, digits: int = 2, unit: str = "", signed: bool = False) -> str:
    """``"1.21x (1.15 to 1.27)"``: the interval's centre (geometric mean of the ratios, or mean difference)."""
    centre, low, high = entry[f"{key}_interval"]
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"**{fmt.format(centre)}{unit}** ({fmt.format(low)} to {fmt.format(high)})"


def verdict(entry: Mapping[str, Any]) -> str:
    return "**met**" if entry["target"] == "met" else "not shown"


def values(runs: Iterable[Mapping[str, Any]], key: str, **where: Any) -> list[float]:
    """``key`` of the runs matching ``where``, in seed order."""
    chosen = [r for r in runs if all(r.get(k) == v for k, v in where.items())]
    return [float(r[key]) for r in sorted(chosen, key=lambda r: r.get("seed", 0))]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def source(result: Mapping[str, Any], name: str) -> str:
    """Where the numbers come from: command, commit, date, seeds, load."""
    prov = result["provenance"]
    machine = result.get("machine") if isinstance(result.get("machine"), dict) else {}
    command = prov["command"].replace("python3 ", "python ", 1)
    seeds = (result.get("settings") or {}).get("seeds")
    load = (f", 1-min load {machine['load1_min']:.2f}-{machine['load1_max']:.2f}"
            if "load1_min" in machine else "")  # fmt: skip
    when = f", {machine['date']}" if "date" in machine else ""
    seeded = f", seeds {' '.join(map(str, seeds))}" if seeds else ""
    return (f"`{command}` at commit `{prov['commit'][:9]}`{when}{seeded}{load} "
            f"(`benchmarks/results/{name}.json`).")  # fmt: skip
