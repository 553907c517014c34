"""Which objectives work under which accelerate distributed type, checked before training starts.

DDP (and one process) run everything. Sharded training changes what the objective can see of the
model: under FSDP and DeepSpeed ZeRO-3 each process holds a shard of every parameter, and DeepSpeed
owns the optimizer. The combinations that cannot work fail at start, saying why, instead of failing
(or silently training something else) at the first step. ``docs/distributed.md`` has the table.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..objectives import ContrastiveObjective, MomentumEncoder


def _zero_stage(accelerator: Any) -> int | None:
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None)
    return getattr(plugin, "zero_stage", None) if plugin is not None else None


def sharding_problems(
    kind: str, objective: ContrastiveObjective, *, zero_stage: int | None = None, gradcache: bool = False
) -> list[str]:
    """Why ``objective`` cannot train under distributed type ``kind`` (``"FSDP"``, ``"DEEPSPEED"``, ...)."""
    if kind not in ("FSDP", "DEEPSPEED"):
        return []
    name = "FSDP" if kind == "FSDP" else f"DeepSpeed ZeRO-{zero_stage}"
    sharded = kind == "FSDP" or (zero_stage or 0) >= 3
    problems = []
    if gradcache:
        problems.append(f"GradCache replays chunks under DDP's no_sync; {name} has its own gradient reduction")
    if sharded and any(isinstance(m, MomentumEncoder) for m in objective.modules()):
        problems.append(
            f"a momentum encoder is an EMA of the model's parameters, and under {name} each process holds only "
            "a shard of them"
        )
    reads_model_scale = hasattr(objective, "model_ref") and getattr(objective, "temperature", None) is None
    if sharded and reads_model_scale:
        problems.append(f"{type(objective).__name__} reads the model's logit_scale outside forward, a shard under {name}")
    if kind == "DEEPSPEED" and any(p.requires_grad for p in objective.parameters()):
        problems.append(
            f"{type(objective).__name__} trains parameters of its own (a predictor), which DeepSpeed's optimizer "
            "does not hold"
        )
    return problems


def sync_batchnorm(modules: list[nn.Module], *, processes: int, device: torch.device) -> int:
    """Replace every BatchNorm of ``modules`` (in place) by torch's ``SyncBatchNorm``, which shares weights
    and buffers with it; returns how many were replaced. Several processes on the CPU are refused: torch's
    SyncBatchNorm runs on accelerators only (its statistics would need a CPU collective it does not have)."""
    if processes > 1 and device.type == "cpu":
        raise ValueError(
            "sync_batchnorm needs GPUs: torch's SyncBatchNorm does not run on the CPU; set sync_batchnorm=False"
        )
    count = 0
    for module in modules:
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
                    child, nn.SyncBatchNorm
                ):
                    setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
                    count += 1
    return count


def check_sharding(accelerator: Any, objective: ContrastiveObjective, *, gradcache: bool) -> None:
    """Raise before training when the objective cannot work under this run's distributed type."""
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type))
    problems = sharding_problems(kind, objective, zero_stage=_zero_stage(accelerator), gradcache=gradcache)
    if problems:
        raise ValueError(
            f"{type(objective).__name__} cannot train under {kind}: " + "; ".join(problems)
            + ". Use DDP (accelerate launch --multi_gpu) for this objective; docs/distributed.md lists what works where"
        )

