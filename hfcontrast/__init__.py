"""hfcontrast: contrastive representation learning on the Hugging Face stack.

The encoders are imported (and registered with ``AutoModel``) at once; the other subpackages are
attributes loaded on first use: ``hfcontrast.evaluation``, ``hfcontrast.trainer``, ...
"""

from __future__ import annotations

import importlib
from typing import Any

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

SUBPACKAGES = (
    "augment", "collators", "demo", "distributed", "evaluation", "hub", "losses", "memory", "models", "objectives",
    "trainer",
)  # fmt: skip


def __getattr__(name: str) -> Any:
    """``hfcontrast.<subpackage>`` without importing it first (PEP 562)."""
    if name in SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hfcontrast' has no attribute {name!r}")


__all__ = [  # the encoders; everything else through its subpackage
    "ContrastiveDualEncoder",
    "ContrastiveDualEncoderConfig",
    "ContrastiveEncoderOutput",
    "ContrastiveTextConfig",
    "ContrastiveTextModel",
    "ContrastiveVisionConfig",
    "ContrastiveVisionModel",
    "DualEncoderOutput",
    "__version__",
]
