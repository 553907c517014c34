"""Momentum (EMA) target networks: MoCo (He et al., 2020) and BYOL (Grill et al., 2020).

* :func:`ema_update_`: ``θ_t ← m·θ_t + (1 - m)·θ_o`` for parameters; buffers copied from online.
* :func:`cosine_momentum`: BYOL schedule ``m = final - (final - base)·(cos(π·step/total) + 1)/2``.
* :func:`make_momentum_copy`: a frozen deep copy to hold as a submodule of the objective.

Callers pass the *unwrapped* online module (not a DDP/FSDP wrapper), and keep the momentum copy
as a submodule of the objective that is never wrapped by DDP itself.
"""

from __future__ import annotations

import copy
import math
from typing import TypeVar

import torch
from torch import Tensor, nn

__all__ = ["cosine_momentum", "ema_update_", "make_momentum_copy"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _match(kind: str, target: dict[str, Tensor], online: dict[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Pair tensors by name; raise naming missing/extra names and shape mismatches."""
    missing = sorted(set(online) - set(target))
    extra = sorted(set(target) - set(online))
    if missing or extra:
        raise ValueError(
            f"ema_update_: target and online modules have different {kind}: "
            f"missing in target {missing[:10]}, missing in online {extra[:10]}"
        )
    pairs: list[tuple[Tensor, Tensor]] = []
    for name, t in target.items():
        o = online[name]
        if t.shape != o.shape:
            raise ValueError(
                f"ema_update_: {kind[:-1]} {name!r} has shape {list(t.shape)} in target "
                f"but {list(o.shape)} in online"
            )
        pairs.append((t, o))
    return pairs


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place: ``θ_t ← m·θ_t + (1 - m)·θ_o`` for every parameter, then copy every buffer.

    Implemented as ``torch._foreach_lerp_(θ_t, θ_o, 1 - m)`` (one fused kernel per device/dtype
    group). ``m = 1`` leaves the target unchanged; ``m = 0`` copies the online parameters.
    Buffers (e.g. BatchNorm running statistics) are copied, not averaged. Parameters and buffers
    are matched by name; different names or shapes raise ``ValueError``.
    """
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ema_update_: momentum must be in [0, 1], got {momentum}")
    params = _match("parameters", dict(target.named_parameters()), dict(online.named_parameters()))
    buffers = _match("buffers", dict(target.named_buffers()), dict(online.named_buffers()))
    if params:
        t_params = [t for t, _ in params]
        o_params = [o.detach().to(device=t.device, dtype=t.dtype) for t, o in params]
        torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)
    for t, o in buffers:
        t.copy_(o)


def cosine_momentum(step: int, total_steps: int, base: float = 0.99, final: float = 1.0) -> float:
    """BYOL momentum schedule (Grill et al., 2020): ``final - (final - base)·(cos(π·s/T) + 1)/2``.

    ``s`` is ``step`` clamped to ``[0, T]``, so the value goes from ``base`` at step 0 to ``final``
    at step ``T`` and is monotone non-decreasing. ``total_steps <= 0`` returns ``base``.
    Requires ``0 <= base <= final <= 1``.
    """
    if not 0.0 <= base <= final <= 1.0:
        raise ValueError(f"cosine_momentum: need 0 <= base <= final <= 1, got base={base}, final={final}")
    if total_steps <= 0:
        return float(base)
    s = min(max(step, 0), total_steps)
    value = final - (final - base) * (math.cos(math.pi * s / total_steps) + 1.0) / 2.0
    return float(min(max(value, base), final))


def make_momentum_copy(module: ModuleT) -> ModuleT:
    """Deep copy of ``module`` with ``requires_grad=False`` and no ``.grad``: the momentum target.

    Pass the unwrapped module (not a DDP wrapper). Keep the copy as a submodule of the objective
    so it is saved in ``objective.state_dict()``; update it with :func:`ema_update_`.
    """
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.grad = None
    target.requires_grad_(False)
    return target
