"""SimCLR and MoCo v2 on Fashion-MNIST: hfcontrast vs lightly (its losses, transforms, plain loop).

    python benchmarks/image_vs_lightly.py --quick      # ~6 min on 2 idle CPU cores
    python benchmarks/image_vs_lightly.py              # full

lightly needs torchvision, which the project's environment must not have, so the peer runs in its
own virtual environment (``--peer-python``, default ``/work/lightly-venv/bin/python``; see
benchmarks/README.md for the one-line install).

Same for both: the backbone (``transformers`` ``ResNetModel``, basic blocks, hidden 32/64/128/256, one
block per stage) and the projection head (Linear-BN-ReLU-Linear, 256 -> 256 -> 128), **with the same
initial weights** (saved once here, loaded by both); the augmentation parameters (SimCLR: crop 0.08-1,
jitter 0.8/0.8/0.8/0.2 p 0.8, grayscale 0.2, flip 0.5; MoCo v2: crop 0.2-1, jitter 0.4/0.4/0.4/0.1;
no blur at 28 px); batch, steps, seed, optimizer (AdamW, constant lr, no weight decay), temperature
(SimCLR 0.5, MoCo 0.2), MoCo momentum (0.99 constant) and queue (4096 keys).

* peer: lightly ``SimCLRTransform`` / ``MoCoV2Transform``, ``NTXentLoss`` (``memory_bank_size`` for
  MoCo), ``update_momentum``, a ``DataLoader`` over the images and a plain PyTorch loop;
* ours: ``load_fashion_mnist`` -> ``MultiViewCollator(simclr_pipeline | mocov2_pipeline)`` ->
  ``ContrastiveVisionModel`` -> ``SimCLR`` / ``MoCo(version="v2")`` -> ``ContrastiveTrainer``.

Throughput: images/s (one image = one sample, two views) after the warm-up steps. Quality: both
workers export backbone features (eval mode) of the same pre-processed test and memory-bank images to
``.npy``; one weighted-kNN (``hfcontrast.evaluation.knn.knn_classify``, cosine, k 200, T 0.1) scores
both here. Each worker also times a fixed forward+backward of the backbone (``calib_s``) so that a
difference between the two environments' torch builds shows up on its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import interval_text, interval_verdicts
from common import (
    SEEDS,
    LoadSampler,
    LoopTimer,
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    mean_sd,
    median,
    peak_rss_mb,
    peer_missing,
    peer_versions,
    plot_side_by_side,
    ratio,
    run_worker,
    save_results,
    step_timer_callback,
    wait_until_quiet,
    write_result,
)
from image_setup import (
    IMAGE_SIZE,
    MEAN,
    METHODS,
    MOCO_MOMENTUM,
    QUEUE,
    RESNET,
    STD,
    build_backbone,
    build_head,
    calibrate,
    embed_eval_arrays,
    load_init,
    peer_loader,
    plain_loop,
)

NAME = "image_vs_lightly"
TARGET_THROUGHPUT = 1.0
TARGET_KNN_DELTA = -1.0  # points
DEFAULT_PEER_PYTHON = "/work/lightly-venv/bin/python"


# ----------------------------------------------------------------------------- workers
def ours_worker(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import ResNetConfig, set_seed

    from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel
    from hfcontrast.augment import mocov2_pipeline, simclr_pipeline
    from hfcontrast.collators import MultiViewCollator
    from hfcontrast.demo.fashion_mnist import load_fashion_mnist
    from hfcontrast.objectives import MoCo, SimCLR
    from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

    if a.threads:
        torch.set_num_threads(a.threads)
    calib = calibrate(a.threads)
    set_seed(a.seed)
    spec = METHODS[a.method]
    config = ContrastiveVisionConfig(
        backbone_config=ResNetConfig(**RESNET),
        projection="mlp",
        projection_dim=128,
        projection_hidden_dim=256,
    )
    model = ContrastiveVisionModel(config)
    backbone, head = load_init(a.init)
    model.backbone.load_state_dict(backbone)
    assert model.projection is not None
    model.projection.layers.load_state_dict(head)
    if a.method == "simclr":
        pipeline = simclr_pipeline(
            size=IMAGE_SIZE, crop_scale=(spec["min_scale"], 1.0), jitter_strength=spec["jitter"], blur_p=0.0
        )
        objective: Any = SimCLR(temperature=spec["temperature"])
    else:
        pipeline = mocov2_pipeline(size=IMAGE_SIZE, crop_scale=(spec["min_scale"], 1.0), blur_p=0.0)
        objective = MoCo(
            model,
            version="v2",
            temperature=spec["temperature"],
            queue_size=QUEUE,
            momentum=MOCO_MOMENTUM,
            final_momentum=MOCO_MOMENTUM,
        )
    train = load_fashion_mnist("train", max_samples=a.train_samples)
    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = ContrastiveTrainer(
            model=model,
            args=ContrastiveTrainingArguments(
                output_dir=scratch,
                per_device_train_batch_size=a.batch_size,
                learning_rate=a.lr,
                max_steps=a.steps,
                seed=a.seed,
                data_seed=a.seed,
                lr_scheduler_type="constant",
                weight_decay=0.0,
                warmup_steps=0,
                logging_steps=10,
                save_strategy="no",
                report_to="none",
                disable_tqdm=True,
                dataloader_drop_last=True,
                dataloader_num_workers=a.num_workers,
                use_cpu=True,
                max_grad_norm=0.0,  # lightly's loop does not clip gradients (Trainer's default clips at 1.0)
            ),
            objective=objective,
            train_dataset=train,
            data_collator=MultiViewCollator(image_column="image", pipeline=pipeline, seed=a.seed),
            callbacks=[step_timer_callback(timer)],
        )
        result = trainer.train()
    rss = peak_rss_mb()
    model.eval()
    embed_eval_arrays(lambda x: model(pixel_values=x).embeddings, a.eval_dir, a.prefix)
    return {
        "lib": "ours",
        "peak_rss_mb": rss,
        "train_loss": float(result.training_loss),
        "calib_s": calib,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **timer.throughput(a.warmup, a.batch_size),
    }


def lightly_worker(a: argparse.Namespace) -> dict[str, Any]:
    """lightly's documented pattern (examples/pytorch/simclr.py, moco.py): its transform in a
    ``DataLoader``, a plain loop, ``NTXentLoss`` (with ``memory_bank_size`` for MoCo), ``update_momentum``."""
    import copy

    import numpy as np
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import MoCoV2Transform, SimCLRTransform

    if a.threads:
        torch.set_num_threads(a.threads)
    calib = calibrate(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    spec = METHODS[a.method]
    if a.method == "simclr":
        transform: Any = SimCLRTransform(
            input_size=IMAGE_SIZE, min_scale=spec["min_scale"], cj_strength=spec["jitter"], gaussian_blur=0.0
        )
    else:
        transform = MoCoV2Transform(input_size=IMAGE_SIZE, min_scale=spec["min_scale"], gaussian_blur=0.0)
    loader = peer_loader(transform, a)
    backbone, head = build_backbone(), build_head()
    backbone_state, head_state = load_init(a.init)
    backbone.load_state_dict(backbone_state)
    head.load_state_dict(head_state)
    if a.method == "moco":
        backbone_m, head_m = copy.deepcopy(backbone), copy.deepcopy(head)
        deactivate_requires_grad(backbone_m)
        deactivate_requires_grad(head_m)
        criterion = NTXentLoss(temperature=spec["temperature"], memory_bank_size=(QUEUE, 128))
    else:
        criterion = NTXentLoss(temperature=spec["temperature"])
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)

    def embed(net: Any, projector: Any, x: Any) -> Any:
        return projector(net(pixel_values=x).pooler_output.flatten(1))

    def loss_of(views: Any, step: int) -> Any:
        x0, x1 = views[0], views[1]
        if a.method == "moco":
            update_momentum(backbone, backbone_m, m=MOCO_MOMENTUM)
            update_momentum(head, head_m, m=MOCO_MOMENTUM)
            query = embed(backbone, head, x0)
            with torch.no_grad():
                key = embed(backbone_m, head_m, x1).detach()
            return criterion(query, key)
        return criterion(embed(backbone, head, x0), embed(backbone, head, x1))

    backbone.train()
    head.train()
    timer, losses = plain_loop(loader, optimizer, a.steps, loss_of)
    rss = peak_rss_mb()
    backbone.eval()
    embed_eval_arrays(lambda x: backbone(pixel_values=x).pooler_output.flatten(1), a.eval_dir, a.prefix)
    return {
        "lib": "lightly",
        "peak_rss_mb": rss,
        "train_loss": sum(losses) / len(losses),
        "calib_s": calib,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **timer.throughput(a.warmup, a.batch_size),
    }


# ----------------------------------------------------------------------------- driver
def prepare(folder: Path, bank_size: int, seed: int) -> None:
    """Shared initial weights, training images for the peer, pre-processed kNN bank and test images."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from hfcontrast.demo.fashion_mnist import fashion_mnist_dir, idx_file, read_idx

    torch.manual_seed(seed)
    state = {f"backbone.{k}": v for k, v in build_backbone().state_dict().items()}
    state.update({f"head.{k}": v for k, v in build_head().state_dict().items()})
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "init.safetensors"))
    root = fashion_mnist_dir()
    train = read_idx(idx_file(root, "train-images-idx3-ubyte"))
    train_labels = read_idx(idx_file(root, "train-labels-idx1-ubyte"))
    test = read_idx(idx_file(root, "t10k-images-idx3-ubyte"))
    test_labels = read_idx(idx_file(root, "t10k-labels-idx1-ubyte"))
    np.save(folder / "train_images.npy", train)
    mean = np.asarray(MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(STD, dtype=np.float32)[None, :, None, None]

    def preprocess(images: Any) -> Any:  # grayscale -> RGB, to [0, 1], ImageNet normalisation
        x = np.repeat(images[:, None].astype(np.float32) / 255.0, 3, axis=1)
        return ((x - mean) / std).astype(np.float32)

    np.save(folder / "bank.npy", preprocess(train[:bank_size]))
    np.save(folder / "bank_labels.npy", train_labels[:bank_size].astype(np.int64))
    np.save(folder / "test.npy", preprocess(test))
    np.save(folder / "test_labels.npy", test_labels.astype(np.int64))


def knn_top1(folder: Path, prefix: str, k: int, temperature: float) -> float:
    import numpy as np
    import torch

    from hfcontrast.evaluation.knn import knn_classify

    bank = torch.from_numpy(np.load(folder / f"{prefix}_bank.npy"))
    test = torch.from_numpy(np.load(folder / f"{prefix}_test.npy"))
    bank_labels = torch.from_numpy(np.load(folder / "bank_labels.npy"))
    test_labels = torch.from_numpy(np.load(folder / "test_labels.npy"))
    predictions = knn_classify(bank, bank_labels, test, k=k, temperature=temperature, num_classes=10)
    return 100.0 * float((predictions == test_labels).float().mean())


def baseline_embeddings(folder: Path) -> None:
    backbone = build_backbone()
    backbone.load_state_dict(load_init(str(folder / "init.safetensors"))[0])
    backbone.eval()
    embed_eval_arrays(lambda x: backbone(pixel_values=x).pooler_output.flatten(1), str(folder), "init")


def plot(path: Path, summary: dict[str, Any]) -> None:
    plot_side_by_side(
        path, summary, [("images_per_s", "training images/s (median)"), ("knn_top1", "kNN top-1 %")],
        [("lightly", "lightly"), ("ours", "hfcontrast")],
    )  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("ours", "lightly"))
    parser.add_argument("--method", choices=tuple(METHODS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--init")
    parser.add_argument("--eval-dir")
    parser.add_argument("--prefix")
    parser.add_argument("--result")
    parser.add_argument("--peer-python", default=os.environ.get("LIGHTLY_PYTHON", DEFAULT_PEER_PYTHON))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=42, help="a worker's seed")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="one pair of runs per seed, each its own initial weights (the verdict's interval)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (0: torch default; default: 1 with --quick, else 0)",
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers, both libraries")
    parser.add_argument("--train-samples", type=int, default=60000)
    parser.add_argument(
        "--bank-size", type=int, default=None, help="kNN memory bank: first N training images"
    )
    parser.add_argument("--knn-k", type=int, default=200)
    parser.add_argument("--knn-temperature", type=float, default=0.1)
    a = parser.parse_args()
    if a.threads is None:  # one thread per run on a shared 2-core machine: no spin-wait oversubscription
        a.threads = 1 if a.quick else 0
    if a.worker == "ours":
        return write_result(a.result, ours_worker(a))
    if a.worker == "lightly":
        return write_result(a.result, lightly_worker(a))

    smoke = apply_smoke(
        a, steps=2, warmup=1, batch_size=16, bank_size=64, train_samples=64, knn_k=5, seeds=[42]
    )
    a.steps = a.steps or (150 if a.quick else 600)  # kNN needs ~100+ steps to move off the initial weights
    a.warmup = a.warmup or (5 if a.quick else 10)
    a.batch_size = a.batch_size or (128 if a.quick else 256)
    a.bank_size = a.bank_size or (10000 if a.quick else 60000)
    libs = ("ours",) if peer_missing(a.peer_python, smoke, "lightly") else ("lightly", "ours")
    quiet = wait_until_quiet(a.wait_quiet) if a.wait_quiet else None
    tmp = Path(tempfile.mkdtemp(prefix="bench_image_"))
    runs: list[dict[str, Any]] = []
    before: dict[int, float] = {}
    try:
        with LoadSampler() as load:
            for rep, seed in enumerate(a.seeds):
                prepare(tmp, a.bank_size, seed)  # each seed its own initial weights, shared by both libraries
                baseline_embeddings(tmp)
                before[seed] = knn_top1(tmp, "init", a.knn_k, a.knn_temperature)
                for method in a.methods:
                    for lib in libs if rep % 2 == 0 else libs[::-1]:
                        prefix = f"{method}-{lib}-{seed}"
                        argv = [
                            __file__,
                            "--worker",
                            lib,
                            "--method",
                            method,
                            "--init",
                            str(tmp / "init.safetensors"),
                            "--eval-dir",
                            str(tmp),
                            "--prefix",
                            prefix,
                            "--seed",
                            str(seed),
                        ]
                        for flag in (
                            "steps",
                            "warmup",
                            "batch_size",
                            "lr",
                            "threads",
                            "num_workers",
                            "train_samples",
                        ):
                            argv += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
                        python = a.peer_python if lib == "lightly" else sys.executable
                        run = run_worker(argv, python=python)
                        run.update(
                            method=method,
                            seed=seed,
                            images_per_s=run["samples_per_s"],
                            knn_top1=knn_top1(tmp, prefix, a.knn_k, a.knn_temperature),
                        )
                        runs.append(run)
                        print(
                            f"[{method} seed {seed} {lib:7s}] {run['images_per_s']:.1f} images/s, kNN "
                            f"{run['knn_top1']:.2f}, calib {run['calib_s'] * 1000:.0f} ms, "
                            f"loss {run['train_loss']:.3f}, torch {run['torch']}",
                            flush=True,
                        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if libs == ("ours",):
        print("[smoke] hfcontrast ran; without the peer there is nothing to compare")
        return

    summary: dict[str, Any] = {}
    rows = []
    for method in a.methods:
        entry: dict[str, Any] = {}
        for lib in ("lightly", "ours"):
            mine = [r for r in runs if r["method"] == method and r["lib"] == lib]
            entry[lib] = {
                k: median(r[k] for r in mine)
                for k in ("images_per_s", "samples_per_cpu_s", "knn_top1", "peak_rss_mb", "calib_s")
            }
        entry["throughput_ratio"] = ratio(entry["ours"]["images_per_s"], entry["lightly"]["images_per_s"])
        entry["cpu_throughput_ratio"] = ratio(
            entry["ours"]["samples_per_cpu_s"], entry["lightly"]["samples_per_cpu_s"]
        )
        entry["calib_ratio"] = ratio(entry["lightly"]["calib_s"], entry["ours"]["calib_s"])
        entry["knn_delta"] = entry["ours"]["knn_top1"] - entry["lightly"]["knn_top1"]
        pairs = [[next(r for r in runs if (r["method"], r["seed"], r["lib"]) == (method, seed, lib)) for lib in ("lightly", "ours")]
                 for seed in a.seeds]  # fmt: skip
        entry.update(
            interval_verdicts(
                pairs, "images_per_s", "knn_top1", TARGET_THROUGHPUT, TARGET_KNN_DELTA, "knn_delta"
            )
        )
        summary[method] = entry
        rows.append([method, entry["lightly"]["images_per_s"], entry["ours"]["images_per_s"],
                     interval_text(entry, "throughput_ratio"), entry["cpu_throughput_ratio"], entry["calib_ratio"],
                     entry["lightly"]["knn_top1"], entry["ours"]["knn_top1"], interval_text(entry, "knn_delta"),
                     entry["target"]])  # fmt: skip

    info = machine_info()
    info.update(load.summary())
    if quiet:
        info["wait_quiet"] = quiet
    settings = {
        k: getattr(a, k)
        for k in (
            "quick",
            "steps",
            "warmup",
            "batch_size",
            "lr",
            "seed",
            "threads",
            "num_workers",
            "train_samples",
            "bank_size",
            "knn_k",
            "knn_temperature",
        )
    }
    settings.update(
        seeds=a.seeds,
        image_size=IMAGE_SIZE,
        resnet=RESNET,
        methods=METHODS,
        moco_momentum=MOCO_MOMENTUM,
        queue=QUEUE,
    )
    payload = {
        "name": NAME,
        "machine": info,
        "settings": settings,
        "knn_top1_at_init": before,
        "summary": summary,
        "runs": runs,
        "targets": {"throughput_ratio": TARGET_THROUGHPUT, "knn_delta_points": TARGET_KNN_DELTA},
    }
    results_dir = Path(a.results_dir)
    save_results(results_dir, NAME, payload, peer_versions(a.peer_python))
    plot(results_dir / f"{NAME}.png", summary)
    print(
        f"\nload average (1 min) during the runs: {info['load1_min']:.2f} .. {info['load1_max']:.2f}; "
        f"kNN top-1 of the shared initial weights: {mean_sd(list(before.values()), 2)}"
    )
    print(f"{NAME}: medians over seeds {a.seeds} (one alternated pair each), 95% intervals over the pairs; target "
          f"images/s >= {TARGET_THROUGHPUT}x lightly at kNN delta >= {TARGET_KNN_DELTA} points, met only when the "
          "whole interval clears it (calib = lightly-venv torch time / ours: 1.0 = same speed)")  # fmt: skip
    print(
        format_table(
            [
                "method",
                "lightly img/s",
                "ours img/s",
                "ratio",
                "ratio (CPU time)",
                "calib",
                "lightly kNN",
                "ours kNN",
                "delta (pts)",
                "target",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
