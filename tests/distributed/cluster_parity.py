"""Train a tiny ViT a few steps with SwAV (multi-crop, queue), DINO (multi-crop), NNCLR, PCL, the
momentum/predictor family MoCo v3, BYOL and SimSiam (their predictors without BatchNorm, whose per-process
statistics could not equal one process's), Barlow Twins and VICReg (statistics of the global batch), KCL and
BCL (the global batch's classes: KCL's seeded draws, BCL's class centres), SelfCon (an exit's projector), CPC (its context
network and predictors), and dump
losses, gradients, weights and objective state.

Run under ``accelerate launch`` (2 processes, local batch 4) and as a plain single process over the
concatenated batch (8); tests/test_cluster_distributed.py compares the dumps. fp64, dropout off.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import datasets
import torch
from gradcache_parity import Recorder, SequentialTrainer, image, record
from torch import nn
from transformers import ViTConfig

from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel
from hfcontrast.distributed import rank
from hfcontrast.objectives import (
    BCL,
    BYOL,
    CPC,
    DINO,
    KCL,
    NNCLR,
    PCL,
    BarlowTwins,
    MoCo,
    SelfCon,
    SimSiam,
    SwAV,
    VICReg,
)
from hfcontrast.objectives.base import ContrastiveObjective
from hfcontrast.objectives.clusters import ClusterRefreshCallback
from hfcontrast.trainer import ContrastiveTrainingArguments

ROWS = 48
FAMILIES = ("swav", "dino", "nnclr", "pcl", "mocov3", "byol", "simsiam", "barlowtwins", "vicreg", "kcl", "bcl", "selfcon", "cpc")
#: ``kcl`` / ``bcl``: a long tail over the rows (labels 0 0 0 1 1 2, repeated)
TAIL = (0, 0, 0, 1, 1, 2)
#: ``--sync_batchnorm`` (GPUs only: ``tests/gpu/test_sync_batchnorm.py``): the predictor families keep their
#: BatchNorm, made torch's SyncBatchNorm, so 2 processes normalise over the global batch as one process does.
SYNC_FAMILIES = ("mocov3", "byol", "simsiam")
SYNC_BATCHNORM = "--sync_batchnorm" in sys.argv


def vit(projection: str = "linear") -> ContrastiveVisionModel:
    backbone = ViTConfig(image_size=16, patch_size=8, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=24)
    config = ContrastiveVisionConfig(backbone_config=backbone, projection=projection, projection_dim=8, pooler="cls")
    return ContrastiveVisionModel(config).double()


def collate(rows: list[dict[str, int]]) -> dict[str, Any]:
    """Two global 16 px crops, one local 8 px crop (a slice of a third), row ids."""
    views = {name: torch.stack([image(row["idx"], seed) for row in rows]) for name, seed in (("query", 1), ("key", 2))}
    batch: dict[str, Any] = {name: {"pixel_values": value} for name, value in views.items()}
    batch["local_0"] = {"pixel_values": torch.stack([image(row["idx"], 3)[:, :8, :8] for row in rows])}
    batch["ids"] = torch.tensor([row["idx"] for row in rows])
    return batch


def two_views(rows: list[dict[str, int]]) -> dict[str, Any]:
    return {k: v for k, v in collate(rows).items() if k != "local_0"}


def labelled(rows: list[dict[str, int]]) -> dict[str, Any]:
    return two_views(rows) | {"labels": torch.tensor([TAIL[row["idx"] % len(TAIL)] for row in rows])}


def patched(rows: list[dict[str, int]]) -> dict[str, Any]:
    """CPC: each 16 px image's 3 x 3 grid of 8 px patches (stride 4), row-major."""
    pixels = two_views(rows)["query"]["pixel_values"]
    tiles = pixels.unfold(2, 8, 4).unfold(3, 8, 4).permute(0, 2, 3, 1, 4, 5).reshape(-1, pixels.shape[1], 8, 8)
    return {"patches": {"pixel_values": tiles.contiguous()}}


def features(rows: list[dict[str, int]]) -> dict[str, Any]:
    return {"pixel_values": torch.stack([image(row["idx"], 4) for row in rows])}


def family(name: str) -> tuple[ContrastiveVisionModel, ContrastiveObjective, Any]:
    if name == "swav":
        model = vit()
        return model, SwAV(model, num_prototypes=6, queue_size=8, freeze_prototypes_steps=1).double(), collate
    if name == "dino":
        model = vit("none")
        objective = DINO(model, out_dim=10, hidden_dim=16, bottleneck_dim=6, warmup_teacher_temperature=0.02,
                         warmup_steps=2, momentum=0.9)
        return model, objective.double(), collate
    if name == "nnclr":
        model = vit()
        return model, NNCLR(0.2, support_size=8, encoder=model).double(), two_views
    if name in ("barlowtwins", "vicreg"):
        model = vit()
        return model, (BarlowTwins() if name == "barlowtwins" else VICReg()).double(), two_views
    if name == "kcl":
        return vit(), KCL(k=2, temperature=0.2, seed=3).double(), labelled
    if name == "bcl":
        model = vit()
        return model, BCL(3, temperature=0.2, centre_momentum=0.5, encoder=model).double(), labelled
    if name == "cpc":  # a ViT for 8 px patches
        backbone = ViTConfig(image_size=8, patch_size=4, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=24)
        model = ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=backbone, projection="linear",
                                                               projection_dim=8, pooler="cls")).double()  # fmt: skip
        return model, CPC(grid=3, offsets=2, temperature=0.5, encoder=model).double(), patched
    if name == "selfcon":  # the exit's projector without BatchNorm, as the predictors below
        model = vit()
        return model, without_batchnorm(SelfCon("backbone.layers.0", 0.2, supervised=True, encoder=model)).double(), labelled
    if name == "pcl":
        model = vit()
        return model, PCL(model, num_rows=ROWS, num_clusters=(3, 5), queue_size=8, momentum=0.9).double(), two_views
    model = vit()
    predictor: ContrastiveObjective = {
        "mocov3": lambda: MoCo(model, version="v3", temperature=0.2, predictor_hidden_dim=16, momentum=0.9),
        "byol": lambda: BYOL(model, predictor_hidden_dim=16, momentum=0.9),
        "simsiam": lambda: SimSiam(predictor_hidden_dim=16, encoder=model),
    }[name]()
    return model, (predictor if SYNC_BATCHNORM else without_batchnorm(predictor)).double(), two_views


def without_batchnorm(objective: ContrastiveObjective) -> ContrastiveObjective:
    """The predictor's BatchNorm replaced by the identity: the rest of the bookkeeping (gathered keys, the
    momentum encoder, the predictor's own gradients) is what these parity runs check."""
    for module in list(objective.modules()):
        for child, layer in list(module.named_children()):
            if isinstance(layer, nn.BatchNorm1d):
                setattr(module, child, nn.Identity())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in objective.modules())
    return objective


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--sync_batchnorm", action="store_true", help="keep BatchNorm, synchronised (GPUs)")
    args = parser.parse_args()
    dump: dict[str, Any] = {}
    for name in SYNC_FAMILIES if args.sync_batchnorm else FAMILIES:
        torch.manual_seed(0)
        model, objective, views = family(name)
        training_args = ContrastiveTrainingArguments(
            output_dir=os.path.join(args.out, name), per_device_train_batch_size=args.batch,
            gradient_accumulation_steps=2, max_steps=3, learning_rate=0.1, optim="sgd", lr_scheduler_type="constant",
            max_grad_norm=0.0, report_to=[], save_strategy="no", logging_steps=1, use_cpu=not args.sync_batchnorm, seed=0,
            sync_batchnorm=args.sync_batchnorm,
            disable_tqdm=True, dataloader_drop_last=True, bad_rows="unchecked",  # the test's own collators
        )  # fmt: skip
        recorder = Recorder()
        rows = datasets.Dataset.from_dict({"idx": list(range(ROWS))})
        callbacks: list[Any] = [recorder]
        if isinstance(objective, PCL):
            callbacks.append(ClusterRefreshCallback(objective, rows, features, every_n_steps=1, start_step=1, batch_size=5))
        trainer = SequentialTrainer(model=model, args=training_args, objective=objective, train_dataset=rows,
                                    data_collator=views, callbacks=callbacks)  # fmt: skip
        trainer.losses = []
        trainer.train()
        dump[name] = record(trainer, recorder)
    os.makedirs(args.out, exist_ok=True)
    torch.save(dump, os.path.join(args.out, f"rank{rank()}.pt"))


if __name__ == "__main__":
    main()
