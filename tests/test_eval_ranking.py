"""Information retrieval metrics against pytrec_eval (trec_eval) and a naive loop on random runs with ties and
graded qrels; the evaluator against a brute-force ranking of the same embeddings, faiss against matrix products,
BEIR folders read back, Matryoshka widths from one pass, reranking, the command line, and 2 processes."""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hfcontrast.evaluation import (
    InformationRetrievalEvaluator,
    RerankingEvaluator,
    load_beir,
    ranking_metrics,
)
from tests.launch import REPO_ROOT, accelerate_launch
from tests.tiny import text_model, tokenizer

KS = (1, 3, 5, 10)


def random_run_and_qrels(seed: int) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    rng = random.Random(seed)
    run = {f"q{q}": {f"d{d}": rng.choice([0.1, 0.5, 0.5, 0.9, round(rng.random(), 3)]) for d in rng.sample(range(40), 25)}
           for q in range(30)}  # fmt: skip
    qrels = {f"q{q}": {f"d{d}": rng.choice([0, 1, 2, 3]) for d in rng.sample(range(40), 8)} for q in range(30)}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_trec_eval_with_ties_and_graded_labels(seed: int) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = random_run_and_qrels(seed)
    ours = ranking_metrics(run, qrels, KS)
    measures = {f"ndcg_cut_{k}" for k in KS} | {f"map_cut_{k}" for k in KS} | {f"recall_{k}" for k in KS} | {"recip_rank"}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    judged = [q for q, grades in qrels.items() if any(g > 0 for g in grades.values())]
    for k in KS:
        for metric, measure in (("ndcg", f"ndcg_cut_{k}"), ("map", f"map_cut_{k}"), ("recall", f"recall_{k}")):
            assert ours[f"{metric}@{k}"] == pytest.approx(statistics.mean(theirs[q][measure] for q in judged), abs=1e-12)
    full = ranking_metrics(run, qrels, (1000,))
    assert full["mrr@1000"] == pytest.approx(statistics.mean(theirs[q]["recip_rank"] for q in judged), abs=1e-12)


def test_metrics_equal_a_naive_loop() -> None:
    """MRR@k and Accuracy@k (which trec_eval has no cut-off form of) and nDCG@k written out."""
    run, qrels = random_run_and_qrels(3)
    ours = ranking_metrics(run, qrels, KS)
    judged = [q for q, grades in qrels.items() if any(g > 0 for g in grades.values())]
    for k in KS:
        mrr = accuracy = ndcg = 0.0
        for q in judged:
            order = sorted(run[q], key=lambda d: (run[q][d], d), reverse=True)[:k]  # ties: the higher id first
            grades = [qrels[q].get(d, 0) for d in order]
            first = next((i for i, g in enumerate(grades, 1) if g > 0), None)
            mrr += 1 / first if first else 0.0
            accuracy += 1.0 if first else 0.0
            ideal = sorted((g for g in qrels[q].values() if g > 0), reverse=True)[:k]
            dcg = sum(g / math.log2(i + 1) for i, g in enumerate(grades, 1))
            ndcg += dcg / sum(g / math.log2(i + 1) for i, g in enumerate(ideal, 1))
        assert ours[f"mrr@{k}"] == pytest.approx(mrr / len(judged))
        assert ours[f"accuracy@{k}"] == pytest.approx(accuracy / len(judged))
        assert ours[f"ndcg@{k}"] == pytest.approx(ndcg / len(judged))
    with pytest.raises(ValueError, match="no relevant document"):
        ranking_metrics(run, {"q0": {"d1": 0}})


WORDS = ["cat", "dog", "sea", "car", "sky", "tree", "bird", "road", "rain", "moon", "fish", "bread"]


def beir_folder(folder: Path, docs: int = 30, queries: int = 8) -> Path:
    rng = random.Random(0)
    corpus = [{"_id": f"d{i}", "title": rng.choice(WORDS), "text": " ".join(rng.sample(WORDS, 5))} for i in range(docs)]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(row) for row in corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": " ".join(rng.sample(WORDS, 3))})
                                                    for i in range(queries)) + "\n")  # fmt: skip
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{rng.randrange(docs)}\t{rng.choice([1, 2])}" for i in range(queries)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_evaluator_ranks_as_brute_force_on_a_beir_folder_and_with_faiss(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path / "beir")
    corpus, queries, qrels = load_beir(folder)
    assert len(corpus) == 30 and corpus["d0"].count(" ") == 5 and len(queries) == 8
    torch.manual_seed(0)
    model = text_model(pooler="mean").eval()
    evaluator = InformationRetrievalEvaluator(corpus, queries, qrels, tokenizer(), ks=KS, matryoshka_dims=(16,), use_faiss=False)
    metrics = evaluator(model)
    with torch.no_grad():
        def embed(texts: list[str]) -> torch.Tensor:
            return torch.nn.functional.normalize(model(**tokenizer()(texts, padding=True, truncation=True, max_length=256,
                                                                     return_tensors="pt")).embeddings, dim=-1)  # fmt: skip

        q, c = embed(list(evaluator.queries.values())), embed(list(corpus.values()))
    for width, prefix in ((None, "ir"), (16, "ir_dim_16")):
        qq, cc = (q, c) if width is None else (torch.nn.functional.normalize(q[:, :width], dim=-1),
                                              torch.nn.functional.normalize(c[:, :width], dim=-1))  # fmt: skip
        scores = qq @ cc.T
        run = {qid: {did: float(scores[i, j]) for j, did in enumerate(corpus)} for i, qid in enumerate(evaluator.queries)}
        want = ranking_metrics(run, qrels, KS)
        for key, value in want.items():
            assert metrics[f"{prefix}_{key}"] == pytest.approx(value, abs=1e-6), key
    pytest.importorskip("faiss")
    with_faiss = InformationRetrievalEvaluator(corpus, queries, qrels, tokenizer(), ks=KS, use_faiss=True)(model)
    assert with_faiss == pytest.approx({k: v for k, v in metrics.items() if "dim" not in k}, abs=1e-6)


def test_query_and_document_prompts_reach_the_encoder(tmp_path: Path) -> None:
    corpus, queries, qrels = load_beir(beir_folder(tmp_path / "beir"))
    seen: list[str] = []

    class Spy:
        def __call__(self, texts: list[str], **kwargs: object) -> object:
            seen.extend(texts)
            return tokenizer()(texts, **kwargs)

    InformationRetrievalEvaluator(corpus, queries, qrels, Spy(), query_prompt="query: ", document_prompt="passage: ")(text_model())
    assert sum(t.startswith("query: ") for t in seen) == 8 and sum(t.startswith("passage: ") for t in seen) == 30


def test_reranking_mrr_and_map_against_the_written_out_ranking() -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean").eval()
    samples = [{"query": "a red cat", "positive": ["a cat that is red", "red cats"], "negative": ["the sea", "a car", "rain"]},
               {"query": "the moon", "positive": ["the moon at night"], "negative": ["bread", "fish and chips"]}]  # fmt: skip
    got = RerankingEvaluator(samples, tokenizer(), at_k=2)(model)
    mrr = ap = 0.0
    for sample in samples:
        docs = sample["positive"] + sample["negative"]
        with torch.no_grad():
            e = torch.nn.functional.normalize(model(**tokenizer()([sample["query"], *docs], padding=True, return_tensors="pt")).embeddings, dim=-1)
        scores = (e[1:] @ e[0]).tolist()
        order = sorted(range(len(docs)), key=lambda j: (scores[j], str(j)), reverse=True)
        relevant = [j < len(sample["positive"]) for j in order]
        mrr += next((1 / r for r, hit in enumerate(relevant[:2], 1) if hit), 0.0)
        hits = [r for r, hit in enumerate(relevant, 1) if hit]
        ap += sum(i / r for i, r in enumerate(hits, 1)) / len(sample["positive"])
    assert got == pytest.approx({"rerank_mrr@2": mrr / 2, "rerank_map": ap / 2})


def test_command_line_scores_a_folder(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path / "beir")
    model = tmp_path / "model"
    text_model(pooler="mean").save_pretrained(model)
    tokenizer().save_pretrained(model)
    done = subprocess.run([sys.executable, "-m", "hfcontrast.evaluation.retrieval", "--model", str(model), "--data", str(folder)],
                          capture_output=True, text=True, cwd=REPO_ROOT, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                                              "PYTHONPATH": str(REPO_ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout[done.stdout.index("{") :])
    assert {"ir_ndcg@10", "ir_mrr@10", "ir_map@100", "ir_recall@100", "ir_accuracy@1"} <= set(metrics)


@pytest.mark.distributed
def test_sharded_corpus_encoding_over_two_processes_equals_one(tmp_path: Path) -> None:
    folder = beir_folder(tmp_path / "beir", docs=31)  # an odd corpus: shares of 16 and 15
    script = tmp_path / "ir.py"
    script.write_text(f"""
import json, sys, torch
sys.path.insert(0, {str(REPO_ROOT)!r})
from accelerate import PartialState
from hfcontrast.evaluation import InformationRetrievalEvaluator
from tests.tiny import text_model, tokenizer
state = PartialState(cpu=True)
torch.manual_seed(0)
metrics = InformationRetrievalEvaluator.from_beir({str(folder)!r}, tokenizer(), use_faiss=False)(text_model(pooler="mean"))
open({str(tmp_path)!r} + f"/rank{{state.process_index}}-of-{{state.num_processes}}.json", "w").write(json.dumps(metrics))
if torch.distributed.is_initialized():  # leave the group together: a rank that exits first aborts the other's gloo threads
    state.wait_for_everyone()
    torch.distributed.destroy_process_group()
""")
    accelerate_launch(script)
    subprocess.run([sys.executable, str(script)], check=True, cwd=tmp_path)
    one = json.loads((tmp_path / "rank0-of-1.json").read_text())
    for r in range(2):
        assert json.loads((tmp_path / f"rank{r}-of-2.json").read_text()) == pytest.approx(one, abs=1e-6)
