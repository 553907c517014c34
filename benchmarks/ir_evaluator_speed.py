"""Retrieval evaluation speed: hfcontrast's ``InformationRetrievalEvaluator`` against sentence-transformers'.

Both evaluate the same model (one sentence-transformers folder: a BERT encoder with mean pooling, loaded by
``SentenceTransformer`` on one side and ``ContrastiveTextModel.from_pretrained`` on the other) on the same
synthetic corpus, queries and qrels, in one process, with the same batch size, maximum length and cut-offs,
cosine similarity only. Each round times one full evaluation of each (embedding the queries and the corpus,
ranking, metrics), the order alternating; the ratio is sentence-transformers' seconds over ours.

The corpus (seeded): ``--docs`` documents of 8 to 24 words drawn from the packaged Wikipedia sentences' words;
each of ``--queries`` queries takes 6 words of one document (grade 2) and 2 of another (grade 1).

The model is small by default (random-init BERT, 2 layers of 128, MiniLM's tokenizer), so the evaluators' own
work is not hidden behind the encoder's; ``--model minilm`` evaluates all-MiniLM-L6-v2 instead (about 4x slower
per document on 2 CPU cores).

    python benchmarks/ir_evaluator_speed.py            # 100,000 documents, 5 rounds (about 15 min on 2 cores)
    python benchmarks/ir_evaluator_speed.py --quick    # 20,000 documents, 3 rounds
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
    LoadSampler,
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    save_results,
    wait_until_quiet,
)

KS = (1, 3, 5, 10, 100)


def synthetic_task(
    docs: int, queries: int, seed: int = 0
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """``(corpus, queries, graded qrels)`` described in the module docstring."""
    words = (
        (REPO_ROOT / "hfcontrast" / "demo" / "data" / "wiki" / "wiki_sentences.txt")
        .read_text(encoding="utf-8")
        .split()
    )
    rng = random.Random(seed)
    corpus = {f"d{i}": " ".join(rng.choices(words, k=rng.randint(8, 24))) for i in range(docs)}
    ids = list(corpus)
    query_texts: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(queries):
        first, second = rng.sample(ids, 2)
        picked = rng.sample(corpus[first].split(), 6) + rng.sample(corpus[second].split(), 2)
        query_texts[f"q{q}"] = " ".join(picked)
        qrels[f"q{q}"] = {first: 2, second: 1}
    return corpus, query_texts, qrels


def build_model(kind: str, folder: Path) -> str:
    """A sentence-transformers folder of the model (mean pooling), written once under ``folder``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hfcontrast.demo import default_text_model

    minilm = default_text_model()
    if kind == "minilm":
        backbone = Transformer(minilm, max_seq_length=128)
    else:
        import torch

        torch.manual_seed(0)
        bert = folder / "bert"
        config = BertConfig(vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=512, max_position_embeddings=512)  # fmt: skip
        BertModel(config).save_pretrained(bert)
        AutoTokenizer.from_pretrained(minilm).save_pretrained(bert)
        backbone = Transformer(str(bert), max_seq_length=128)
    pooling = Pooling(backbone.get_embedding_dimension(), pooling_mode="mean")
    path = folder / "st-model"
    SentenceTransformer(modules=[backbone, pooling], device="cpu").save(str(path))
    return str(path)


def one_round(rep: int, reps: int, peer: Any, peer_model: Any, ours: Any, ours_model: Any) -> dict[str, float]:
    """One timed evaluation of each, the order alternating by round."""
    result: dict[str, float] = {}
    for name in ("peer", "ours") if rep % 2 == 0 else ("ours", "peer"):
        start = time.perf_counter()
        metrics = peer(peer_model) if name == "peer" else ours(ours_model)
        result[f"{name}_s"] = time.perf_counter() - start
        key = "peer_cosine_mrr@10" if name == "peer" else "ir_mrr@10"
        result[f"{name}_mrr@10"] = metrics[key]
        result[f"{name}_accuracy@10"] = metrics[key.replace("mrr", "accuracy")]
    result["ratio"] = result["peer_s"] / result["ours_s"]
    print(f"round {rep + 1}/{reps}: sentence-transformers {result['peer_s']:.1f} s, ours {result['ours_s']:.1f} s, "
          f"ratio {result['ratio']:.2f}x", flush=True)  # fmt: skip
    return result


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", choices=("small", "minilm"), default="small")
    args = parser.parse_args()
    smoke = apply_smoke(args, docs=300, queries=20)
    if args.quick:
        args.docs = 20_000
    reps = args.reps or (1 if smoke else 3 if args.quick else 5)
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import __version__ as st_version
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator as PeerEvaluator,
    )
    from sentence_transformers.util import cos_sim
    from transformers import AutoTokenizer

    from hfcontrast import ContrastiveTextModel, InformationRetrievalEvaluator

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from claims import ratio_interval, verdict

    corpus, queries, qrels = synthetic_task(args.docs, args.queries)
    folder = Path(tempfile.mkdtemp(prefix="bench_ir_"))
    path = build_model(args.model, folder)
    peer_model = SentenceTransformer(path, device="cpu")
    ours_model = ContrastiveTextModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    peer = PeerEvaluator(queries, corpus, {q: set(d) for q, d in qrels.items()}, batch_size=args.batch_size,
                         mrr_at_k=list(KS), ndcg_at_k=list(KS), accuracy_at_k=list(KS), precision_recall_at_k=list(KS),
                         map_at_k=list(KS), score_functions={"cosine": cos_sim}, write_csv=False, name="peer")  # fmt: skip
    ours = InformationRetrievalEvaluator(corpus, queries, qrels, tokenizer, batch_size=args.batch_size, max_length=128,
                                         ks=KS, use_faiss=False)  # fmt: skip
    rounds = []
    with LoadSampler() as load:
        for rep in range(reps):
            rounds.append(one_round(rep, reps, peer, peer_model, ours, ours_model))
    summary: dict[str, object] = {"docs": args.docs, "queries": args.queries, "model": args.model,
                                  "batch_size": args.batch_size, "threads": torch.get_num_threads(), "rounds": rounds}  # fmt: skip
    if len(rounds) >= 2:
        interval = ratio_interval([r["peer_s"] for r in rounds], [r["ours_s"] for r in rounds])
        summary["ratio_interval"] = interval
        summary["target"] = verdict(interval[1], interval[2], 1.0)
    print(format_table(["round", "ST s", "ours s", "ratio", "ST MRR@10", "ours MRR@10"],
                       [[i + 1, r["peer_s"], r["ours_s"], r["ratio"], r["peer_mrr@10"], r["ours_mrr@10"]]
                        for i, r in enumerate(rounds)]))  # fmt: skip
    out = save_results(args.results_dir, "ir_evaluator_speed", {"machine": {**machine_info(), **load.summary()}, **summary},
                       peer_versions={"sentence-transformers": st_version})  # fmt: skip
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
