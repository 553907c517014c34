"""hfcontrast: contrastive representation learning on the Hugging Face stack."""

from .models import ContrastiveEncoderOutput, ContrastiveTextConfig, ContrastiveTextModel

__version__ = "0.1.0"

__all__ = ["ContrastiveEncoderOutput", "ContrastiveTextConfig", "ContrastiveTextModel", "__version__"]
