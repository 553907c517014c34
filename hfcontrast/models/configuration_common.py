"""What the three configs share: format version, sub-configs, backbone widths (copied into checkpoints: no hfcontrast imports).

transformers 5 changed how composite configs declare their parts (``sub_configs`` up to 5.2x,
``SubConfigSpec`` later). The hfcontrast configs build their parts here with ``AutoConfig.for_model``,
which every 5.x release has, and keep ``__init__``-style configs, which transformers keeps working for
remote code; so one checkpoint loads on every supported release.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

#: Version 2: the text config's MLP head is its own flag (``mlp_head``); version 1 implied it by
#: ``pooler="cls"`` and is converted on load.
CONFIG_FORMAT_VERSION = 2
SUPPORTED_CONFIG_VERSIONS = (1, 2)


def check_config_version(version: int | None, config_name: str) -> None:
    """Refuse checkpoints written with a config format this code cannot read, naming both versions."""
    if version is None or int(version) in SUPPORTED_CONFIG_VERSIONS:
        return
    raise ValueError(
        f"{config_name} has hfcontrast_config_version={version}, but this hfcontrast reads versions "
        f"{SUPPORTED_CONFIG_VERSIONS}; upgrade hfcontrast (pip install -U hfcontrast) to load this checkpoint"
    )


def sub_config(value: PreTrainedConfig | dict[str, Any] | None, default_type: str, name: str) -> PreTrainedConfig:
    """``value`` as a config: kept if it is one, built from a dict (its ``model_type``, else
    ``default_type``), or ``default_type``'s defaults for ``None``. The local path a pretrained backbone
    was loaded from is dropped, so an exported ``config.json`` never records a directory of this machine."""
    if isinstance(value, PreTrainedConfig):
        config = value
    elif value is None:
        config = AutoConfig.for_model(default_type)
    elif isinstance(value, dict):
        values = {key: item for key, item in value.items() if key not in ("transformers_version", "_name_or_path")}
        config = AutoConfig.for_model(values.pop("model_type", default_type), **values)
    else:
        raise TypeError(f"{name} must be a PreTrainedConfig, a dict or None, got {type(value).__name__}")
    config._name_or_path = ""
    return config


def feature_width(config: PreTrainedConfig, *, pooler_output: bool = False) -> int:
    """Width of a backbone's pooled feature, read from its config: ``pooler_output_size`` (ViT's pooler,
    when ``pooler_output``), then ``hidden_size`` (BERT, ViT, Swin, CLIP towers), then ``hidden_sizes[-1]``
    (ResNet, ConvNeXt, RegNet: the last stage's channels)."""
    names = (["pooler_output_size"] if pooler_output else []) + ["hidden_size", "hidden_sizes"]
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, list | tuple) and value:
            return int(value[-1])
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return int(value)
    raise ValueError(f"cannot tell the feature width of {type(config).__name__}: it has none of {names}")
