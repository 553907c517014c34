"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through ``peft``:
``W x + (alpha / r) B A x`` with only ``A`` and ``B`` trained; the optional extra ``hfcontrast[peft]``.

The adapters go into the encoder's ``backbone``; the encoder's own heads (pooling, projection) stay as
they are, trainable when they have parameters. Everything else is unchanged: the trainer, GradCache and
the momentum encoder (an EMA copy of the whole encoder, so of its adapters) see an ordinary module, and
checkpoints hold the adapted encoder so a killed run resumes exactly. At export the adapters are either
merged into the backbone (:func:`merge_lora`: the checkpoint loads everywhere, as without LoRA) or saved
alone in peft's format (:func:`save_adapter`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn


def _peft() -> Any:
    try:
        import peft
    except ImportError as error:
        raise ImportError("LoRA needs peft: pip install 'hfcontrast[peft]'") from error
    return peft


def has_lora(model: nn.Module) -> bool:
    """True when the encoder's backbone is wrapped by peft (adapters not merged yet)."""
    try:
        import peft
    except ImportError:
        return False
    return isinstance(getattr(model, "backbone", None), peft.PeftModel)


def add_lora(
    model: nn.Module,
    *,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    target_modules: Sequence[str] | str | None = None,
) -> nn.Module:
    """Put LoRA adapters into ``model.backbone`` (in place; returns ``model``). ``target_modules``: names of
    the linear layers (e.g. ``query,value``); default: peft's choice for the backbone's architecture. The
    backbone's other parameters are frozen."""
    peft = _peft()
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError(f"{type(model).__name__} has no backbone to adapt (hfcontrast encoders have one)")
    if has_lora(model):
        raise ValueError("the backbone already has LoRA adapters")
    if r < 1:
        raise ValueError(f"lora r must be >= 1, got {r}")
    targets = target_modules.split(",") if isinstance(target_modules, str) else target_modules
    config = peft.LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets) if targets else None, bias="none"
    )
    model.backbone = peft.get_peft_model(backbone, config)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the backbone's weights (``W + (alpha / r) B A``) and drop peft's wrapper, so
    ``save_pretrained`` writes an ordinary checkpoint. Returns ``model`` (changed in place)."""
    if has_lora(model):
        backbone: Any = model.backbone
        model.backbone = backbone.merge_and_unload()
    return model


def save_adapter(model: nn.Module, output_dir: str) -> list[str]:
    """Save the backbone's adapters alone (``adapter_config.json``, ``adapter_model.safetensors``); they
    load with ``PeftModel.from_pretrained(<the base backbone>, output_dir)``. Returns the written files."""
    if not has_lora(model):
        raise ValueError("the model has no LoRA adapters to save")
    backbone: Any = model.backbone
    backbone.save_pretrained(output_dir)
    return sorted(os.listdir(output_dir))
