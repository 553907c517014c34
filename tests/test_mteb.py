"""MTEB on an export: the standard sentence-transformers folder runs ``mteb.evaluate`` with no wrapper, on a
local retrieval task (no Hub access), and MTEB's nDCG@10 / MRR@10 equal hfcontrast's evaluator on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hfcontrast.demo import snli_retrieval
from hfcontrast.evaluation import InformationRetrievalEvaluator
from hfcontrast.hub.formats import export
from tests.tiny import text_model, tokenizer

mteb = pytest.importorskip("mteb", reason="mteb is an optional extra: pip install 'hfcontrast[mteb]'")


def local_retrieval_task(name: str, corpus: dict[str, str], queries: dict[str, str], relevant: dict[str, dict[str, int]]) -> Any:
    """An MTEB retrieval task over in-memory data (what docs/text_techniques.md shows)."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=name, type="Retrieval", main_score="ndcg_at_10", description="a local retrieval task",
            reference=None, dataset={"path": "local", "revision": "local"}, category="t2t", eval_splits=["test"],
            eval_langs=["eng-Latn"], modalities=["text"], date=None, dialect=None, domains=None, task_subtypes=None,
            license=None, annotations_creators=None, sample_creation=None, bibtex_citation=None,
        )  # fmt: skip

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            split = {
                "queries": Dataset.from_list([{"id": k, "text": v} for k, v in queries.items()]),
                "corpus": Dataset.from_list([{"id": k, "text": v, "title": ""} for k, v in corpus.items()]),
                "relevant_docs": relevant, "top_ranked": None,
            }  # fmt: skip
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return LocalRetrieval()


def test_mteb_runs_on_the_standard_export_and_agrees_with_our_evaluator(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = text_model(pooler="mean").eval()
    export(model, str(tmp_path / "model"), tokenizer(), max_seq_length=64)
    task = snli_retrieval()
    queries = dict(list(task.queries.items())[:100])
    relevant = {q: task.relevant[q] for q in queries}
    corpus = dict(list(task.corpus.items())[:800])
    corpus |= {doc: task.corpus[doc] for docs in relevant.values() for doc in docs}
    result = mteb.evaluate(
        SentenceTransformer(str(tmp_path / "model"), device="cpu"), tasks=[local_retrieval_task("SNLIRetrieval", corpus, queries, relevant)],
        cache=None, show_progress_bar=False, encode_kwargs={"batch_size": 64},
    )  # fmt: skip
    scores = result.task_results[0].scores["test"][0]
    ours = InformationRetrievalEvaluator(corpus, queries, relevant, tokenizer(), max_length=64, use_faiss=False)(model)
    assert 0.05 < scores["ndcg_at_10"] < 0.95  # a random tiny model: neither trivial nor hopeless
    assert scores["ndcg_at_10"] == pytest.approx(ours["ir_ndcg@10"], abs=2e-4)
    assert scores["mrr_at_10"] == pytest.approx(ours["ir_mrr@10"], abs=2e-4)
    assert scores["recall_at_100"] == pytest.approx(ours["ir_recall@100"], abs=2e-4)
