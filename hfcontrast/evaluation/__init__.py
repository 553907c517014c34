"""Evaluation: packaged ``evaluate`` metrics and evaluators (STS, kNN/linear probe, retrieval, zero-shot).

Every evaluator is a callable ``evaluator(model) -> dict[str, float]`` whose keys start with its
``name``; it runs the model in eval mode without gradients on the model's device and restores the
model's training flag.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

from ._common import embed_texts
from .ir import InformationRetrievalEvaluator, RerankingEvaluator, load_beir
from .knn import KNNEvaluator, knn_classify, knn_top1, linear_probe
from .metrics import available_metrics, load_metric, metric_path
from .ranking import ranking_metrics
from .retrieval import RetrievalEvaluator, retrieval_metrics, retrieval_ranks
from .sts import STSEvaluator, STSFormatError, load_sts_file
from .zeroshot import ZeroShotEvaluator, zero_shot_accuracy, zero_shot_classifier


@runtime_checkable
class Evaluator(Protocol):
    """Anything with a ``name`` that maps a model to named float metrics."""

    name: str

    def __call__(self, model: nn.Module) -> dict[str, float]: ...


__all__ = [
    "Evaluator",
    "InformationRetrievalEvaluator",
    "KNNEvaluator",
    "RerankingEvaluator",
    "RetrievalEvaluator",
    "STSEvaluator",
    "STSFormatError",
    "ZeroShotEvaluator",
    "available_metrics",
    "embed_texts",
    "knn_classify",
    "knn_top1",
    "linear_probe",
    "load_beir",
    "load_metric",
    "load_sts_file",
    "metric_path",
    "ranking_metrics",
    "retrieval_metrics",
    "retrieval_ranks",
    "zero_shot_accuracy",
    "zero_shot_classifier",
]
