"""Pure loss functions: embeddings in, ``LossOutput`` / scalar out. No state, no process groups.

The engine (:func:`contrastive_loss`, rows against columns with :class:`ColumnRoles`) is the one
implementation of the InfoNCE family; :func:`info_nce`, :func:`nt_xent`, :func:`supcon_loss`,
:func:`dcl_loss`, :func:`debiased_info_nce` and :func:`chunked_info_nce` are thin wrappers of it.
"""

from __future__ import annotations

from ._checks import value_checks
from .clip import clip_loss
from .clustering import (
    concentration,
    dino_loss,
    kmeans,
    proto_nce_term,
    sinkhorn_knopp,
    swapped_prediction_loss,
)
from .compiled import compilable, compiled_losses
from .distillation import in_batch_kl_loss, margin_mse_loss, pair_scores
from .engine import FNCLMode, contrastive_from_logits, contrastive_loss
from .guided import GuidedNegatives, MarginStrategy, guided_false_negatives
from .infonce import info_nce, nt_xent, nt_xent_roles, similarity_matrix
from .long_tail import bcl_loss, kcl_loss, kcl_positives
from .matryoshka import check_matryoshka, matryoshka_loss
from .mixing import mixed_positive_loss
from .negatives import (
    MochiDraws,
    draw_mochi,
    fncl_false_negatives,
    hard_negative_log_weights,
    masked_logsumexp,
    mochi_negatives,
)
from .predictive import byol_loss, simsiam_loss
from .redundancy import barlow_twins_loss, vicreg_loss, vicreg_terms
from .roles import ColumnRoles, duplicate_mask, normalize_text, same_label_mask, text_ids
from .scored import (
    angle_loss,
    angle_pair_similarity,
    cosent_loss,
    cosine_mse_loss,
    cosine_pair_similarity,
    ranked_pairs_loss,
)
from .siglip import siglip_loss
from .stats import alignment, collapse_std, top1_accuracy, uniformity
from .types import LossOutput, Reduction, Similarity
from .variants import chunked_info_nce, dcl_loss, debiased_info_nce, supcon_loss

__all__ = [
    "ColumnRoles",
    "FNCLMode",
    "GuidedNegatives",
    "LossOutput",
    "MarginStrategy",
    "MochiDraws",
    "Reduction",
    "Similarity",
    "alignment",
    "angle_loss",
    "angle_pair_similarity",
    "barlow_twins_loss",
    "bcl_loss",
    "byol_loss",
    "check_matryoshka",
    "chunked_info_nce",
    "clip_loss",
    "collapse_std",
    "compilable",
    "compiled_losses",
    "concentration",
    "contrastive_from_logits",
    "contrastive_loss",
    "cosent_loss",
    "cosine_mse_loss",
    "cosine_pair_similarity",
    "dcl_loss",
    "debiased_info_nce",
    "dino_loss",
    "draw_mochi",
    "duplicate_mask",
    "fncl_false_negatives",
    "guided_false_negatives",
    "hard_negative_log_weights",
    "in_batch_kl_loss",
    "info_nce",
    "kcl_loss",
    "kcl_positives",
    "kmeans",
    "margin_mse_loss",
    "masked_logsumexp",
    "matryoshka_loss",
    "mixed_positive_loss",
    "mochi_negatives",
    "normalize_text",
    "nt_xent",
    "nt_xent_roles",
    "pair_scores",
    "proto_nce_term",
    "ranked_pairs_loss",
    "same_label_mask",
    "siglip_loss",
    "similarity_matrix",
    "simsiam_loss",
    "sinkhorn_knopp",
    "supcon_loss",
    "swapped_prediction_loss",
    "text_ids",
    "top1_accuracy",
    "uniformity",
    "value_checks",
    "vicreg_loss",
    "vicreg_terms",
]
