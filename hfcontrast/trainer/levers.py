"""Speed levers that touch the model: padding-free packing and the channels-last memory format.

Both are options of :class:`~hfcontrast.trainer.ContrastiveTrainingArguments`, checked when the trainer is built:

* ``padding_free``: the text rows of a step go through the encoder packed one after another
  (:func:`hfcontrast.trainer.views.packed_inputs`). Only attention implementations with kernels for packed
  sequences keep that fast and correct; any other is refused, saying what to install.
* ``channels_last``: convolutional backbones (and the objective's momentum copies of them) run with NHWC
  weights and inputs, the layout cuDNN's fastest convolutions use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models import ContrastiveTextModel

#: Attention implementations with kernels for packed sequences: varlen flash attention (from ``cu_seq_lens``)
#: and flex attention (block masks from the position ids).
PACKED_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


def check_padding_free(model: nn.Module, *, gradcache: bool, device: torch.device) -> None:
    """Refuse ``padding_free`` where it cannot run: a model without a text backbone of its own, an attention
    implementation without packed kernels, GradCache, or flex attention's backward on the CPU."""
    if not isinstance(model, ContrastiveTextModel):
        raise ValueError("padding_free packs the rows of a text encoder (ContrastiveTextModel); this model is not one")
    if gradcache:
        raise ValueError("padding_free does not combine with GradCache yet: use one or the other")
    implementation = getattr(model.backbone.config, "_attn_implementation", None)
    if implementation not in PACKED_ATTENTION:
        raise ValueError(
            f"padding_free needs an attention implementation that keeps packed sequences apart, one of {PACKED_ATTENTION}; "
            f"the backbone uses {implementation!r}. Install flash attention (pip install flash-attn, on a CUDA GPU) and "
            "build the model with attn_implementation='flash_attention_2' (recipes: --attn_implementation), or use "
            "'flex_attention' on a GPU"
        )
    if implementation == "flex_attention" and device.type == "cpu":
        raise ValueError("padding_free with flex_attention needs a GPU: flex attention has no backward on the CPU")


def to_channels_last(*modules: nn.Module) -> int:
    """Convert ``modules`` to the channels-last memory format; returns how many convolutions they hold (a model
    without any is left as it is: the format means nothing to it)."""
    convolutions = sum(isinstance(m, nn.Conv2d) for module in modules for m in module.modules())
    if convolutions:
        for module in modules:
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return convolutions


def channels_last_views(inputs: dict[str, Any]) -> dict[str, Any]:
    """Every 4-D ``pixel_values`` of a batch's views in the channels-last format (one copy kernel each)."""
    out = dict(inputs)
    for name, view in inputs.items():
        if isinstance(view, dict) and isinstance(view.get("pixel_values"), torch.Tensor) and view["pixel_values"].dim() == 4:
            out[name] = {**view, "pixel_values": view["pixel_values"].contiguous(memory_format=torch.channels_last)}
    return out
