"""Run artefacts every recipe writes: ``eval_results.json`` and a PNG of the training curves."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any


def save_eval_results(output_dir: str, results: Mapping[str, Any]) -> str:
    """Write ``eval_results.json`` (sorted keys, floats as JSON numbers) and return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "eval_results.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(dict(results), handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def _series(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(entry["step"]), float(entry[key])) for entry in log_history if key in entry and "step" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(
    path: str,
    log_history: Sequence[Mapping[str, Any]],
    *,
    metric_key: str | None = None,
    scatter: tuple[Sequence[float], Sequence[float]] | None = None,
    scatter_labels: tuple[str, str] = ("gold score", "predicted cosine"),
    title: str = "",
) -> str:
    """PNG with the training loss curve, an evaluation metric over steps (``metric_key``), and
    optionally a scatter (e.g. predicted cosine against gold STS scores). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'hfcontrast[demo]'") from error
    panels = 1 + (metric_key is not None) + (scatter is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    steps, losses = _series(log_history, "loss")
    ax.plot(steps, losses, marker=".")
    ax.set(xlabel="step", ylabel="training loss", title="loss")
    column = 1
    if metric_key is not None:
        ax = axes[0][column]
        steps, values = _series(log_history, metric_key)
        ax.plot(steps, values, marker="o", color="tab:green")
        ax.set(xlabel="step", ylabel=metric_key, title=metric_key)
        column += 1
    if scatter is not None:
        ax = axes[0][column]
        ax.scatter(scatter[0], scatter[1], s=4, alpha=0.4)
        ax.set(xlabel=scatter_labels[0], ylabel=scatter_labels[1], title="evaluation")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
