"""hfcontrast: contrastive representation learning on the Hugging Face stack.

    from hfcontrast import ContrastiveTextModel, ContrastiveTrainer, SimCSE

The encoders are imported (and registered with ``AutoModel``) at once. The trainer, its arguments, the
objectives and their configs, the collators and the evaluators are importable from here too, loaded on
first use (PEP 562), as are the subpackages: ``hfcontrast.evaluation``, ``hfcontrast.trainer``, ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .collators import (
        ImageEvalCollator,
        ImageTextCollator,
        MultiSourceCollator,
        MultiSourceDataset,
        MultiViewCollator,
        TextPairCollator,
        UnsupervisedSimCSECollator,
    )
    from .evaluation import (
        InformationRetrievalEvaluator,
        KNNEvaluator,
        RerankingEvaluator,
        RetrievalEvaluator,
        STSEvaluator,
        ZeroShotEvaluator,
    )
    from .objectives import (
        BCL,
        BYOL,
        CLIP,
        DINO,
        KCL,
        NNCLR,
        PCL,
        BarlowTwins,
        ChunkingConfig,
        Guide,
        InBatchKL,
        MarginMSE,
        MatryoshkaConfig,
        MoCo,
        NegativeConfig,
        ScoredPairs,
        SigLIP,
        SimCLR,
        SimCSE,
        SimSiam,
        SwAV,
        VICReg,
    )
    from .trainer import ContrastiveTrainer, ContrastiveTrainingArguments

__version__ = "0.1.0"

SUBPACKAGES = (
    "augment", "cli", "collators", "demo", "distributed", "evaluation", "hub", "losses", "memory", "models",
    "objectives", "trainer",
)  # fmt: skip
#: The names importable from ``hfcontrast`` itself, by the subpackage that defines them.
EXPORTS = {
    "trainer": ("ContrastiveTrainer", "ContrastiveTrainingArguments"),
    "objectives": (
        "BCL", "BYOL", "CLIP", "DINO", "KCL", "NNCLR", "PCL", "BarlowTwins", "ChunkingConfig", "Guide", "InBatchKL", "MarginMSE", "MatryoshkaConfig", "MoCo",
        "NegativeConfig", "ScoredPairs", "SigLIP", "SimCLR", "SimCSE", "SimSiam", "SwAV", "VICReg",
    ),
    "collators": (
        "ImageEvalCollator", "ImageTextCollator", "MultiSourceCollator", "MultiSourceDataset", "MultiViewCollator",
        "TextPairCollator", "UnsupervisedSimCSECollator",
    ),
    "evaluation": ("InformationRetrievalEvaluator", "KNNEvaluator", "RerankingEvaluator", "RetrievalEvaluator",
                   "STSEvaluator", "ZeroShotEvaluator"),
}  # fmt: skip
_HOME = {name: package for package, names in EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """``hfcontrast.<subpackage>`` and ``hfcontrast.<exported class>`` without importing them first."""
    if name in SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'hfcontrast' has no attribute {name!r}")


__all__ = [
    "BCL",
    "BYOL",
    "CLIP",
    "DINO",
    "KCL",
    "NNCLR",
    "PCL",
    "BarlowTwins",
    "ChunkingConfig",
    "ContrastiveDualEncoder",
    "ContrastiveDualEncoderConfig",
    "ContrastiveEncoderOutput",
    "ContrastiveTextConfig",
    "ContrastiveTextModel",
    "ContrastiveTrainer",
    "ContrastiveTrainingArguments",
    "ContrastiveVisionConfig",
    "ContrastiveVisionModel",
    "DualEncoderOutput",
    "Guide",
    "ImageEvalCollator",
    "ImageTextCollator",
    "InBatchKL",
    "InformationRetrievalEvaluator",
    "KNNEvaluator",
    "MarginMSE",
    "MatryoshkaConfig",
    "MoCo",
    "MultiSourceCollator",
    "MultiSourceDataset",
    "MultiViewCollator",
    "NegativeConfig",
    "RerankingEvaluator",
    "RetrievalEvaluator",
    "STSEvaluator",
    "ScoredPairs",
    "SigLIP",
    "SimCLR",
    "SimCSE",
    "SimSiam",
    "SwAV",
    "TextPairCollator",
    "UnsupervisedSimCSECollator",
    "VICReg",
    "ZeroShotEvaluator",
    "__version__",
]
