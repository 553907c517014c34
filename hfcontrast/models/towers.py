"""Backbones ("towers") built from a config or copied from a pretrained model (copied into checkpoints:
no hfcontrast imports)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel


def build_backbone(config: PreTrainedConfig, *, keep_pooler: bool) -> PreTrainedModel:
    """``AutoModel.from_config(config)``; a backbone whose own pooler is not used is built without it (BERT,
    ViT take ``add_pooling_layer``), so every parameter gets a gradient (DDP with
    ``find_unused_parameters=False``)."""
    kwargs: dict[str, Any] = {}
    if not keep_pooler:
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        model_class: Any = MODEL_MAPPING.get(type(config), None)
        if isinstance(model_class, tuple | list):
            model_class = model_class[0]
        if model_class is not None and "add_pooling_layer" in inspect.signature(model_class).parameters:
            kwargs["add_pooling_layer"] = False
    return AutoModel.from_config(config, **kwargs)


def copy_backbone(target: nn.Module, source: nn.Module, what: str) -> None:
    """Load ``source``'s weights into ``target``; only a pooler the target was built without may be left over."""
    result = target.load_state_dict(source.state_dict(), strict=False)
    unexpected = [key for key in result.unexpected_keys if not key.startswith("pooler.")]
    if result.missing_keys or unexpected:
        raise ValueError(
            f"cannot copy the pretrained {what}: missing {result.missing_keys[:10]}, unexpected {unexpected[:10]}"
        )
