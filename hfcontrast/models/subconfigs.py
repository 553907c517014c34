"""Sub-configs (a backbone's, a tower's) from a config, a dict or nothing (copied into checkpoints: no hfcontrast imports).

transformers 5 changed how composite configs declare their parts (``sub_configs`` in 5.0-5.2x,
``SubConfigSpec`` later). The hfcontrast configs build their parts here, with ``AutoConfig.for_model``,
which every 5.x release has, and keep ``__init__``-style configs, which transformers keeps working for
remote code; so one checkpoint loads on every supported release.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig


def sub_config(value: PreTrainedConfig | dict[str, Any] | None, default_type: str, name: str) -> PreTrainedConfig:
    """``value`` as a config: kept if it is one, built from a dict (its ``model_type``, else
    ``default_type``), or ``default_type``'s defaults for ``None``."""
    if isinstance(value, PreTrainedConfig):
        return value
    if value is None:
        return AutoConfig.for_model(default_type)
    if isinstance(value, dict):
        values = {key: item for key, item in value.items() if key != "transformers_version"}
        return AutoConfig.for_model(values.pop("model_type", default_type), **values)
    raise TypeError(f"{name} must be a PreTrainedConfig, a dict or None, got {type(value).__name__}")
