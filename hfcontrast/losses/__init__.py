"""Pure loss functions: embeddings in, ``LossOutput`` / scalar out. No state, no process groups."""

from __future__ import annotations

from .clip import clip_loss
from .infonce import info_nce, similarity_matrix
from .predictive import byol_loss, simsiam_loss
from .siglip import siglip_loss
from .stats import alignment, top1_accuracy, uniformity
from .types import LossOutput, Reduction, Similarity

__all__ = [
    "LossOutput",
    "Reduction",
    "Similarity",
    "alignment",
    "byol_loss",
    "clip_loss",
    "info_nce",
    "siglip_loss",
    "similarity_matrix",
    "simsiam_loss",
    "top1_accuracy",
    "uniformity",
]
