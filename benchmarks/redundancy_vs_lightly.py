"""Barlow Twins, VICReg and DirectCLR on Fashion-MNIST: hfcontrast vs lightly (its losses, transforms, plain loop).

    python benchmarks/redundancy_vs_lightly.py --quick --seeds 42 1 2   # 150 steps, mean +- sd over 3 seeds
    python benchmarks/redundancy_vs_lightly.py --quick --seeds 42 1 2 3 4 5 6 7 8 9 --jobs 2   # two seeds at a time

The peer runs in its own virtual environment (``--peer-python``), as for ``cluster_vs_lightly.py``, whose crops
(2 x 28 px, scale 0.08-1, jitter 0.5, grayscale 0.2, flip), data, initial weights and kNN scoring this script reuses.
Same for both: the backbone (the small ``transformers`` ResNet of ``image_setup.py``) and, for Barlow Twins and
VICReg, the projection (Linear-BN-ReLU-Linear 256 -> 256 -> 128) with the same initial weights; batch, steps,
seed, AdamW at a constant lr, no weight decay, no clipping. Hyperparameters: Barlow Twins lambda 5e-3; VICReg
25 / 25 / 1; DirectCLR: no projector, NT-Xent at tau 0.1 on the first 64 of the backbone's 256 dimensions.

* peer: lightly's ``SimCLRTransform``, ``BarlowTwinsLoss`` / ``VICRegLoss`` / ``NTXentLoss`` (lightly has no
  DirectCLR: its NT-Xent on the sliced features is the method), a plain loop;
* ours: ``MultiViewCollator`` -> ``ContrastiveVisionModel`` -> ``BarlowTwins`` / ``VICReg`` /
  ``SimCLR(direct_dims=64)`` -> ``ContrastiveTrainer``.

Throughput: images/s after the warm-up steps. Quality: weighted kNN (cosine, k 200, T 0.1) of the backbone
features of both, scored here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import interval_verdicts
from cluster_vs_lightly import CROPS, mean_of, our_view_pipelines
from common import (
    SEEDS,
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    mean_sd,
    peak_rss_mb,
    peer_missing,
    peer_versions,
    ratio,
    run_worker,
    save_results,
    write_result,
)
from image_setup import (
    MEAN,
    STD,
    build_backbone,
    build_head,
    calibrate,
    embed_eval_arrays,
    load_init,
    our_resnet_model,
    peer_loader,
    plain_loop,
    train_ours,
)
from image_vs_lightly import DEFAULT_PEER_PYTHON, baseline_embeddings, knn_top1, prepare

NAME = "redundancy_vs_lightly"
METHODS = ("barlowtwins", "vicreg", "directclr")
DIRECT_DIMS, TEMPERATURE = 64, 0.1
TARGET_THROUGHPUT, TARGET_KNN_DELTA = 1.0, -1.0


def ours_worker(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import set_seed

    from hfcontrast.collators import MultiViewCollator
    from hfcontrast.objectives import BarlowTwins, SimCLR, VICReg

    if a.threads:
        torch.set_num_threads(a.threads)
    calib = calibrate(a.threads)
    set_seed(a.seed)
    head = "none" if a.method == "directclr" else "mlp"
    model = our_resnet_model(a.init, head)
    objective = {"barlowtwins": lambda: BarlowTwins(5e-3), "vicreg": lambda: VICReg(25.0, 25.0, 1.0),
                 "directclr": lambda: SimCLR(TEMPERATURE, direct_dims=DIRECT_DIMS)}[a.method]()  # fmt: skip
    collator = MultiViewCollator("image", pipeline=our_view_pipelines("nnclr")[0], seed=a.seed)
    return train_ours(a, model, objective, collator, calib)


def lightly_worker(a: argparse.Namespace) -> dict[str, Any]:
    """lightly's documented pattern (examples/pytorch/barlowtwins.py, vicreg.py; NT-Xent on sliced features)."""
    import numpy as np
    import torch
    from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
    from lightly.transforms import SimCLRTransform

    if a.threads:
        torch.set_num_threads(a.threads)
    calib = calibrate(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    transform = SimCLRTransform(input_size=28, min_scale=CROPS["nnclr"][0][0], gaussian_blur=0.0, cj_strength=0.5,
                                normalize={"mean": list(MEAN), "std": list(STD)})  # fmt: skip
    loader = peer_loader(transform, a)
    backbone, head = build_backbone(), build_head()
    backbone_state, head_state = load_init(a.init)
    backbone.load_state_dict(backbone_state)
    head.load_state_dict(head_state)
    params = list(backbone.parameters())
    if a.method == "directclr":
        criterion: Any = NTXentLoss(temperature=TEMPERATURE)
    else:
        criterion = BarlowTwinsLoss(lambda_param=5e-3) if a.method == "barlowtwins" else VICRegLoss(25.0, 25.0, 1.0)
        params += list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)

    def features(x: Any) -> Any:
        return backbone(pixel_values=x).pooler_output.flatten(1)

    def loss_of(views: Any, step: int) -> Any:
        if a.method == "directclr":
            return criterion(features(views[0])[:, :DIRECT_DIMS], features(views[1])[:, :DIRECT_DIMS])
        return criterion(head(features(views[0])), head(features(views[1])))

    backbone.train()
    head.train()
    timer, losses = plain_loop(loader, optimizer, a.steps, loss_of)
    rss = peak_rss_mb()
    backbone.eval()
    embed_eval_arrays(features, a.eval_dir, a.prefix)
    return {"lib": "lightly", "peak_rss_mb": rss, "train_loss": sum(losses) / len(losses), "calib_s": calib, "losses": losses,
            "torch": torch.__version__, **timer.throughput(a.warmup, a.batch_size)}  # fmt: skip


def measure(a: argparse.Namespace, tmp: Path, method: str, lib: str, seed: int, core: int | None = None) -> dict[str, Any]:
    """One training run of ``lib`` in its own process (with ``core``, pinned to it), its kNN top-1 scored here."""
    prefix = f"{method}-{lib}"
    argv = [__file__, "--worker", lib, "--method", method, "--init", str(tmp / "init.safetensors"),
            "--eval-dir", str(tmp), "--prefix", prefix, "--seed", str(seed)]  # fmt: skip
    for flag in ("steps", "warmup", "batch_size", "lr", "threads", "num_workers", "train_samples"):
        argv += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
    python = a.peer_python if lib == "lightly" else sys.executable
    run = run_worker(argv, python=python, launcher=None if core is None else ["taskset", "-c", str(core), python])
    run.update(method=method, lib=lib, seed=seed, images_per_s=run["samples_per_s"], knn_top1=knn_top1(tmp, prefix, a.knn_k, 0.1))
    print(f"[{method} {lib:7s} seed {seed}] {run['images_per_s']:.1f} images/s, kNN {run['knn_top1']:.2f}, "
          f"loss {run['train_loss']:.3f}", flush=True)  # fmt: skip
    return run


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("ours", "lightly"))
    parser.add_argument("--method", choices=METHODS)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    for flag in ("--init", "--eval-dir", "--prefix", "--result"):
        parser.add_argument(flag)
    parser.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="one pair of runs per seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=60000)
    parser.add_argument("--bank-size", type=int, default=10000)
    parser.add_argument("--knn-k", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1, help="seeds at a time, each pinned to a core")
    a = parser.parse_args()
    if a.worker:
        return write_result(a.result, (ours_worker if a.worker == "ours" else lightly_worker)(a))
    smoke = apply_smoke(a, steps=2, warmup=1, batch_size=16, train_samples=64, bank_size=64, knn_k=5, seeds=[42])
    a.steps = a.steps or (150 if a.quick else 400)
    peers = () if peer_missing(a.peer_python, smoke, "lightly") else ("lightly",)
    tmp = Path(tempfile.mkdtemp(prefix="bench_redundancy_"))
    cores = sorted(os.sched_getaffinity(0))

    def one_seed(item: tuple[int, int]) -> tuple[float, list[dict[str, Any]]]:
        """Every method and library at one seed, from that seed's initial weights, shared by both libraries."""
        repeat, seed = item
        folder, core = tmp / str(seed), cores[repeat % len(cores)] if a.jobs > 1 else None
        folder.mkdir()
        prepare(folder, a.bank_size, seed)
        baseline_embeddings(folder)
        order = [*peers, "ours"] if repeat % 2 == 0 else ["ours", *peers]  # alternate who goes first
        seed_runs = [measure(a, folder, method, lib, seed, core) for method in a.methods for lib in order]
        return knn_top1(folder, "init", a.knn_k, 0.1), seed_runs

    try:
        with ThreadPoolExecutor(a.jobs) as pool:
            done = list(pool.map(one_seed, enumerate(a.seeds)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    before = {seed: at_init for seed, (at_init, _) in zip(a.seeds, done, strict=True)}
    runs = [run for _, seed_runs in done for run in seed_runs]
    if not peers:
        print("[smoke] hfcontrast ran; without the peer there is nothing to compare")
        return
    summary, rows = {}, []
    for method in a.methods:
        pairs = [[next(r for r in runs if (r["method"], r["lib"], r["seed"]) == (method, lib, seed)) for lib in ("lightly", "ours")]
                 for seed in a.seeds]  # fmt: skip
        ratios = [ratio(ours["images_per_s"], peer["images_per_s"]) for peer, ours in pairs]
        deltas = [ours["knn_top1"] - peer["knn_top1"] for peer, ours in pairs]
        entry = {"lightly": mean_of(pairs, 0), "ours": mean_of(pairs, 1), "throughput_ratio": sum(ratios) / len(ratios),
                 "throughput_ratios": ratios, "knn_delta": sum(deltas) / len(deltas), "knn_deltas": deltas}  # fmt: skip
        entry.update(interval_verdicts(pairs, "images_per_s", "knn_top1", TARGET_THROUGHPUT, TARGET_KNN_DELTA, "knn_delta"))
        summary[method] = entry
        rows.append([method, mean_sd([p["images_per_s"] for p, _ in pairs], 1), mean_sd([o["images_per_s"] for _, o in pairs], 1),
                     mean_sd(ratios, 2), mean_sd([p["knn_top1"] for p, _ in pairs], 2),
                     mean_sd([o["knn_top1"] for _, o in pairs], 2), mean_sd(deltas, 2), entry["target"]])  # fmt: skip
    settings = {k: getattr(a, k) for k in ("quick", "steps", "batch_size", "lr", "threads", "train_samples", "bank_size", "jobs")}
    save_results(Path(a.results_dir), NAME, {"name": NAME, "machine": machine_info(), "settings": {**settings, "seeds": a.seeds},
                                             "knn_top1_at_init": before, "summary": summary, "runs": runs},
                 peer_versions(a.peer_python))  # fmt: skip
    print(f"\n{NAME}: kNN top-1 of the initial weights {mean_sd(list(before.values()), 2)}; target images/s >= "
          f"{TARGET_THROUGHPUT}x lightly at kNN delta >= {TARGET_KNN_DELTA} points (means over seeds {a.seeds})")  # fmt: skip
    print(format_table(["method", "lightly img/s", "ours img/s", "ratio", "lightly kNN", "ours kNN", "delta (pts)",
                        "verdict (95% CI)"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
