"""Encoders (``PreTrainedModel`` subclasses) registered with ``AutoConfig`` / ``AutoModel`` on import."""

from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from .configuration_dual import ContrastiveDualEncoderConfig
from .configuration_text import ContrastiveTextConfig
from .configuration_vision import ContrastiveVisionConfig
from .modeling_dual import ContrastiveDualEncoder, DualEncoderOutput
from .modeling_text import ContrastiveEncoderOutput, ContrastiveTextModel
from .modeling_vision import ContrastiveVisionModel

_REGISTRY: list[tuple[type[PreTrainedConfig], type[PreTrainedModel]]] = [
    (ContrastiveTextConfig, ContrastiveTextModel),
    (ContrastiveVisionConfig, ContrastiveVisionModel),
]
_REGISTRY.append((ContrastiveDualEncoderConfig, ContrastiveDualEncoder))


def _register() -> None:
    for config_class, model_class in _REGISTRY:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        # Saved checkpoints carry ``auto_map`` and the code, so trust_remote_code works without hfcontrast.
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")


_register()

__all__ = [
    "ContrastiveEncoderOutput",
    "ContrastiveTextConfig",
    "ContrastiveTextModel",
    "ContrastiveVisionConfig",
    "ContrastiveVisionModel",
]
__all__ += ["ContrastiveDualEncoder", "ContrastiveDualEncoderConfig", "DualEncoderOutput"]
