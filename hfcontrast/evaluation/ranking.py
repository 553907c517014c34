"""Ranking metrics of information retrieval, as trec_eval computes them, from runs and graded qrels.

A run maps each query id to ``{document id: score}``; qrels map each query id to ``{document id: grade}`` (grade
> 0 is relevant; larger is more relevant). Documents are ranked by score, ties by document id in reverse order
(trec_eval's rule), and only the first ``k`` count:

* ``ndcg@k``: ``DCG@k / IDCG@k`` with ``DCG = sum_i grade_i / log2(i + 1)`` (trec_eval's linear gain
  ``grade``), ``IDCG`` from the qrels' grades sorted descending (Järvelin & Kekäläinen 2002);
* ``mrr@k``: ``1 / rank`` of the first relevant document (0 without one in the top ``k``);
* ``map@k``: ``sum_{relevant i <= k} precision@i / R`` (``R``: the query's relevant documents; trec_eval's
  ``map_cut``);
* ``recall@k``: relevant documents in the top ``k`` over ``R``;
* ``accuracy@k``: 1 when any relevant document is in the top ``k`` (sentence-transformers' ``accuracy@k``).

Each metric is the mean over the queries of the qrels that have a relevant document (a query absent from the run
scores 0). ``tests/test_eval_ranking.py`` checks every one against pytrec_eval and a naive loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
METRICS = ("ndcg", "mrr", "map", "recall", "accuracy")


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Document ids by descending score, ties by descending id (trec_eval)."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def query_metrics(ranking: Sequence[str], grades: Mapping[str, int], k: int) -> dict[str, float]:
    """The metrics of one query at cut-off ``k``: its ranked document ids against its graded relevance."""
    relevant = {doc for doc, grade in grades.items() if grade > 0}
    top = list(ranking[:k])
    hits = [i for i, doc in enumerate(top, start=1) if doc in relevant]
    dcg = sum(grades[doc] / math.log2(i + 1) for i, doc in enumerate(top, start=1) if doc in relevant)
    ideal = sorted((grade for grade in grades.values() if grade > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(i + 1) for i, grade in enumerate(ideal, start=1))
    precision_sum = sum(rank_hits / rank for rank_hits, rank in enumerate(hits, start=1))
    return {
        "ndcg": dcg / idcg if idcg > 0 else 0.0,
        "mrr": 1.0 / hits[0] if hits else 0.0,
        "map": precision_sum / len(relevant) if relevant else 0.0,
        "recall": len(hits) / len(relevant) if relevant else 0.0,
        "accuracy": 1.0 if hits else 0.0,
    }


def ranking_metrics(run: Run, qrels: Qrels, ks: Sequence[int] = (1, 3, 5, 10, 100)) -> dict[str, float]:
    """``{"ndcg@10": ..., "mrr@10": ..., "map@10": ..., "recall@10": ..., "accuracy@10": ...}`` for every ``k``,
    each the mean over the queries with a relevant document in ``qrels``."""
    judged = [query for query, grades in qrels.items() if any(grade > 0 for grade in grades.values())]
    if not judged:
        raise ValueError("the qrels hold no relevant document: no metric can be computed")
    totals = {f"{metric}@{k}": 0.0 for k in ks for metric in METRICS}
    for query in judged:
        ranking = ranked(run.get(query, {}))
        for k in ks:
            for metric, value in query_metrics(ranking, qrels[query], k).items():
                totals[f"{metric}@{k}"] += value
    return {key: value / len(judged) for key, value in totals.items()}
