"""Issue 29's quality studies: the survey's image methods, each from its recipe's offline default, scored on the
export by code that does not import hfcontrast's evaluation.

    python benchmarks/survey_quality.py recipes --jobs 2     # every method's recipe default (Fashion-MNIST)
    python benchmarks/survey_quality.py long_tail --jobs 2   # SupCon, KCL, BCL on the long-tailed demo, 3 seeds
    python benchmarks/survey_quality.py --smoke              # one method of each study, 2 steps, tiny sizes

* **recipes**: each method's recipe with its defaults (one process, one thread, ``--jobs`` at a time, each on a
  core of its own), seed 42. The export folder (the plain backbone) is loaded with ``transformers``'
  ``AutoModel`` and ``AutoImageProcessor``; its pooled features of the 60,000 training and 10,000 test images go
  to a numpy weighted kNN (cosine, k 20, exp(cos / 0.07) votes, the recipes' settings). The same kNN scores three
  random initialisations of the exported architecture (``AutoModel.from_config``, seeds 0 1 2). Target: top-1
  at least the random inits' mean + 3 points. The recipe's own before / after kNN is recorded beside it.
* **long_tail**: ``recipes/simclr.py`` at ``--demo_imbalance_ratio 100`` (the packaged Fashion-MNIST cut to an
  exponential profile, 6,000 to 60 rows a class) with SupCon (``--supcon_label_column label``), KCL and BCL,
  seeds 42 1 2. Balanced accuracy of a logistic regression (scikit-learn) on the export's features of the
  long-tailed training rows, on the balanced test set, by three probes: standardised features (the headline), L2-normalised
  rows (the recipe's own protocol) and the same with classes weighted. Target: KCL and BCL above SupCon (mean over
  the seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, base_parser, format_table, machine_info, mean_sd, save_results

NAME = "survey_quality"
#: method: (recipe, its flags). Everything else is the recipe's default.
RECIPES: dict[str, tuple[str, ...]] = {
    "Barlow Twins": ("redundancy.py", "--method", "barlowtwins"),
    "VICReg": ("redundancy.py", "--method", "vicreg"),
    "DirectCLR": ("simclr.py", "--direct_dims", "64"),
    "CPC": ("cpc.py",),
    "SelfCon": ("simclr.py", "--method", "selfcon"),
    "MixCo": ("simclr.py", "--mix", "mixup"),
    "i-Mix": ("moco.py", "--mix", "cutmix"),
    "SupCon + CE": ("simclr.py", "--hybrid_ce_schedule", "cosine"),
    "KCL": ("simclr.py", "--method", "kcl"),
    "BCL": ("simclr.py", "--method", "bcl"),
}
#: Methods read out on their patch grid as their recipe reads them (CPC v2): (grid, patch px); the rest, whole images.
READOUTS: dict[str, tuple[int, int]] = {"CPC": (6, 8)}
LONG_TAIL: dict[str, tuple[str, ...]] = {
    "SupCon": ("simclr.py", "--supcon_label_column", "label"),
    "KCL": ("simclr.py", "--method", "kcl"),
    "BCL": ("simclr.py", "--method", "bcl"),
}
IMBALANCE, LONG_TAIL_SEEDS, RANDOM_SEEDS = 100.0, (42, 1, 2), (0, 1, 2)
KNN_K, KNN_T, TARGET_POINTS = 20, 0.07, 3.0
#: ``--smoke``: 2 steps on the first 2,000 training rows (at ratio 100 the rarest class keeps 2) and 64 test rows.
SMOKE_TRAIN, SMOKE_TEST = 2000, 64
SMOKE = ("--max_steps", "2", "--per_device_train_batch_size", "16", "--max_train_samples", str(SMOKE_TRAIN),
         "--max_eval_samples", str(SMOKE_TEST), "--eval_strategy", "no", "--knn_k", "5")  # fmt: skip


def train(recipe: tuple[str, ...], out: Path, seed: int, extra: tuple[str, ...], core: int) -> dict[str, Any]:
    """One recipe run on one core and one thread; its ``eval_results.json`` and wall time."""
    script, *flags = recipe
    command = [sys.executable, str(REPO_ROOT / "recipes" / script), *flags, *extra, "--seed", str(seed),
               "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if len(os.sched_getaffinity(0)) > core:
        command = ["taskset", "-c", str(sorted(os.sched_getaffinity(0))[core]), *command]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return {**json.loads((out / "eval_results.json").read_text()), "wall_s": time.perf_counter() - start}


def features(
    model: Any, processor: Any, images: np.ndarray, grid: tuple[int, int] | None = None, batch: int = 500
) -> np.ndarray:
    """Pooled features of ``uint8 [N, H, W]`` images, through the export's own image processor; with ``grid``
    ``(G, p)``, the mean of the features of each image's ``G x G`` patches of ``p`` px (CPC v2's readout)."""
    import torch
    from PIL import Image

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            pixels = processor(
                images=[Image.fromarray(x).convert("RGB") for x in images[i : i + batch]], return_tensors="pt"
            )["pixel_values"]
            if grid is None:
                out.append(model(pixel_values=pixels).pooler_output.flatten(1).float().numpy())
                continue
            g, p = grid
            stride = (pixels.shape[-1] - p) // (g - 1)
            patches = [
                pixels[:, :, r * stride : r * stride + p, c * stride : c * stride + p]
                for r in range(g)
                for c in range(g)
            ]
            pooled = [model(pixel_values=x.contiguous()).pooler_output.flatten(1).float() for x in patches]
            out.append(torch.stack(pooled).mean(0).numpy())
    return np.concatenate(out)


def knn_top1(bank: np.ndarray, bank_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> float:
    """Weighted kNN (Wu et al. 2018): the k most cosine-similar bank rows vote exp(cos / T) for their class."""
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    classes, correct = int(bank_labels.max()) + 1, 0
    for i in range(0, len(test), 1000):
        sims = test[i : i + 1000] @ bank.T
        top = np.argpartition(-sims, KNN_K, axis=1)[:, :KNN_K]
        weights = np.exp(np.take_along_axis(sims, top, axis=1) / KNN_T)
        votes = np.zeros((len(top), classes))
        np.add.at(votes, (np.arange(len(top))[:, None], bank_labels[top]), weights)
        correct += int((votes.argmax(1) == test_labels[i : i + 1000]).sum())
    return correct / len(test)


def score(
    folder: Path,
    data: dict[str, np.ndarray],
    random_seed: int | None = None,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """Features of every image from the export in ``folder`` (or, ``random_seed``, from a random init of its
    architecture), on its patch grid with ``grid``."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    torch.set_num_threads(1)
    processor = AutoImageProcessor.from_pretrained(folder)
    if random_seed is None:
        model = AutoModel.from_pretrained(folder)
    else:
        torch.manual_seed(random_seed)
        model = AutoModel.from_config(AutoConfig.from_pretrained(folder))
    return features(model.eval(), processor, data["images"], grid)


def fashion_mnist(a: argparse.Namespace) -> dict[str, np.ndarray]:
    from hfcontrast.demo.fashion_mnist import fashion_mnist_arrays

    train_x, train_y = fashion_mnist_arrays("train", max_samples=a.max_train)
    test_x, test_y = fashion_mnist_arrays("test", max_samples=a.max_test)
    return {"images": np.concatenate([train_x, test_x]), "labels": np.concatenate([train_y, test_y]).astype(np.int64),
            "n_train": np.array(len(train_x))}  # fmt: skip


def recipes_study(a: argparse.Namespace, folder: Path, data: dict[str, np.ndarray]) -> dict[str, Any]:
    n, labels = int(data["n_train"]), data["labels"]

    def top1(x: np.ndarray) -> float:
        return knn_top1(x[:n], labels[:n], x[n:], labels[n:])

    def one(item: tuple[int, str]) -> dict[str, Any]:
        index, method = item
        out = folder / method.replace(" ", "_").replace("+", "plus")
        run = train(RECIPES[method], out, 42, a.extra, index % a.jobs)
        grid = READOUTS.get(method)
        row = {"method": method, "recipe": " ".join(RECIPES[method]), "readout": grid and list(grid),
               "export_knn_top1": top1(score(out, data, grid=grid)), "recipe_before_knn_top1": run["before_knn_top1"],
               "recipe_after_knn_top1": run["eval_knn_top1"], "wall_s": run["wall_s"], "folder": str(out)}  # fmt: skip
        if grid is not None:  # the whole image too, as every other method is scored
            row["whole_image_knn_top1"] = top1(score(out, data))
        return row

    methods = a.methods or list(RECIPES)
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(one, enumerate(methods)))
    baselines: dict[str, list[float]] = {}  # per exported architecture (config.json) and readout

    def baseline(folder_: Path, grid: tuple[int, int] | None) -> list[float]:
        """The kNN of three random inits of the export's architecture, read out on ``grid``; once per key."""
        key = (folder_ / "config.json").read_text() + str(grid)
        if key not in baselines:
            baselines[key] = [top1(score(folder_, data, s, grid)) for s in RANDOM_SEEDS]
        return baselines[key]

    for row in rows:
        folder_, grid = Path(row["folder"]), READOUTS.get(row["method"])
        row["random_init_knn_top1"] = baseline(folder_, grid)
        row["gain_points"] = 100 * (row["export_knn_top1"] - statistics.mean(row["random_init_knn_top1"]))
        row["target"] = (
            "met" if row["gain_points"] >= TARGET_POINTS else f"not met ({row['gain_points']:+.1f} < +3)"
        )
        if grid is not None:
            row["whole_image_random_init_knn_top1"] = baseline(folder_, None)
    return {"rows": rows, "random_seeds": list(RANDOM_SEEDS), "knn": {"k": KNN_K, "temperature": KNN_T}}


def _balanced_probe(scaling: str, class_weight: str | None = None) -> Any:
    """A scikit-learn logistic regression fitted on ``(x, y)``; its balanced accuracy on ``(test_x, test_y)``.
    ``scaling``: ``standardised`` (each feature to zero mean, unit variance over the training rows, C = 1) or
    ``l2`` (each row to unit length with C = 1 / (1e-4 * rows): the recipe's ``linear_probe`` protocol, its
    weight decay 1e-4 on the mean loss)."""

    def run(x: np.ndarray, y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score
        from sklearn.preprocessing import StandardScaler

        if scaling == "standardised":
            scaler = StandardScaler().fit(x)
            x, test_x, c = scaler.transform(x), scaler.transform(test_x), 1.0
        else:
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            test_x, c = test_x / np.linalg.norm(test_x, axis=1, keepdims=True), 1.0 / (1e-4 * len(x))
        fitted = LogisticRegression(C=c, max_iter=5000, class_weight=class_weight).fit(x, y)
        return float(balanced_accuracy_score(test_y, fitted.predict(test_x)))

    return run


#: The long-tail study's probes, all on the long-tailed training rows: the study's headline (standardised
#: features), the recipe's own protocol reproduced (L2-normalised rows), and the same with classes weighted
#: inversely to their counts (the probe itself corrects the imbalance).
PROBES: dict[str, Any] = {
    "standardised": _balanced_probe("standardised"),
    "l2": _balanced_probe("l2"),
    "l2_class_weighted": _balanced_probe("l2", "balanced"),
}


def _methods(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows))


def long_tail_study(a: argparse.Namespace, folder: Path, data: dict[str, np.ndarray]) -> dict[str, Any]:
    from hfcontrast.demo.long_tail import long_tailed_indices

    n, labels = int(data["n_train"]), data["labels"]
    jobs = [(m, s) for s in (a.seeds or LONG_TAIL_SEEDS) for m in (a.methods or list(LONG_TAIL))]

    def one(item: tuple[int, tuple[str, int]]) -> dict[str, Any]:
        index, (method, seed) = item
        out = folder / f"long-tail-{method}-{seed}"
        run = train(
            LONG_TAIL[method], out, seed, (*a.extra, "--demo_imbalance_ratio", str(IMBALANCE)), index % a.jobs
        )
        x = score(out, data)
        kept = long_tailed_indices(labels[:n], IMBALANCE, seed)  # the recipe's training rows
        probes = {name: probe(x[kept], labels[kept], x[n:], labels[n:]) for name, probe in PROBES.items()}
        return {"method": method, "seed": seed, "balanced_accuracy": probes["standardised"], "probes": probes,
                "train_rows": len(kept), "recipe_linear_probe_top1": run.get("eval_knn_linear_probe_top1"),
                "wall_s": run["wall_s"]}  # fmt: skip

    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(one, enumerate(jobs)))
    means = {
        probe: {
            m: statistics.mean(r["probes"][probe] for r in rows if r["method"] == m) for m in _methods(rows)
        }
        for probe in PROBES
    }
    verdicts = {
        probe: {
            m: "met" if by[m] > by["SupCon"] else "not met" for m in by if m != "SupCon" and "SupCon" in by
        }
        for probe, by in means.items()
    }
    return {
        "rows": rows,
        "imbalance_ratio": IMBALANCE,
        "mean_balanced_accuracy": means["standardised"],
        "beats_supcon": verdicts["standardised"],
        "mean_balanced_accuracy_by_probe": means,
        "beats_supcon_by_probe": verdicts,
    }


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("studies", nargs="*", help="recipes | long_tail (default: both)")
    parser.add_argument("--jobs", type=int, default=1, help="recipe runs at a time, each pinned to a core")
    parser.add_argument("--methods", nargs="*", help="a subset of the study's methods")
    parser.add_argument("--seeds", nargs="*", type=int, help="long_tail: its seeds (default 42 1 2)")
    parser.add_argument("--output", default=None, help="where the runs go (default: a temporary folder)")
    a = parser.parse_args()
    a.extra, a.max_train, a.max_test = (), None, None
    studies = a.studies or ["recipes", "long_tail"]
    if set(studies) - {"recipes", "long_tail"}:
        parser.error(
            f"the studies are recipes and long_tail, not {sorted(set(studies) - {'recipes', 'long_tail'})}"
        )
    if a.smoke:
        a.results_dir = tempfile.mkdtemp(prefix="bench_smoke_")
        a.extra, a.max_train, a.max_test, a.seeds = SMOKE, SMOKE_TRAIN, SMOKE_TEST, [42]
    folder = Path(a.output or tempfile.mkdtemp(prefix="bench_survey_"))
    data = fashion_mnist(a)
    for study in studies:
        if a.smoke:  # one method each: CPC (patches, its own recipe) and KCL (labels, the long-tailed rows)
            a.methods = ["CPC"] if study == "recipes" else ["KCL"]
        result = (recipes_study if study == "recipes" else long_tail_study)(a, folder, data)
        if study == "recipes":
            rows = [[r["method"], f"{100 * r['export_knn_top1']:.1f}", mean_sd([100 * v for v in r["random_init_knn_top1"]], 1),
                     f"{r['gain_points']:+.1f}", r["target"], f"{r['wall_s'] / 60:.1f}"] for r in result["rows"]]  # fmt: skip
            print(format_table(["method", "export kNN", "random inits", "gain", ">= +3", "minutes"], rows))
        else:
            print(json.dumps(result["mean_balanced_accuracy"]), json.dumps(result["beats_supcon"]))
        seeds = list(a.seeds or LONG_TAIL_SEEDS) if study == "long_tail" else [42]
        settings = {"seeds": seeds, "jobs": a.jobs, "threads_per_run": 1, "runs": str(folder)}
        path = save_results(
            a.results_dir, f"{NAME}_{study}", {"machine": machine_info(), "settings": settings, **result}
        )
        print(f"results: {path}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
