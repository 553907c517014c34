"""Export formats: where each kind of encoder is served from, without hfcontrast and without remote code.

``export_format="standard"`` (the default) writes what the ecosystem loads as it is:

* **text**: a sentence-transformers folder. The backbone's own ``config.json`` and weights at the root
  (``AutoModel`` gives the plain ``BertModel``, ...), ``modules.json`` with ``Transformer``, ``Pooling`` (mode and
  prompt-token setting), ``Dense`` (the MLP head when it is used at inference), ``Normalize`` where the model
  normalises, ``config_sentence_transformers.json`` (prompts, similarity, ``truncate_dim``) and
  ``sentence_bert_config.json`` (``max_seq_length``). ``hfcontrast.json`` keeps what only training needs (the
  full config; a training-only MLP head in ``hfcontrast_head.safetensors``), so
  ``ContrastiveTextModel.from_pretrained`` reads the folder back;
* **image**: the plain backbone (``ResNetModel``, ``ViTModel``, ...) and its image processor;
* **image-text**: a native ``VisionTextDualEncoderModel`` with its processor and the learned temperature.

A model that a standard format cannot express exactly (a pooling sentence-transformers has no mode for, a
dual encoder whose towers pool otherwise than transformers' own) is refused with :class:`ExportRefused`,
naming ``export_format="hfcontrast"``: the custom-code format (``auto_map``, ``trust_remote_code``), which
keeps everything, projection heads included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import save_file

from .push import checkpoint_files, export_model
from .sentence_transformers import sentence_transformers_prompts

EXPORT_FORMATS = ("standard", "hfcontrast")
HFCONTRAST_CONFIG = "hfcontrast.json"
HFCONTRAST_HEAD = "hfcontrast_head.safetensors"
#: Our text poolings and sentence-transformers' Pooling modes (``first_last_avg`` has none).
ST_POOLING = {"cls": "cls", "cls_before_pooler": "cls", "mean": "mean", "max": "max"}
_LEGACY_POOLING = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}
_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
_DENSE = "sentence_transformers.base.modules.dense.Dense"
_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"


class ExportRefused(ValueError):
    """The model cannot be written exactly in the standard format asked for."""


def export(
    model: Any,
    output_dir: str,
    processing_class: Any = None,
    *,
    export_format: str = "standard",
    max_seq_length: int | None = None,
) -> list[str]:
    """Write ``model`` (and its tokenizer / processor) to ``output_dir`` in ``export_format``; returns the
    folder's files (the ones a push uploads)."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export_format must be one of {EXPORT_FORMATS}, got {export_format!r}")
    if export_format == "hfcontrast":
        return export_model(model, output_dir, processing_class)
    kind = getattr(model.config, "model_type", None)
    writers: dict[str, Callable[..., None]] = {"hfcontrast-text": write_text_folder, "hfcontrast-vision": write_vision_folder,
               "hfcontrast-dual-encoder": write_dual_folder}  # fmt: skip
    if kind not in writers:
        raise ValueError(f"no standard format for a {type(model).__name__} ({kind!r}): use export_format='hfcontrast'")
    os.makedirs(output_dir, exist_ok=True)
    writers[kind](model, output_dir, processing_class, max_seq_length=max_seq_length)
    return checkpoint_files(output_dir)


def _refuse(what: str) -> ExportRefused:
    return ExportRefused(
        f"{what}; the standard format cannot express it exactly. Export with export_format='hfcontrast' "
        "(recipes: --export_format hfcontrast; loading then needs hfcontrast or trust_remote_code=True)"
    )


def _write_json(path: str, content: Any) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")


def text_modules(config: Any) -> list[tuple[str, str]]:
    """``[(module type, folder)]`` of the sentence-transformers pipeline that reproduces ``config``'s embedding."""
    if config.pooler not in ST_POOLING:
        raise _refuse(f"pooler {config.pooler!r} has no sentence-transformers Pooling mode (cls, mean, max)")
    if config.prompt_token_ids and not config.pool_prompt_tokens:
        raise _refuse("pool_prompt_tokens=False pools without the prompt but with the [CLS] token, which "
                      "sentence-transformers' include_prompt=False also leaves out")  # fmt: skip
    modules = [(_TRANSFORMER, ""), (_POOLING, "1_Pooling")]
    if config.mlp_head and not config.mlp_only_train:
        modules.append((_DENSE, f"{len(modules)}_Dense"))
    if config.truncate_dim and config.normalize:  # ours cuts, then normalises: a slicing Dense before Normalize
        modules.append((_DENSE, f"{len(modules)}_Dense"))
    if config.normalize:
        modules.append((_NORMALIZE, f"{len(modules)}_Normalize"))
    return modules


def write_text_folder(model: Any, output_dir: str, tokenizer: Any = None, *, max_seq_length: int | None = None) -> None:
    """The sentence-transformers folder of a ``ContrastiveTextModel`` (see the module doc)."""
    config = model.config
    modules = text_modules(config)
    _save_full_backbone(model.backbone, output_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    length = max_seq_length or min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    _write_json(os.path.join(output_dir, "sentence_bert_config.json"), {"max_seq_length": length, "do_lower_case": False})
    _write_json(os.path.join(output_dir, "modules.json"),
                [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (kind, path) in enumerate(modules)])  # fmt: skip
    hidden = int(config.backbone_config.hidden_size)
    mode = ST_POOLING[config.pooler]
    pooling = {"word_embedding_dimension": hidden, **{key: name == mode for name, key in _LEGACY_POOLING.items()},
               "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
               "pooling_mode_lasttoken": False, "include_prompt": bool(config.pool_prompt_tokens)}  # fmt: skip
    _write_json(os.path.join(output_dir, "1_Pooling", "config.json"), pooling)
    dense = [path for kind, path in modules if kind == _DENSE]
    width = hidden
    if config.mlp_head and not config.mlp_only_train:
        linear = model.mlp.layers[0]
        width = linear.out_features
        _write_dense(os.path.join(output_dir, dense.pop(0)), linear.weight, linear.bias, "torch.nn.modules.activation.Tanh")
    if config.truncate_dim and config.normalize:
        keep = min(int(config.truncate_dim), width)
        _write_dense(os.path.join(output_dir, dense.pop(0)), torch.eye(width)[:keep], None, "torch.nn.modules.linear.Identity")
    for kind, path in modules:
        if kind == _NORMALIZE:
            _write_json(os.path.join(output_dir, path, "config.json"), {})
    st_config: dict[str, Any] = {
        "model_type": "SentenceTransformer", "prompts": sentence_transformers_prompts(config.prompts),
        "default_prompt_name": None, "similarity_fn_name": "cosine",
    }  # fmt: skip
    if config.truncate_dim:
        st_config["truncate_dim"] = int(config.truncate_dim)
    _write_json(os.path.join(output_dir, "config_sentence_transformers.json"), st_config)
    _write_training_state(model, output_dir)


def _save_full_backbone(backbone: Any, output_dir: str) -> None:
    """The backbone as ``AutoModel`` builds it from its config: a text backbone trained without its pooler (unused
    parameters break DDP) gets a freshly initialised one, which sentence-transformers never reads, so that
    ``AutoModel.from_pretrained`` finds every weight it expects."""
    from transformers import AutoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        full = AutoModel.from_config(backbone.config)
    result = full.load_state_dict(backbone.state_dict(), strict=False)
    if result.unexpected_keys or any(not key.startswith("pooler.") for key in result.missing_keys):
        full = backbone  # another layout: save it as it is
    full.save_pretrained(output_dir)


def _write_dense(folder: str, weight: torch.Tensor, bias: torch.Tensor | None, activation: str) -> None:
    _write_json(os.path.join(folder, "config.json"), {
        "in_features": int(weight.shape[1]), "out_features": int(weight.shape[0]), "bias": bias is not None,
        "activation_function": activation,
    })  # fmt: skip
    tensors = {"linear.weight": weight.detach().float().contiguous().cpu()}
    if bias is not None:
        tensors["linear.bias"] = bias.detach().float().contiguous().cpu()
    save_file(tensors, os.path.join(folder, "model.safetensors"))


def _write_training_state(model: Any, output_dir: str) -> None:
    """``hfcontrast.json``: the model's config without its backbone (in ``config.json`` already), for the round
    trip; a training-only MLP head (``mlp_only_train``) goes to ``hfcontrast_head.safetensors``."""
    config = model.config.to_dict()
    config.pop("backbone_config", None)
    _write_json(os.path.join(output_dir, HFCONTRAST_CONFIG), config)
    if model.config.mlp_head and model.config.mlp_only_train:
        state = {k: v.detach().contiguous().cpu() for k, v in model.mlp.state_dict().items()}
        save_file(state, os.path.join(output_dir, HFCONTRAST_HEAD))


def _class_token_pooler_backbone(backbone: Any) -> Any:
    """A copy of a ViT-style backbone whose own pooler returns the class token unchanged (an identity ``dense``
    with ``pooler_act="linear"``), so that the standard folder's ``pooler_output`` is ``pooler="cls"``'s
    feature; ``None`` for a backbone whose config has no such pooler."""
    from transformers import AutoModel

    config = backbone.config
    if not hasattr(config, "pooler_act"):
        return None
    config = type(config).from_dict({**config.to_dict(), "pooler_act": "linear", "pooler_output_size": config.hidden_size})
    full = AutoModel.from_config(config)
    result = full.load_state_dict(backbone.state_dict(), strict=False)
    dense = getattr(getattr(full, "pooler", None), "dense", None)
    if dense is None or result.unexpected_keys or any(not key.startswith("pooler.") for key in result.missing_keys):
        return None
    with torch.no_grad():
        dense.weight.copy_(torch.eye(config.hidden_size))
        dense.bias.zero_()
    return full


def write_vision_folder(model: Any, output_dir: str, processor: Any = None, **_: Any) -> None:
    """The plain backbone (``AutoModel`` and ``pipeline("image-feature-extraction")`` load it) and its image
    processor. Its pooled output is the model's ``pooled`` feature (a ViT's class token: an identity pooler);
    the projection head is not exported."""
    pooler = getattr(model.config, "pooler", "auto")
    backbone = model.backbone if pooler in ("auto", "pooler_output") else None
    if pooler == "cls":
        backbone = _class_token_pooler_backbone(model.backbone)
    if backbone is None:
        raise _refuse(f"pooler {pooler!r} is not the backbone's own pooled output")
    backbone.save_pretrained(output_dir)
    if processor is not None:
        processor.save_pretrained(output_dir)


def write_dual_folder(model: Any, output_dir: str, processor: Any = None, **_: Any) -> None:
    """A native ``VisionTextDualEncoderModel``: the same towers, projections and learned temperature."""
    from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    config = model.config
    if config.text_pooler != "pooler_output" or config.vision_pooler != "pooler_output":
        raise _refuse(f"the towers pool with text_pooler={config.text_pooler!r} and vision_pooler={config.vision_pooler!r}; "
                      "VisionTextDualEncoderModel takes each tower's pooler_output")  # fmt: skip
    if getattr(config, "uses_logit_bias", False):
        raise _refuse("SigLIP's logit bias has no place in VisionTextDualEncoderModel")
    native = VisionTextDualEncoderModel(VisionTextDualEncoderConfig.from_vision_text_configs(
        config.vision_config, config.text_config, projection_dim=config.projection_dim,
        logit_scale_init_value=float(model.logit_scale.detach()),
    ))  # fmt: skip
    native.vision_model.load_state_dict(model.vision_model.state_dict())
    native.text_model.load_state_dict(model.text_model.state_dict())
    native.visual_projection.load_state_dict(model.visual_projection.state_dict())
    native.text_projection.load_state_dict(model.text_projection.state_dict())
    with torch.no_grad():
        native.logit_scale.copy_(model.logit_scale.detach())
    native.save_pretrained(output_dir)
    if processor is not None:
        processor.save_pretrained(output_dir)
