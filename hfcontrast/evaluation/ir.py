"""Text retrieval evaluation: a corpus, queries and graded qrels (BEIR's layout), scored by ranking metrics.

:class:`InformationRetrievalEvaluator` embeds the queries and the corpus (the corpus in chunks; under several
processes each embeds a strided share, gathered in corpus order), ranks the corpus for each query by cosine
similarity (an exact top-k by chunked matrix products, or faiss' exact inner-product index when installed), and
reports :mod:`hfcontrast.evaluation.ranking`'s metrics: ``<name>_ndcg@10``, ``<name>_mrr@10``, ... and, per
Matryoshka width, ``<name>_dim_<d>_ndcg@10`` from the same embeddings. :class:`RerankingEvaluator` ranks given
candidate lists with the same code. ``python -m hfcontrast.evaluation.retrieval --model out --data beir_folder``
runs the former from the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..distributed import gather_detached, rank, world_size
from ..objectives.clusters import interleaved
from ._common import cosine_normalize, embed_texts
from .ranking import Qrels, ranking_metrics

KS = (1, 3, 5, 10, 100)


def load_beir(folder: str | os.PathLike[str], split: str = "test") -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """``(corpus, queries, qrels)`` of a BEIR folder: ``corpus.jsonl`` (``_id``, ``title``, ``text``; title and text
    joined), ``queries.jsonl`` (``_id``, ``text``), ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``,
    with a header). Errors name the file and the line."""
    root = Path(folder)

    def jsonl(name: str) -> dict[str, str]:
        rows: dict[str, str] = {}
        path = root / name
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows[str(row["_id"])] = " ".join(part for part in (row.get("title", ""), row["text"]) if part).strip()
            except (ValueError, KeyError) as error:
                raise ValueError(f"{path}, line {number}: expected a JSON object with _id and text ({error})") from error
        return rows

    qrels: dict[str, dict[str, int]] = {}
    path = root / "qrels" / f"{split}.tsv"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if number == 1 and not fields[-1].strip().lstrip("-").isdigit():
            continue  # the header
        if len(fields) < 3:
            raise ValueError(f"{path}, line {number}: expected query-id, corpus-id and score separated by tabs")
        qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    return jsonl("corpus.jsonl"), jsonl("queries.jsonl"), qrels


class InformationRetrievalEvaluator:
    """nDCG@k, MRR@k, MAP@k, Recall@k and Accuracy@k of a text encoder on ``corpus`` (``{doc id: text}``),
    ``queries`` (``{query id: text}``) and ``relevant`` (``{query id: {doc id: grade}}``).

    ``query_prompt`` / ``document_prompt`` are prepended (E5 / BGE instructions); ``matryoshka_dims`` adds the
    metrics of each prefix width; ``use_faiss`` (default: when faiss is installed) searches with faiss' exact
    inner-product index instead of chunked matrix products (the same ranking)."""

    def __init__(
        self,
        corpus: Mapping[str, str],
        queries: Mapping[str, str],
        relevant: Qrels,
        tokenizer: Any,
        *,
        name: str = "ir",
        ks: Sequence[int] = KS,
        batch_size: int = 128,
        max_length: int = 256,
        query_prompt: str = "",
        document_prompt: str = "",
        matryoshka_dims: Sequence[int] = (),
        use_faiss: bool | None = None,
        chunk_size: int = 4096,
        show_progress_bar: bool = False,
    ) -> None:
        self.queries = {qid: queries[qid] for qid in relevant if qid in queries}
        if not self.queries or not corpus:
            raise ValueError("the evaluation needs queries with qrels and a corpus")
        self.doc_ids, self.docs = list(corpus), list(corpus.values())
        self.relevant, self.tokenizer, self.name, self.ks = relevant, tokenizer, name, tuple(ks)
        self.batch_size, self.max_length, self.chunk_size = batch_size, max_length, chunk_size
        self.query_prompt, self.document_prompt = query_prompt, document_prompt
        self.dims, self.show_progress_bar = tuple(matryoshka_dims), show_progress_bar
        self.use_faiss = _faiss_available() if use_faiss is None else use_faiss

    @classmethod
    def from_beir(cls, folder: str | os.PathLike[str], tokenizer: Any, split: str = "test", **kwargs: Any) -> InformationRetrievalEvaluator:
        corpus, queries, qrels = load_beir(folder, split)
        return cls(corpus, queries, qrels, tokenizer, **kwargs)

    def _embed(self, model: nn.Module, texts: Sequence[str], prompt: str, what: str) -> torch.Tensor:
        return embed_texts(model, self.tokenizer, [prompt + t for t in texts], batch_size=self.batch_size,
                           max_length=self.max_length, show_progress_bar=self.show_progress_bar, desc=f"{self.name}: {what}")  # fmt: skip

    def embed_corpus(self, model: nn.Module) -> torch.Tensor:
        """The corpus' embeddings ``[N, D]``, each process embedding documents ``rank, rank + W, ...``, gathered back
        into corpus order on every process."""
        processes, me = world_size(), rank()
        mine = self._embed(model, self.docs[me::processes], self.document_prompt, "corpus")
        if processes == 1:
            return mine
        return interleaved(gather_detached(mine), len(self.docs), processes)

    def run(self, queries: torch.Tensor, corpus: torch.Tensor, top_k: int) -> dict[str, dict[str, float]]:
        """``{query id: {doc id: cosine}}`` of each query's ``top_k`` documents."""
        q, c = cosine_normalize(queries), cosine_normalize(corpus.to(queries.device))
        k = min(top_k, c.shape[0])
        if self.use_faiss:
            import faiss

            index = faiss.IndexFlatIP(c.shape[1])
            index.add(c.cpu().numpy())
            values, indices = (torch.from_numpy(x) for x in index.search(q.cpu().numpy(), k))
        else:
            parts = [(q[s : s + self.chunk_size] @ c.T).topk(k, dim=1) for s in range(0, q.shape[0], self.chunk_size)]
            values, indices = torch.cat([p.values for p in parts]).cpu(), torch.cat([p.indices for p in parts]).cpu()
        ids = list(self.queries)
        return {ids[i]: {self.doc_ids[j]: float(v) for j, v in zip(indices[i].tolist(), values[i].tolist(), strict=True)}
                for i in range(len(ids))}  # fmt: skip

    def __call__(self, model: nn.Module) -> dict[str, float]:
        queries = self._embed(model, list(self.queries.values()), self.query_prompt, "queries")
        corpus = self.embed_corpus(model)
        top = max(self.ks)
        metrics = {f"{self.name}_{key}": value for key, value in ranking_metrics(self.run(queries, corpus, top), self.relevant, self.ks).items()}
        for width in self.dims:
            run = self.run(queries[:, :width], corpus[:, :width], top)
            metrics.update({f"{self.name}_dim_{width}_{key}": value for key, value in ranking_metrics(run, self.relevant, self.ks).items()})
        return metrics


class RerankingEvaluator:
    """MRR@k and MAP of a text encoder re-ranking given candidates: ``samples`` are ``{"query": text, "positive":
    [texts], "negative": [texts]}``; each query's candidates are ranked by cosine similarity (the same ranking
    code as :class:`InformationRetrievalEvaluator`)."""

    def __init__(self, samples: Sequence[Mapping[str, Any]], tokenizer: Any, *, name: str = "rerank", at_k: int = 10,
                 batch_size: int = 64, max_length: int = 256, query_prompt: str = "", document_prompt: str = "") -> None:  # fmt: skip
        self.samples = [s for s in samples if s.get("positive") and s.get("negative")]
        if not self.samples:
            raise ValueError("reranking needs samples with at least one positive and one negative")
        self.tokenizer, self.name, self.at_k = tokenizer, name, at_k
        self.batch_size, self.max_length = batch_size, max_length
        self.query_prompt, self.document_prompt = query_prompt, document_prompt

    def __call__(self, model: nn.Module) -> dict[str, float]:
        run: dict[str, dict[str, float]] = {}
        qrels: dict[str, dict[str, int]] = {}
        queries = embed_texts(model, self.tokenizer, [self.query_prompt + s["query"] for s in self.samples],
                              batch_size=self.batch_size, max_length=self.max_length)  # fmt: skip
        docs = [[*s["positive"], *s["negative"]] for s in self.samples]
        flat = embed_texts(model, self.tokenizer, [self.document_prompt + d for group in docs for d in group],
                           batch_size=self.batch_size, max_length=self.max_length)  # fmt: skip
        start = 0
        for i, (sample, group) in enumerate(zip(self.samples, docs, strict=True)):
            scores = cosine_normalize(flat[start : start + len(group)]) @ cosine_normalize(queries[i])
            start += len(group)
            run[str(i)] = {str(j): float(score) for j, score in enumerate(scores.tolist())}
            qrels[str(i)] = {str(j): int(j < len(sample["positive"])) for j in range(len(group))}
        at_k = ranking_metrics(run, qrels, (self.at_k,))
        full = ranking_metrics(run, qrels, (max(len(group) for group in docs),))
        return {f"{self.name}_mrr@{self.at_k}": at_k[f"mrr@{self.at_k}"],
                f"{self.name}_map": next(v for k, v in full.items() if k.startswith("map@"))}  # fmt: skip


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hfcontrast.evaluation.retrieval --model <folder or Hub id> --data <BEIR folder>``: the metrics as
    JSON (a sentence-transformers folder, an hfcontrast checkpoint or a plain backbone, mean-pooled)."""
    import argparse

    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    parser.add_argument("--split", default="test")
    parser.add_argument("--query_prompt", default="")
    parser.add_argument("--document_prompt", default="")
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args(argv)
    from ..models import ContrastiveTextModel

    if _loads_as_ours(args.model):
        model = ContrastiveTextModel.from_pretrained(args.model)
    else:
        model = ContrastiveTextModel.from_backbone_pretrained(args.model, pooler="mean")
    evaluator = InformationRetrievalEvaluator.from_beir(args.data, AutoTokenizer.from_pretrained(args.model), args.split,
                                                        query_prompt=args.query_prompt, document_prompt=args.document_prompt,
                                                        batch_size=args.batch_size, show_progress_bar=True)  # fmt: skip
    print(json.dumps(evaluator(model), indent=2))


def _loads_as_ours(path: str) -> bool:
    from transformers import AutoConfig

    from ..models import ContrastiveTextConfig

    return os.path.isfile(os.path.join(path, "modules.json")) or isinstance(AutoConfig.from_pretrained(path), ContrastiveTextConfig)
