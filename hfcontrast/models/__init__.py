"""Encoders (``PreTrainedModel`` subclasses) registered with ``AutoConfig`` / ``AutoModel`` on import.

Everything here is copied into checkpoints for ``trust_remote_code``, so modules import only each
other (single-dot relative imports), never the rest of hfcontrast.
"""

from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from .configuration_dual import ContrastiveDualEncoderConfig
from .configuration_text import ContrastiveTextConfig
from .configuration_vision import ContrastiveVisionConfig
from .heads import DINOHead, MLPHead, Predictor
from .modeling_dual import ContrastiveDualEncoder
from .modeling_text import ContrastiveTextModel
from .modeling_vision import ContrastiveVisionModel
from .outputs import ContrastiveEncoderOutput, DualEncoderOutput

_REGISTRY: list[tuple[type[PreTrainedConfig], type[PreTrainedModel]]] = [
    (ContrastiveTextConfig, ContrastiveTextModel),
    (ContrastiveVisionConfig, ContrastiveVisionModel),
    (ContrastiveDualEncoderConfig, ContrastiveDualEncoder),
]


def _register() -> None:
    for config_class, model_class in _REGISTRY:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        # Saved checkpoints carry ``auto_map`` and the code, so trust_remote_code works without hfcontrast.
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")


_register()

__all__ = [
    "ContrastiveDualEncoder",
    "ContrastiveDualEncoderConfig",
    "ContrastiveEncoderOutput",
    "ContrastiveTextConfig",
    "ContrastiveTextModel",
    "ContrastiveVisionConfig",
    "ContrastiveVisionModel",
    "DINOHead",
    "DualEncoderOutput",
    "MLPHead",
    "Predictor",
]
