"""STS correlation: Spearman and Pearson correlation between predicted similarities and gold scores.

This file is an ``evaluate`` metric script shipped as package data; load it offline with
``evaluate.load(hfcontrast.evaluation.metric_path("sts_correlation"))``. It must stay
self-contained (``evaluate`` copies it into ``HF_MODULES_CACHE`` and imports it from there).

Follows SimCSE (Gao et al., 2021) / SentEval's "all" setting: the correlation is computed once
over every pair pooled together (not averaged per sub-task), and reported in [-1, 1] (not x100).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr

_CITATION = """\
@inproceedings{gao2021simcse,
  title={SimCSE: Simple Contrastive Learning of Sentence Embeddings},
  author={Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle={EMNLP},
  year={2021}
}
"""

_DESCRIPTION = """\
Spearman rank correlation and Pearson correlation between predicted similarities (e.g. cosine
similarities of sentence embeddings) and gold similarity scores (e.g. STS-B scores in [0, 5]),
pooled over all pairs ("all" setting of SentEval / SimCSE).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted similarity for each pair (e.g. cosine similarity).
    references (`list` of `float`): gold similarity score for each pair.
Returns:
    spearman (`float`): Spearman rank correlation, in [-1, 1].
    pearson (`float`): Pearson correlation, in [-1, 1].
Examples:
    >>> metric = evaluate.load("path/to/sts_correlation")
    >>> metric.compute(predictions=[0.1, 0.5, 0.9], references=[1.0, 2.0, 5.0])
    {'spearman': 1.0, 'pearson': 0.96...}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class StsCorrelation(evaluate.Metric):
    """Spearman/Pearson correlation of predicted similarity vs gold score, over all pairs."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=[
                "https://github.com/princeton-nlp/SimCSE",
                "https://github.com/facebookresearch/SentEval",
            ],
        )

    def _compute(self, predictions: list[float], references: list[float]) -> dict[str, float]:
        preds = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.float64)
        if preds.shape != refs.shape:
            raise ValueError(f"predictions has {preds.size} values but references has {refs.size}")
        if preds.size < 2:
            raise ValueError(f"need at least 2 pairs to compute a correlation, got {preds.size}")
        spearman = float(spearmanr(preds, refs)[0])
        pearson = float(pearsonr(preds, refs)[0])
        return {"spearman": spearman, "pearson": pearson}
