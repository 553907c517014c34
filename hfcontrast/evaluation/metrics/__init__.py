"""``evaluate`` metric scripts shipped as package data, loadable offline by path.

``evaluate.load("name")`` fetches from the Hugging Face Hub; these scripts load from the installed
package instead: ``evaluate.load(metric_path("sts_correlation"))``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any


def available_metrics() -> list[str]:
    """Names of the metric scripts shipped with hfcontrast."""
    root = Path(str(files(__name__)))
    return sorted(p.name for p in root.iterdir() if (p / f"{p.name}.py").is_file())


def metric_path(name: str) -> str:
    """Local directory of the packaged metric ``name``, to pass to ``evaluate.load``."""
    path = Path(str(files(__name__))) / name
    if not (path / f"{name}.py").is_file():
        raise FileNotFoundError(f"no packaged metric {name!r}; available: {available_metrics()}")
    return str(path)


def load_metric(name: str, **kwargs: Any) -> Any:
    """``evaluate.load(metric_path(name), keep_in_memory=True, **kwargs)``: offline, no Arrow cache files."""
    import evaluate

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(metric_path(name), **kwargs)
