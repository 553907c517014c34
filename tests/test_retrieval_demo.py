"""The offline retrieval task (``--demo retrieval``) and ``--ir_eval_data``: held-out queries never trained on,
qrels that point into the corpus, and the recipe's nDCG@10 before and after training."""

from __future__ import annotations

import json
from pathlib import Path

from hfcontrast.demo import SNLI_TRIPLETS, data_file, load_text_dataset, snli_retrieval
from tests.launch import REPO_ROOT, run_python
from tests.tiny import bert_config


def test_held_out_premises_are_never_training_queries() -> None:
    task = snli_retrieval()
    assert set(task.queries.values()).isdisjoint(task.train["query"])
    assert task.relevant.keys() == task.queries.keys()
    for docs in task.relevant.values():
        assert docs and all(doc in task.corpus and grade == 1 for doc, grade in docs.items())
    triplets = load_text_dataset(data_file(SNLI_TRIPLETS))
    entailed = {(p, h) for p, h in zip(triplets["sent0"], triplets["sent1"], strict=True)}
    for qid, docs in task.relevant.items():  # a relevant passage is a hypothesis its premise entails
        assert all((task.queries[qid], task.corpus[doc]) in entailed for doc in docs)
    assert len(task.train) + sum(1 for p in triplets["sent0"] if p in set(task.queries.values())) == len(triplets)
    assert snli_retrieval().relevant == task.relevant  # deterministic


def _beir(folder: Path) -> Path:
    folder.mkdir()
    docs = {"d1": "a red cat sleeps", "d2": "a blue car drives", "d3": "the dog runs fast", "d4": "old trees grow"}
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()))
    queries = {"q1": "where is the cat", "q2": "which car is blue"}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n")
    return folder


def test_recipe_retrieval_demo_and_a_beir_folder(tmp_path: Path) -> None:
    from hfcontrast.demo import default_text_model

    config_dir = tmp_path / "config"
    bert_config().save_pretrained(config_dir)
    common = ["--config_name", str(config_dir), "--tokenizer_name", default_text_model(), "--max_steps", "2",
              "--per_device_train_batch_size", "16", "--eval_steps", "2", "--max_seq_length", "16"]  # fmt: skip
    recipe = REPO_ROOT / "recipes" / "simcse.py"
    stdout = run_python(recipe, *common, "--demo", "retrieval", "--max_train_samples", "64", "--output_dir", str(tmp_path / "demo"))
    assert "retrieval nDCG@10 before:" in stdout
    results = json.loads((tmp_path / "demo" / "eval_results.json").read_text())
    assert {"before_ir_ndcg@10", "eval_ir_ndcg@10", "eval_ir_mrr@10", "eval_ir_recall@100"} <= results.keys()
    folder = _beir(tmp_path / "beir")
    run_python(recipe, *common, "--demo", "supervised", "--max_train_samples", "32", "--ir_eval_data", str(folder),
               "--output_dir", str(tmp_path / "beir-run"))  # fmt: skip
    results = json.loads((tmp_path / "beir-run" / "eval_results.json").read_text())
    assert 0.0 <= results["eval_ir_ndcg@10"] <= 1.0 and results["eval_ir_recall@100"] == 1.0  # 4 documents: all found
