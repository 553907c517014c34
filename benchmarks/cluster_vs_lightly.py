"""SwAV, DINO and NNCLR on Fashion-MNIST: hfcontrast vs lightly (its losses, heads, transforms, plain loop).

    python benchmarks/cluster_vs_lightly.py --quick      # ~25 min on one idle CPU core
    python benchmarks/cluster_vs_lightly.py --quick --seeds 42 1 2   # mean +- sd over 3 seeds (~75 min)
    python benchmarks/cluster_vs_lightly.py --methods swav --seeds 42 1 2   # 400 steps -> ..._swav_400steps.json

The peer runs in its own virtual environment (``--peer-python``, see benchmarks/README.md), as for
``image_vs_lightly.py``, whose data preparation and kNN scoring this script reuses.

Same for both: the backbone (the small ``transformers`` ResNet of ``image_setup.py``) with the same initial
weights, the projection (SwAV, NNCLR: Linear-BN-ReLU-Linear 256 -> 256 -> 128, same initial weights), the
crops (SwAV: 2 x 28 px, scale 0.14-1, + 4 x 12 px, 0.05-0.14; DINO: 2 x 28 px, 0.4-1, + 4 x 12 px, 0.05-0.4;
NNCLR: 2 x 28 px, 0.08-1), jitter strength 0.5, grayscale 0.2, flip 0.5, no blur or solarisation, batch,
steps, seed, optimizer (AdamW, constant lr, no weight decay, no clipping), and the hyperparameters: SwAV 100
prototypes (same initial weights, no bias as in the paper: lightly's prototype layer has a learnable one, zeroed
and frozen here unless ``--peer-prototype-bias``), tau 0.1, eps 0.05, 3 Sinkhorn iterations; DINO head 256 -> 512 -> 64 ->
1024 (same initial weights, :func:`dino_head_init`: lightly's last layer is weight-normalised, as in the paper,
so it starts from the same directions with unit norms; ours has no weight norm), tau_s 0.1, tau_t 0.04, centre momentum 0.9, teacher momentum 0.99 -> 1 (cosine); NNCLR tau 0.1,
support 4096, no predictor.

* peer: lightly's ``SwaVTransform`` / ``DINOTransform`` / ``SimCLRTransform``, ``SwaVLoss`` +
  ``SwaVPrototypes`` (normalised each step), ``DINOLoss`` + ``DINOProjectionHead`` (weight-normalised last
  layer, as in the paper) + ``update_momentum``, ``NTXentLoss`` + ``NNMemoryBankModule``, a plain loop;
* ours: ``MultiViewCollator.multi_crop`` / ``MultiViewCollator`` -> ``ContrastiveVisionModel`` -> ``SwAV`` /
  ``DINO`` / ``NNCLR`` -> ``ContrastiveTrainer``.

Throughput: images/s after the warm-up steps. Quality: weighted kNN (cosine, k 200, T 0.1) of the backbone
features of both, scored here. Diagnostics (``peer_diagnostics.py``): ``--peer-views ours`` gives the peer our
crops, ``--replay-dir x`` trains the peer on exactly our batches (ours runs first and records them).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import interval_verdicts
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
    IMAGE_SIZE,
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
from peer_diagnostics import pipeline_transform, recording, replayed

NAME = "cluster_vs_lightly"
METHODS = ("swav", "dino", "nnclr")
LOCAL_SIZE, LOCAL_CROPS, PROTOTYPES, DINO_OUT, SUPPORT = 12, 4, 100, 1024, 4096
CROPS = {"swav": ((0.14, 1.0), (0.05, 0.14)), "dino": ((0.4, 1.0), (0.05, 0.4)), "nnclr": ((0.08, 1.0), None)}
TARGET_THROUGHPUT, TARGET_KNN_DELTA = 1.0, -1.0


def prototypes_init(seed: int) -> Any:
    import torch

    return torch.nn.functional.normalize(
        torch.randn(PROTOTYPES, 128, generator=torch.Generator().manual_seed(seed)), dim=1
    )


def dino_head_init(seed: int) -> list[tuple[Any, Any]]:
    """The DINO head's shared initial weights, ``[(weight, bias), ...]`` for its 3 MLP layers (256 -> 512 -> 512 ->
    64) and ``(weight, None)`` for the last layer (64 -> DINO_OUT): drawn from ``seed`` with plain torch, so both
    workers (lightly's venv has no hfcontrast) load the same head."""
    import torch

    generator = torch.Generator().manual_seed(seed + 7)
    layers = []
    for fan_in, fan_out, bias in ((256, 512, True), (512, 512, True), (512, 64, True), (64, DINO_OUT, False)):
        bound = 1.0 / fan_in**0.5
        weight = (torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound
        layers.append((weight, (torch.rand(fan_out, generator=generator) * 2 - 1) * bound if bias else None))
    return layers


def load_dino_head(linears: Sequence[Any], seed: int) -> None:
    """Copy :func:`dino_head_init` into the head's ``nn.Linear`` layers, in order (lightly's last layer is
    weight-normalised: its direction ``v`` gets the weights, its frozen norm ``g`` stays 1, as DINO's paper)."""
    import torch

    init = dino_head_init(seed)
    assert len(linears) == len(init), (len(linears), len(init))
    with torch.no_grad():
        for linear, (weight, bias) in zip(linears, init):
            target = getattr(linear, "weight_v", None)
            if target is None and hasattr(linear, "parametrizations"):
                target = linear.parametrizations.weight.original1
            (target if target is not None else linear.weight).copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)


def our_view_pipelines(method: str) -> tuple[Any, Any]:
    """Our global and local crop pipelines for ``method`` (local is None for NNCLR)."""
    sys.path.insert(
        0, str(Path(__file__).resolve().parents[1])
    )  # the peer's venv has no hfcontrast installed
    from hfcontrast.augment.pipelines import ViewParams, ViewPipeline, local_crop_pipeline

    global_scale, local_scale = CROPS[method]
    saturation = 0.2 if method == "dino" else 0.4
    params = ViewParams(size=IMAGE_SIZE, crop_scale=global_scale, brightness=0.4, contrast=0.4, saturation=saturation,
                        hue=0.1, blur_p=0.0, mean=MEAN, std=STD)  # fmt: skip
    view = ViewPipeline.from_params(params)
    return view, None if local_scale is None else local_crop_pipeline(view, LOCAL_SIZE, local_scale)


def ours_worker(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import set_seed

    from hfcontrast.collators import MultiViewCollator
    from hfcontrast.objectives import DINO, NNCLR, SwAV

    if a.threads:
        torch.set_num_threads(a.threads)
    calib = calibrate(a.threads)
    set_seed(a.seed)
    head = "none" if a.method == "dino" else "mlp"
    model = our_resnet_model(a.init, head)
    view, local = our_view_pipelines(a.method)
    objective: Any
    if a.method == "nnclr":
        collator = MultiViewCollator("image", pipeline=view, seed=a.seed)
        objective = NNCLR(0.1, support_size=SUPPORT, encoder=model)
    else:
        collator = MultiViewCollator.multi_crop(view, local, LOCAL_CROPS, "image", seed=a.seed)
        if a.method == "swav":
            objective = SwAV(model, num_prototypes=PROTOTYPES, temperature=0.1)
            objective.prototypes.weight.data.copy_(prototypes_init(a.seed))
        else:
            objective = DINO(
                model, out_dim=DINO_OUT, hidden_dim=512, bottleneck_dim=64, momentum=0.99, final_momentum=1.0
            )
            for head in (objective.head, objective.teacher_head):  # the initial head both libraries start from
                load_dino_head([m for m in head.modules() if isinstance(m, torch.nn.Linear)], a.seed)
    if a.replay_dir:
        collator = recording(collator, Path(a.replay_dir))
    return train_ours(a, model, objective, collator, calib, logging_steps=1 if a.replay_dir else 10)


def lightly_worker(a: argparse.Namespace) -> dict[str, Any]:
    """lightly's documented pattern (examples/pytorch/swav.py, dino.py, nnclr.py), without the predictor of
    its NNCLR example (ours has none) and with the settings of the module docstring."""
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F
    from lightly.loss import DINOLoss, NTXentLoss, SwaVLoss
    from lightly.models.modules import DINOProjectionHead, NNMemoryBankModule, SwaVPrototypes
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import DINOTransform, SimCLRTransform, SwaVTransform
    from lightly.utils.scheduler import cosine_schedule

    if a.threads:
        torch.set_num_threads(a.threads)
    calib = calibrate(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    common = {"cj_strength": 0.5, "normalize": {"mean": list(MEAN), "std": list(STD)}}
    global_scale, local_scale = CROPS[a.method]
    if a.method == "swav":
        transform: Any = SwaVTransform(
            crop_sizes=(IMAGE_SIZE, LOCAL_SIZE), crop_counts=(2, LOCAL_CROPS), crop_min_scales=(global_scale[0], local_scale[0]),
            crop_max_scales=(global_scale[1], local_scale[1]), gaussian_blur=0.0, **common,
        )  # fmt: skip
    elif a.method == "dino":
        transform = DINOTransform(
            global_crop_size=IMAGE_SIZE, global_crop_scale=global_scale, local_crop_size=LOCAL_SIZE,
            local_crop_scale=local_scale, n_local_views=LOCAL_CROPS, gaussian_blur=(0.0, 0.0, 0.0),
            solarization_prob=0.0, **common,
        )  # fmt: skip
    else:
        transform = SimCLRTransform(
            input_size=IMAGE_SIZE, min_scale=global_scale[0], gaussian_blur=0.0, **common
        )
    if a.peer_views == "ours":
        transform = pipeline_transform(*our_view_pipelines(a.method), LOCAL_CROPS, a.seed)
    loader = peer_loader(transform, a) if not a.replay_dir else replayed(Path(a.replay_dir))
    backbone, head = build_backbone(), build_head()
    backbone_state, head_state = load_init(a.init)
    backbone.load_state_dict(backbone_state)
    head.load_state_dict(head_state)

    def features(net: Any, x: Any) -> Any:
        return net(pixel_values=x).pooler_output.flatten(1)

    params = list(backbone.parameters())
    if a.method == "swav":
        prototypes = SwaVPrototypes(128, PROTOTYPES)
        prototypes.heads[0].weight.data.copy_(prototypes_init(a.seed))
        if not a.peer_prototype_bias:  # lightly's prototypes are nn.Linear with a bias; the paper's have none
            prototypes.heads[0].bias.data.zero_()
            prototypes.heads[0].bias.requires_grad_(False)
        criterion: Any = SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
        params += list(head.parameters()) + list(prototypes.parameters())
    elif a.method == "dino":
        head = DINOProjectionHead(256, 512, 64, DINO_OUT)
        load_dino_head([m for m in head.modules() if isinstance(m, torch.nn.Linear)], a.seed)  # as ours starts
        teacher, teacher_head = copy.deepcopy(backbone), DINOProjectionHead(256, 512, 64, DINO_OUT)
        teacher_head.load_state_dict(head.state_dict())  # weight norm cannot be deep-copied
        deactivate_requires_grad(teacher)
        deactivate_requires_grad(teacher_head)
        criterion = DINOLoss(output_dim=DINO_OUT, warmup_teacher_temp=0.04, teacher_temp=0.04,
                             warmup_teacher_temp_epochs=0, student_temp=0.1, center_momentum=0.9)  # fmt: skip
        params += [p for p in head.parameters() if p.requires_grad]
    else:
        bank = NNMemoryBankModule(size=(SUPPORT, 128))
        criterion = NTXentLoss(temperature=0.1)
        params += list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)

    def loss_of(views: Any, step: int) -> Any:
        if a.method == "swav":
            prototypes.normalize()
            if a.peer_group_crops:  # one forward per resolution, as ours and the SwAV paper's code
                groups = [torch.cat(views[:2]), torch.cat(views[2:])]
                crops = [
                    c
                    for g in groups
                    for c in prototypes(F.normalize(head(features(backbone, g)), dim=1)).chunk(
                        len(g) // len(views[0])
                    )
                ]
            else:  # lightly's example: one forward per crop
                crops = [prototypes(F.normalize(head(features(backbone, v)), dim=1)) for v in views]
            return criterion(crops[:2], crops[2:])
        if a.method == "dino":
            momentum = cosine_schedule(step, a.steps, 0.99, 1.0)
            update_momentum(backbone, teacher, m=momentum)
            update_momentum(head, teacher_head, m=momentum)
            if (
                a.peer_group_crops
            ):  # one forward per resolution (teacher: the two global crops together), as ours
                with torch.no_grad():
                    targets = list(teacher_head(features(teacher, torch.cat(views[:2]))).chunk(2))
                groups = [torch.cat(views[:2]), torch.cat(views[2:])]
                students = [
                    c for g in groups for c in head(features(backbone, g)).chunk(len(g) // len(views[0]))
                ]
                return criterion(targets, students)
            with torch.no_grad():  # lightly's example: one forward per crop
                targets = [teacher_head(features(teacher, v)) for v in views[:2]]
            return criterion(targets, [head(features(backbone, v)) for v in views])
        z0, z1 = head(features(backbone, views[0])), head(features(backbone, views[1]))
        nn0, nn1 = bank(z0.detach(), update=False), bank(z1.detach(), update=True)
        return 0.5 * (criterion(nn0, z1) + criterion(nn1, z0))

    backbone.train()
    head.train()
    timer, losses = plain_loop(loader, optimizer, a.steps, loss_of)
    rss = peak_rss_mb()
    backbone.eval()
    embed_eval_arrays(lambda x: features(backbone, x), a.eval_dir, a.prefix)
    return {"lib": "lightly", "peak_rss_mb": rss, "train_loss": sum(losses) / len(losses), "calib_s": calib, "losses": losses,
            "torch": torch.__version__, **timer.throughput(a.warmup, a.batch_size)}  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("ours", "lightly"))
    parser.add_argument("--method", choices=METHODS)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    for flag in ("--init", "--eval-dir", "--prefix", "--result"):
        parser.add_argument(flag)
    parser.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--peer-group-crops", action="store_true",
                        help="SwAV, DINO: lightly's side forwards the crops of one size together, as ours does (the "
                        "comparison measures both: grouped for the verdict, per crop as lightly's examples do)")  # fmt: skip
    parser.add_argument("--peer-views", choices=("lightly", "ours"), default="lightly",
                        help="diagnostic: the peer's crops from its own transforms (default) or from our pipelines")  # fmt: skip
    parser.add_argument("--peer-prototype-bias", action="store_true",
                        help="SwAV: keep the learnable bias of lightly's prototype layer (the paper's has none)")  # fmt: skip
    parser.add_argument("--replay-dir", default=None,
                        help="diagnostic: ours saves its batches there, the peer then trains on exactly those")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="one pair of runs per seed (fixed in advance: the verdict's interval is over them)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=60000)
    parser.add_argument("--bank-size", type=int, default=10000)
    parser.add_argument("--knn-k", type=int, default=200)
    a = parser.parse_args()
    if a.worker:
        return write_result(a.result, (ours_worker if a.worker == "ours" else lightly_worker)(a))
    smoke = apply_smoke(
        a, steps=2, warmup=1, batch_size=16, train_samples=64, bank_size=64, knn_k=5, seeds=[42]
    )
    a.steps = a.steps or (150 if a.quick else 400)
    seeds = a.seeds
    peers = () if peer_missing(a.peer_python, smoke, "lightly") else ("lightly", "lightly_per_crop")
    tmp = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    runs: list[dict[str, Any]] = []
    before: dict[int, float] = {}
    try:
        for repeat, seed in enumerate(seeds):
            prepare(tmp, a.bank_size, seed)  # each seed its own initial weights, shared by both libraries
            baseline_embeddings(tmp)
            before[seed] = knn_top1(tmp, "init", a.knn_k, 0.1)
            for method in a.methods:
                libs = [
                    lib for lib in peers if lib == "lightly" or method != "nnclr"
                ]  # NNCLR: 2 crops, one size
                order = [*libs, "ours"] if repeat % 2 == 0 and not a.replay_dir else ["ours", *libs]
                for lib in order:  # alternate who goes first (ours first when the peer replays our batches)
                    runs.append(measure(a, tmp, method, lib, seed))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not peers:
        print("[smoke] hfcontrast ran; without the peer there is nothing to compare")
        return
    summary, rows = {}, []
    for method in a.methods:
        pairs = [[next(r for r in runs if (r["method"], r["lib"], r["seed"]) == (method, lib, seed)) for lib in ("lightly", "ours")]
                 for seed in seeds]  # fmt: skip
        ratios = [ratio(ours["images_per_s"], peer["images_per_s"]) for peer, ours in pairs]
        deltas = [ours["knn_top1"] - peer["knn_top1"] for peer, ours in pairs]
        per_crop = [
            r["images_per_s"] for r in runs if (r["method"], r["lib"]) == (method, "lightly_per_crop")
        ]
        entry = {"lightly": mean_of(pairs, 0), "ours": mean_of(pairs, 1), "throughput_ratio": sum(ratios) / len(ratios),
                 "throughput_ratios": ratios, "knn_delta": sum(deltas) / len(deltas), "knn_deltas": deltas,
                 "lightly_per_crop_images_per_s": sum(per_crop) / len(per_crop) if per_crop else None}  # fmt: skip
        entry.update(
            interval_verdicts(
                pairs, "images_per_s", "knn_top1", TARGET_THROUGHPUT, TARGET_KNN_DELTA, "knn_delta"
            )
        )
        summary[method] = entry
        rows.append([method, mean_sd([p["images_per_s"] for p, _ in pairs], 1),
                     mean_sd(per_crop, 1) if per_crop else "-", mean_sd([o["images_per_s"] for _, o in pairs], 1),
                     mean_sd(ratios, 2), mean_sd([p["knn_top1"] for p, _ in pairs], 2),
                     mean_sd([o["knn_top1"] for _, o in pairs], 2), mean_sd(deltas, 2), entry["target"]])  # fmt: skip
    keys = (
        "quick",
        "steps",
        "batch_size",
        "lr",
        "threads",
        "train_samples",
        "bank_size",
        "peer_group_crops",
        "peer_views",
        "peer_prototype_bias",
    )
    settings = {k: getattr(a, k) for k in keys}
    subset = set(a.methods) != set(METHODS)  # a subset keeps the full run's file
    name = "_".join([NAME, *a.methods, f"{a.steps}steps"]) if subset else NAME
    save_results(Path(a.results_dir), name, {"name": NAME, "machine": machine_info(), "settings": {**settings, "seeds": seeds},
                                             "knn_top1_at_init": before, "summary": summary, "runs": runs},
                 peer_versions(a.peer_python))  # fmt: skip
    print(f"\n{NAME}: kNN top-1 of the initial weights {mean_sd(list(before.values()), 2)}; target images/s >= "
          f"{TARGET_THROUGHPUT}x lightly at kNN delta >= {TARGET_KNN_DELTA} points (means over seeds {seeds})")  # fmt: skip
    print(format_table(["method", "lightly img/s (grouped)", "lightly img/s (per crop)", "ours img/s", "ratio",
                        "lightly kNN", "ours kNN", "delta (pts)", "verdict (95% CI)"], rows))  # fmt: skip


def measure(a: argparse.Namespace, tmp: Path, method: str, lib: str, seed: int) -> dict[str, Any]:
    """One training run of ``lib`` in its own process, with its kNN top-1 scored here."""
    prefix = f"{method}-{lib}"
    worker = "lightly" if lib.startswith("lightly") else "ours"
    argv = [__file__, "--worker", worker, "--method", method, "--init", str(tmp / "init.safetensors"),
            "--eval-dir", str(tmp), "--prefix", prefix, "--seed", str(seed)]  # fmt: skip
    for flag in ("steps", "warmup", "batch_size", "lr", "threads", "num_workers", "train_samples"):
        argv += [f"--{flag.replace('_', '-')}", str(getattr(a, flag))]
    argv += ["--peer-group-crops"] if lib == "lightly" else []  # the verdict's peer groups crops, as ours
    argv += ["--peer-prototype-bias"] if a.peer_prototype_bias else []
    argv += ["--peer-views", a.peer_views] + (
        ["--replay-dir", str(tmp / f"replay-{method}-{seed}")] if a.replay_dir else []
    )
    run = run_worker(argv, python=a.peer_python if worker == "lightly" else sys.executable)
    run.update(
        method=method,
        lib=lib,
        seed=seed,
        images_per_s=run["samples_per_s"],
        knn_top1=knn_top1(tmp, prefix, a.knn_k, 0.1),
    )
    print(f"[{method} {lib:7s} seed {seed}] {run['images_per_s']:.1f} images/s, kNN {run['knn_top1']:.2f}, "
          f"loss {run['train_loss']:.3f}, calib {run['calib_s'] * 1000:.0f} ms", flush=True)  # fmt: skip
    return run


def mean_of(pairs: list[list[dict[str, Any]]], index: int) -> dict[str, float]:
    """One library's numbers, averaged over the seeds."""
    keys = ("images_per_s", "knn_top1", "peak_rss_mb", "train_loss")
    return {k: sum(p[index][k] for p in pairs) / len(pairs) for k in keys}


if __name__ == "__main__":
    main()
