"""Bookkeeping shared by the benchmark scripts: timing, peak RSS, subprocess workers, load, tables.

Importable from any virtual environment (the lightly peer runs in its own): only the standard
library at import time; ``transformers`` is imported lazily by :func:`step_timer_callback`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
_PACKAGED = REPO_ROOT / "hfcontrast" / "demo" / "data"
#: The text data: shipped inside the package (``hfcontrast/demo/data``); ``$HFCONTRAST_SHARED_DATA`` may
#: point at another copy with the same layout (``nli/``, ``stsb/``, ``wiki/``).
SHARED_DATA = Path(os.environ.get("HFCONTRAST_SHARED_DATA", _PACKAGED))


# ----------------------------------------------------------------------------- measurements
def peak_rss_mb() -> float:
    """High-water mark of this process's resident set (``ru_maxrss``, KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(field)


def reset_peak_rss() -> float:
    """Reset this process's RSS high-water mark (``VmHWM``) to its current RSS (Linux >= 4.0,
    ``/proc/self/clear_refs``) and return that RSS in MiB; :func:`hwm_rss_mb` then reads the new peak."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_mb("VmRSS")


def hwm_rss_mb() -> float:
    """``VmHWM``: peak RSS since the process started or since :func:`reset_peak_rss`, in MiB."""
    return _status_mb("VmHWM")


def median(values: Iterable[float]) -> float:
    values = [float(v) for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def ratio(ours: float, peer: float) -> float:
    return float(ours) / float(peer) if peer else float("nan")


class LoopTimer:
    """Wall-clock marks at the end of every training step; throughput excludes the warm-up steps.

    ``samples / s = (steps - warmup) * samples_per_step / (t[last] - t[warmup - 1])``: the time from
    the end of the last warm-up step to the end of the last step, i.e. data loading, forward,
    backward, optimizer step and callbacks of the measured steps only. ``samples_per_cpu_s`` divides
    by the process's CPU time over the same steps instead (robust to other load, not to spin-waits).
    """

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.cpu_marks: list[float] = []
        self.start = time.perf_counter()

    def mark(self) -> None:
        self.marks.append(time.perf_counter())
        self.cpu_marks.append(time.process_time())

    def throughput(self, warmup: int, samples_per_step: int) -> dict[str, float]:
        if warmup < 1 or len(self.marks) <= warmup:
            raise ValueError(f"need more than {warmup} timed steps, got {len(self.marks)}")
        measured = len(self.marks) - warmup
        seconds = self.marks[-1] - self.marks[warmup - 1]
        step_times = [b - a for a, b in zip(self.marks[warmup - 1 : -1], self.marks[warmup:])]
        cpu_seconds = self.cpu_marks[-1] - self.cpu_marks[warmup - 1]
        return {
            "samples_per_s": measured * samples_per_step / seconds,
            # CPU time of this process (all its threads): less sensitive to other load on a shared machine.
            "samples_per_cpu_s": measured * samples_per_step / cpu_seconds if cpu_seconds > 0 else float("nan"),
            "measured_steps": measured,
            "measured_s": seconds,
            "median_step_s": statistics.median(step_times),
            "warmup_s": self.marks[warmup - 1] - self.start,
        }


def step_timer_callback(timer: LoopTimer) -> Any:
    """A ``transformers.TrainerCallback`` that calls ``timer.mark()`` at every ``on_step_end``."""
    from transformers import TrainerCallback

    class _StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            timer.mark()

    return _StepTimer()


def time_call(fn: Callable[[], Any], *, warmup: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- machine & load
def load_average() -> tuple[float, float, float]:
    with open("/proc/loadavg") as handle:
        one, five, fifteen = handle.read().split()[:3]
    return float(one), float(five), float(fifteen)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def wait_until_quiet(threshold: float = 1.0, max_wait_s: float = 1200.0, poll_s: float = 20.0) -> dict[str, Any]:
    """Sleep until the 1-minute load average is below ``threshold`` (at most ``max_wait_s``)."""
    start = time.time()
    load = load_average()[0]
    while load >= threshold and time.time() - start < max_wait_s:
        print(f"[wait] 1-min load {load:.2f} >= {threshold}; waiting", flush=True)
        time.sleep(poll_s)
        load = load_average()[0]
    return {"waited_s": round(time.time() - start, 1), "load_at_start": load, "quiet": load < threshold}


class LoadSampler:
    """Samples the 1-minute load average in a background thread while a benchmark runs."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = [load_average()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(load_average()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.samples.append(load_average()[0])

    def summary(self) -> dict[str, float]:
        return {
            "load1_min": min(self.samples),
            "load1_median": statistics.median(self.samples),
            "load1_max": max(self.samples),
        }


# ----------------------------------------------------------------------------- workers
def run_worker(
    argv: Sequence[str],
    *,
    python: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600.0,
    cwd: str | os.PathLike[str] | None = None,
    launcher: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run ``python argv... --result FILE`` in a fresh process and return the JSON it wrote there.

    Each measured run is its own process, so ``ru_maxrss`` is that run's peak and no state (threads,
    allocator caches, imported modules) leaks from one library's run into the other's.
    """
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as handle:
        result_path = handle.name
    # ``launcher``: e.g. ``[".../accelerate", "launch", "--num_processes", "2", ...]`` instead of ``python``.
    command = [*(launcher or [python or sys.executable]), *argv, "--result", result_path]
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    full_env.setdefault("HF_HUB_OFFLINE", "1")
    full_env.setdefault("TRANSFORMERS_OFFLINE", "1")
    full_env.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        proc = subprocess.run(
            command, env=full_env, cwd=cwd or REPO_ROOT, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"worker failed ({proc.returncode}): {' '.join(command)}\n--- stderr tail ---\n{proc.stderr[-4000:]}"
            )
        with open(result_path) as handle:
            return json.load(handle)
    finally:
        os.unlink(result_path)


def write_result(path: str | None, payload: dict[str, Any]) -> None:
    """Worker side of :func:`run_worker` (under ``accelerate launch``, rank 0 only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if path:
        with open(path, "w") as handle:
            json.dump(payload, handle)
    else:
        print(json.dumps(payload, indent=1))


# ----------------------------------------------------------------------------- output
def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small settings (< 10 minutes on 2 CPU cores)")
    parser.add_argument(
        "--smoke", action="store_true",
        help="2 steps of tiny settings, the peer included where it is installed (skipped, exit 0, where not); "
        "the results go to a temporary folder, never to results/",
    )  # fmt: skip
    parser.add_argument("--reps", type=int, default=None, help="runs per library (alternated A B A B)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="LOAD",
        help="before measuring, wait (up to 20 min) until the 1-min load average is below LOAD",
    )
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    return parser


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "n/a"
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = [" | ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in text]
    return "\n".join(lines)


#: The seeds of every comparison with a peer, fixed in advance: one (peer, ours) pair of runs per seed, the
#: order alternating; verdicts come from the 95 % interval over these pairs (benchmarks/claims.py).
SEEDS = (42, 1, 2, 3, 4)


def apply_smoke(a: argparse.Namespace, **settings: Any) -> bool:
    """With ``--smoke``: ``settings`` replace the parsed arguments (2 steps, tiny sizes) and the results go
    to a temporary folder. Returns whether this is a smoke run."""
    if not getattr(a, "smoke", False):
        return False
    import tempfile

    for key, value in settings.items():
        setattr(a, key, value)
    a.results_dir = tempfile.mkdtemp(prefix="bench_smoke_")
    a.reps = a.reps or 1
    print(f"[smoke] {settings}; results in {a.results_dir}", flush=True)
    return True


def peer_missing(python: str | os.PathLike[str], smoke: bool, what: str) -> bool:
    """True when the peer's interpreter is absent and this is a smoke run (the peer is skipped, said
    loudly); a full run without its peer is an error."""
    if Path(python).exists():
        return False
    if not smoke:
        raise SystemExit(f"peer python {python} not found: create the {what} venv (benchmarks/README.md)")
    print(f"[smoke] the peer ({what}, {python}) is not installed: running hfcontrast alone", flush=True)
    return True


def peer_versions(python: str | os.PathLike[str], names: Sequence[str] = ("lightly", "torch", "torchvision")) -> dict[str, Any]:
    """The versions of ``names`` installed beside the peer's interpreter (``{}`` when it is absent)."""
    if not Path(python).exists():
        return {}
    script = ("import json, importlib.metadata as m, sys\n"
              "def v(n):\n    try:\n        return m.version(n)\n    except m.PackageNotFoundError:\n        return None\n"
              "print(json.dumps({'python': sys.version.split()[0], **{n: v(n) for n in sys.argv[1:]}}))")  # fmt: skip
    done = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def save_results(
    results_dir: str | os.PathLike[str], name: str, payload: dict[str, Any], peer_versions: dict[str, Any] | None = None
) -> Path:
    """``<results_dir>/<name>.json`` with the payload and its :func:`claims.provenance` (commit, dirty tree,
    versions of both libraries, command)."""
    from claims import provenance

    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    payload = {**payload, "provenance": provenance(peer_versions)}
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    return path


def mean_sd(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± sd`` (sample standard deviation; ``± n/a`` for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.{digits}f} ± n/a"
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def verdict(value: float, target: float) -> str:
    return "MET" if value >= target else "MISSED"


def plot_side_by_side(
    path: str | os.PathLike[str],
    summary: dict[str, Any],
    panels: Sequence[tuple[str, str]],
    libraries: Sequence[tuple[str, str]],
) -> None:
    """One panel per ``(key, title)``: for each setting of ``summary``, a bar per ``(library, label)``
    with the value ``summary[setting][library][key]`` (the peer first, then ours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(summary)
    width = 0.76 / len(libraries)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for i, (library, label) in enumerate(libraries):
            values = [summary[s][library][key] for s in settings]
            ax.bar([j + width * i for j in range(len(settings))], values, width, label=label)
        ax.set_xticks([j + width * (len(libraries) - 1) / 2 for j in range(len(settings))], settings)
        ax.set_title(title, fontsize=10)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
