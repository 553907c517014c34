"""What a benchmark may claim: where each number comes from, and what the spread allows.

* :func:`provenance`: the git commit, whether the tree was dirty, the versions of this library and the
  peer's, the exact command. Every results JSON carries it (``common.save_results`` adds it).
* :func:`paired_interval` / :func:`ratio_interval`: a 95 % confidence interval of the difference (or of
  the ratio, on the log scale) of paired runs, by Student's t. :func:`verdict` says "met" only when the whole
  interval clears the target, else "not shown", with the interval.
* :data:`MEASURED` lists the code each benchmark measures; :func:`stale` tells whether that code has
  changed since a JSON's commit (changes confined to the :data:`UNMEASURED` functions aside).
  ``tests/test_benchmark_claims.py`` checks every quoted table against its JSON and that commit.

Importable from any virtual environment (standard library at import time; scipy when an interval is made).
"""

from __future__ import annotations

import ast
import math
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results"  # what the benchmarks write: never part of the measured tree
LIBRARY = ("hfcontrast", "torch", "transformers", "accelerate", "datasets", "sentence-transformers")
#: The code each benchmark measures: a JSON from a commit older than the last change to these is stale.
_TRAINING = ("hfcontrast/trainer", "hfcontrast/objectives", "hfcontrast/losses", "hfcontrast/collators",
             "hfcontrast/models", "hfcontrast/distributed", "hfcontrast/memory", "benchmarks/common.py")
_IMAGES = ("hfcontrast/augment", "hfcontrast/demo/fashion_mnist.py", "hfcontrast/evaluation/knn.py",
           "benchmarks/image_setup.py")
MEASURED: dict[str, tuple[str, ...]] = {
    "text_vs_sentence_transformers": (*_TRAINING, "hfcontrast/__init__.py", "hfcontrast/hub", "hfcontrast/demo/text.py",
                                      "hfcontrast/demo/data", "benchmarks/text_vs_sentence_transformers.py"),
    "cosent_vs_sentence_transformers": (*_TRAINING, "hfcontrast/__init__.py", "hfcontrast/hub", "hfcontrast/demo/text.py",
                                        "hfcontrast/demo/data", "benchmarks/text_vs_sentence_transformers.py"),
    "image_vs_lightly": (*_TRAINING, *_IMAGES, "benchmarks/image_vs_lightly.py"),
    "cluster_vs_lightly": (*_TRAINING, *_IMAGES, "benchmarks/image_vs_lightly.py", "benchmarks/peer_diagnostics.py",
                           "benchmarks/cluster_vs_lightly.py"),
    "redundancy_vs_lightly": (*_TRAINING, *_IMAGES, "benchmarks/image_vs_lightly.py", "benchmarks/cluster_vs_lightly.py",
                              "benchmarks/redundancy_vs_lightly.py"),
    "clip_vs_hf_dual_encoder": (*_TRAINING, "hfcontrast/augment", "hfcontrast/cli/clip.py", "hfcontrast/demo",
                                "hfcontrast/evaluation", "benchmarks/clip_vs_hf_dual_encoder.py"),
    "loss_kernels": ("hfcontrast/losses", "benchmarks/common.py", "benchmarks/loss_kernels.py"),
    "gradcache_memory": (*_TRAINING, "benchmarks/gradcache_memory.py"),
    "host_syncs": (*_TRAINING, "hfcontrast/host_syncs.py", "hfcontrast/augment", "hfcontrast/demo/data",
                   "benchmarks/host_syncs.py"),
    "chunked_loss_memory": ("hfcontrast/losses", "benchmarks/chunked_loss_memory.py"),
    "row_checks": ("hfcontrast/collators", "hfcontrast/augment", "hfcontrast/demo", "benchmarks/common.py",
                   "benchmarks/row_checks.py"),
    "ir_evaluator_speed": ("hfcontrast/evaluation", "hfcontrast/models", "benchmarks/common.py",
                           "benchmarks/ir_evaluator_speed.py"),
    "image_views": ("hfcontrast/augment", "hfcontrast/collators", "hfcontrast/demo/fashion_mnist.py",
                    "benchmarks/common.py", "benchmarks/image_views.py"),
    **{f"survey_quality_{study}": (*_TRAINING, *_IMAGES, "hfcontrast/cli", "hfcontrast/demo", "hfcontrast/hub", recipes,
                                   "benchmarks/survey_quality.py")
       for study, recipes in (("recipes", "recipes"), ("long_tail", "recipes/simclr.py"))},  # long_tail runs one recipe
    "streams": (*_TRAINING, "hfcontrast/shards.py", "hfcontrast/cli/clip.py", "hfcontrast/augment", "hfcontrast/demo",
                "benchmarks/streams.py"),
}  # fmt: skip
#: Code under a measured path that benchmarks do not all run: functions, methods and class fields by qualified
#: name (``"*"``: the whole file), each with the benchmarks that do run it. A change confined to them leaves the
#: others' results current.
_EXPORTING = ("text_vs_sentence_transformers", "cosent_vs_sentence_transformers", "clip_vs_hf_dual_encoder",
              "survey_quality_recipes", "survey_quality_long_tail")  # score the export
UNMEASURED: dict[str, dict[str, tuple[str, ...]]] = {
    "hfcontrast/trainer/publishing.py": {
        "PublishingTrainer.push_to_hub": (),
        "PublishingTrainer.save_model": _EXPORTING,
        "PublishingTrainer.export": _EXPORTING,
    },
    "hfcontrast/trainer/arguments.py": {
        f"ContrastiveTrainingArguments.{name}": _EXPORTING for name in ("export_format", "export_onnx", "quantize")
    },
    "hfcontrast/trainer/summary.py": {"run_summary": (), "text_details": ()},  # the model card's summary
    "hfcontrast/cli/clip.py": {"ImageTextDataArguments.streaming": ()},  # --streaming: no benchmark streams a file
    "hfcontrast/trainer/streams.py": {name: ("streams",) for name in ("stream_dataloader", "StreamLoader")},
    # CPC's patch grid: the CPC recipe alone cuts and reads one
    **{path: {"*": ("survey_quality_recipes",)} for path in ("hfcontrast/collators/patches.py",
                                                            "hfcontrast/evaluation/patch_grid.py")},
    "hfcontrast/models/modeling_text.py": {
        name: () for name in ("ContrastiveTextModel.from_pretrained", "ContrastiveTextModel.from_sentence_transformers",
                              "is_sentence_transformers_folder", "sentence_transformers_settings")
    },
}  # fmt: skip


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def versions(names: Sequence[str] = LIBRARY) -> dict[str, str | None]:
    """Installed versions of ``names`` in this environment (``None`` when absent)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def provenance(peer_versions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where a result comes from: commit, dirty tree (tracked files changed, other benchmarks' results
    aside) and which paths, versions, the command."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", f":!{RESULTS}")
    dirty_paths = None if status is None else sorted(line.split(maxsplit=1)[1] for line in status.splitlines())
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": None if dirty_paths is None else bool(dirty_paths),
        "dirty_paths": dirty_paths,
        "versions": versions(),
        "peer_versions": dict(peer_versions or {}),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cwd": os.getcwd(),
    }


def _code(source: str, skip: frozenset[str]) -> str:
    """The syntax tree of ``source`` without positions and without the functions, classes and class fields named
    in ``skip`` (qualified: ``Class.method``, ``Class.field``): comments, docstrings and layout aside, two versions
    run the same code iff equal."""

    def name_of(node: ast.stmt) -> str | None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return node.name
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return node.target.id
        return None

    def prune(body: list[ast.stmt], prefix: str) -> list[ast.stmt]:
        kept = []
        for node in body:
            name = name_of(node)
            if name is not None and prefix + name in skip:
                continue
            if isinstance(node, ast.ClassDef):
                node.body = prune(node.body, f"{prefix}{node.name}.")
            kept.append(node)
        return kept

    tree = ast.parse(source)
    tree.body = prune(tree.body, "")
    for node in ast.walk(tree):  # docstrings: text, not code
        documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, documented) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _differs(before: str, after: str, skip: frozenset[str]) -> bool:
    """Whether two versions of a Python file run different code (either one unparseable here: yes)."""
    try:
        return _code(before, skip) != _code(after, skip)
    except SyntaxError:
        return True


def stale(
    commit: str | None,
    paths: Sequence[str],
    benchmark: str | None = None,
    unmeasured: Mapping[str, Mapping[str, Sequence[str]]] = UNMEASURED,
) -> str | None:
    """Why ``benchmark``'s result measured at ``commit`` no longer speaks for ``paths`` (``None``: it does): a file
    under them differs at ``HEAD``, unless the change lies wholly in code of :data:`UNMEASURED` that this benchmark
    does not run."""
    if not commit:
        return "the result records no commit"
    if _git("cat-file", "-e", f"{commit}^{{commit}}") is None:
        return f"commit {commit[:9]} is not in this repository"
    changed = _git("diff", "--name-only", commit, "HEAD", "--", *paths)
    if changed is None:
        return None  # no history here to judge by
    for path in changed.splitlines():
        before, after = _git("show", f"{commit}:{path}"), _git("show", f"HEAD:{path}")
        exempt = unmeasured.get(path)
        if exempt is not None and "*" in exempt and benchmark not in exempt["*"]:
            continue  # a file this benchmark does not run
        skip = frozenset(q for q, users in (exempt or {}).items() if benchmark not in users)
        if before is None or after is None or not path.endswith(".py") or _differs(before, after, skip):
            return f"measured at {commit[:9]}, but {path} has changed since"
    return None


def _t(level: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def paired_interval(
    ours: Sequence[float], peer: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``ours - peer`` over paired runs (one seed, one pair), Student's t."""
    if len(ours) != len(peer) or len(ours) < 2:
        raise ValueError(f"need two or more pairs, got {len(ours)} and {len(peer)}")
    diffs = [a - b for a, b in zip(ours, peer, strict=True)]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    half = _t(level, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def ratio_interval(
    ours: Sequence[float], peer: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """``(geometric mean, low, high)`` of ``ours / peer`` over paired runs: the t interval of the log ratios."""
    mean, low, high = paired_interval([math.log(a) for a in ours], [math.log(b) for b in peer], level)
    return math.exp(mean), math.exp(low), math.exp(high)


def verdict(low: float, high: float, target: float) -> str:
    """``"met"`` when the whole interval ``[low, high]`` is at or above ``target``, else ``"not shown"``."""
    return "met" if low >= target else f"not shown ({low:.3g} to {high:.3g} vs {target:g})"


def interval_verdicts(
    pairs: Sequence[Sequence[Mapping[str, float]]],
    speed: str,
    quality: str,
    speed_target: float,
    quality_target: float,
    delta: str | None = None,
) -> dict[str, Any]:
    """Over paired runs ``[(peer, ours), ...]`` (one per seed): the 95 % interval of the speed ratio
    (``throughput_ratio_interval``) and of the quality difference (``<delta>_interval``, default
    ``<quality>_delta``), and the verdict: "met" only when both whole intervals clear their targets."""
    peer, ours = [p[speed] for p, _ in pairs], [o[speed] for _, o in pairs]
    if len(pairs) < 2:
        return {"target": "not shown (one seed: no interval)"}
    speed_interval = ratio_interval(ours, peer)
    quality_interval = paired_interval([o[quality] for _, o in pairs], [p[quality] for p, _ in pairs])
    verdicts = [verdict(speed_interval[1], speed_interval[2], speed_target),
                verdict(quality_interval[1], quality_interval[2], quality_target)]  # fmt: skip
    shown = [v for v in verdicts if v != "met"]
    return {
        "throughput_ratio_interval": speed_interval,
        f"{delta or quality + '_delta'}_interval": quality_interval,
        "target": "met" if not shown else "; ".join(shown),
    }


def interval_text(entry: Mapping[str, Any], key: str, digits: int = 2) -> str:
    """``"1.21 (1.15 to 1.27)"``: ``entry[key]`` and its 95 % interval ``entry[key + "_interval"]`` if any."""
    value = f"{entry[key]:.{digits}f}"
    interval = entry.get(f"{key}_interval")
    return f"{value} ({interval[1]:.{digits}f} to {interval[2]:.{digits}f})" if interval else value
