"""An offline retrieval task built from the packaged data (``recipes/simcse.py --demo retrieval``).

How it is built, honestly: SNLI premises are the queries and the hypotheses that premise entails are its
relevant passages. The premises are split in two, so no query of the evaluation is seen in training:

* **train:** ``(query, positive, negative)`` rows of the training premises: each entailed hypothesis with the
  contradiction written for it as its hard negative;
* **evaluation:** the other premises as queries; the corpus is every hypothesis of those premises (entailed
  and contradicting) plus Wikipedia sentences as distractors; a query's entailed hypotheses have grade 1.

It is a small, easy task (short sentences, lexical overlap between a premise and its hypotheses), good for
showing that the pipeline works and for comparing settings at equal budget, not a stand-in for BEIR.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import datasets

from .files import SNLI_TRIPLETS, WIKI_SENTENCES, data_file
from .text import load_text_dataset


@dataclass(frozen=True)
class RetrievalTask:
    """Training rows and the evaluation's ``corpus``, ``queries`` and ``relevant`` (BEIR's three parts)."""

    train: datasets.Dataset
    corpus: dict[str, str]
    queries: dict[str, str]
    relevant: dict[str, dict[str, int]]


def snli_retrieval(eval_fraction: float = 0.2, distractors: int = 2000, seed: int = 0) -> RetrievalTask:
    """The task described in the module, from the packaged SNLI triplets and Wikipedia sentences."""
    rows = load_text_dataset(data_file(SNLI_TRIPLETS))
    premises = sorted(set(rows["sent0"]))
    random.Random(seed).shuffle(premises)
    held_out = set(premises[: int(len(premises) * eval_fraction)])
    train = rows.filter(lambda row: row["sent0"] not in held_out)
    train = train.rename_columns({"sent0": "query", "sent1": "positive", "hard_neg": "negative"})
    corpus: dict[str, str] = {}
    doc_ids: dict[str, str] = {}

    def document(text: str) -> str:
        if text not in doc_ids:
            doc_ids[text] = f"d{len(doc_ids)}"
            corpus[doc_ids[text]] = text
        return doc_ids[text]

    queries: dict[str, str] = {}
    relevant: dict[str, dict[str, int]] = {}
    query_ids: dict[str, str] = {}
    for premise, entailed, contradiction in zip(rows["sent0"], rows["sent1"], rows["hard_neg"], strict=True):
        if premise not in held_out:
            continue
        qid = query_ids.setdefault(premise, f"q{len(query_ids)}")
        queries[qid] = premise
        relevant.setdefault(qid, {})[document(entailed)] = 1
        document(contradiction)
    wiki = load_text_dataset(data_file(WIKI_SENTENCES))["text"]
    for text in random.Random(seed + 1).sample(wiki, min(distractors, len(wiki))):
        document(text)
    return RetrievalTask(train, corpus, queries, relevant)
