"""hfcontrast: contrastive representation learning on the Hugging Face stack."""

from .models import (
    ContrastiveDualEncoder,
    ContrastiveDualEncoderConfig,
    ContrastiveEncoderOutput,
    ContrastiveTextConfig,
    ContrastiveTextModel,
    ContrastiveVisionConfig,
    ContrastiveVisionModel,
    DualEncoderOutput,
)

__version__ = "0.1.0"

__all__ = [
    "ContrastiveEncoderOutput",
    "ContrastiveTextConfig",
    "ContrastiveTextModel",
    "ContrastiveVisionConfig",
    "ContrastiveVisionModel",
    "__version__",
]
__all__ += ["ContrastiveDualEncoder", "ContrastiveDualEncoderConfig", "DualEncoderOutput"]
