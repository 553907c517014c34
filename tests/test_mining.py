"""Hard-negative mining against a brute-force reference, the false-negative guard, the recipe, and 2
processes against 1."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as F

from hfcontrast.collators import TextPairCollator
from hfcontrast.mining import mine_hard_negatives
from tests.launch import REPO_ROOT, accelerate_launch, run_python
from tests.tiny import text_model, tokenizer

SCRIPT = REPO_ROOT / "recipes" / "mine_negatives.py"


class TableEncoder:
    """A ``SentenceTransformer``-like encoder with planted vectors: the neighbours are known."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str], **_: object) -> torch.Tensor:
        return torch.tensor([self.vectors[t] for t in texts], dtype=torch.float32)


def brute_force(anchors, positives, corpus, embed, k, lo, hi, margin=None, ratio=None):  # type: ignore[no-untyped-def]
    """Score every corpus text with a loop, rank, filter: the mined negatives per row (None if too few)."""
    out = []
    for a, p in zip(anchors, positives):
        ea = F.normalize(embed([a]), dim=-1)[0]
        score = {c: float(ea @ F.normalize(embed([c]), dim=-1)[0]) for c in corpus}
        ranked = sorted((c for c in corpus if c not in (a, p)), key=lambda c: -score[c])
        kept = [c for rank, c in enumerate(ranked) if lo <= rank < hi
                and (margin is None or score[c] <= score[p] - margin) and (ratio is None or score[c] <= ratio * score[p])]
        out.append(kept[:k] if len(kept) >= k else None)
    return out


def test_tiny_model_equals_brute_force() -> None:
    words = ["red car", "blue car", "green tree", "old tree", "fast dog", "slow dog", "big sea", "small sea", "sky", "road"]
    pairs = datasets.Dataset.from_dict({"anchor": words[:5], "positive": words[5:]})
    extra = ["a red road", "blue sky", "dog and cat", "the tree"]
    model = text_model(pooler="mean", dropout=0.0).eval()

    def embed(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return model(**tokenizer()(texts, return_tensors="pt", padding=True)).embeddings

    mined = mine_hard_negatives(pairs, model, tokenizer(), corpus=extra, num_negatives=2, range_min=1, range_max=6,
                                use_faiss=False, show_progress_bar=False)
    corpus = list(dict.fromkeys(words[5:] + extra))
    want = brute_force(words[:5], words[5:], corpus, embed, 2, 1, 6)
    got = {a: [n1, n2] for a, n1, n2 in zip(mined["anchor"], mined["negative_1"], mined["negative_2"])}
    assert got == {a: w for a, w in zip(words[:5], want) if w is not None} and len(got) >= 3


def test_guard_drops_a_planted_duplicate_of_the_positive() -> None:
    vectors = {"q": [1.0, 0.0, 0.0], "pos": [0.9, 0.1, 0.0], "pos copy": [0.9, 0.11, 0.0], "near": [0.7, 0.7, 0.0],
               "far": [0.0, 0.0, 1.0]}
    pairs = datasets.Dataset.from_dict({"anchor": ["q"], "positive": ["pos"]})
    encoder = TableEncoder(vectors)
    corpus = ["pos copy", "near", "far"]
    unguarded = mine_hard_negatives(pairs, encoder, corpus=corpus, use_faiss=False, show_progress_bar=False)
    assert unguarded["negative_1"] == ["pos copy"]  # the duplicate ranks first without the guard
    for guard in ({"margin": 0.05}, {"max_score_ratio": 0.95}):
        mined = mine_hard_negatives(pairs, encoder, corpus=corpus, use_faiss=False, show_progress_bar=False, **guard)
        assert mined["negative_1"] == ["near"], guard
        embed = encoder.encode
        assert brute_force(["q"], ["pos"], ["pos", *corpus], embed, 1, 0, 50, guard.get("margin"), guard.get("max_score_ratio")) == [["near"]]


def test_rows_without_enough_negatives_are_left_out_and_output_feeds_the_collator() -> None:
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0], "p1": [1.0, 0.1], "p2": [0.1, 1.0]}
    pairs = datasets.Dataset.from_dict({"anchor": ["a", "b"], "positive": ["p1", "p2"]})
    mined = mine_hard_negatives(pairs, TableEncoder(vectors), num_negatives=1, use_faiss=False, max_score_ratio=0.5,
                                show_progress_bar=False)
    assert len(mined) == 2 and mined["negative_1"] == ["p2", "p1"]
    collator = TextPairCollator.from_column_names(tokenizer(), mined.column_names)
    assert collator.negative_columns == ("negative_1",)
    assert collator(list(mined))["negative"]["input_ids"].shape[0] == 2
    none = mine_hard_negatives(pairs, TableEncoder(vectors), num_negatives=2, use_faiss=False, show_progress_bar=False)
    assert len(none) == 0


@pytest.mark.distributed
def test_two_processes_mine_what_one_process_mines(tmp_path: Path) -> None:
    args = ["--max_train_samples", "120", "--num_negatives", "2", "--range_min", "2", "--range_max", "20",
            "--max_score_ratio", "0.95", "--use_faiss", "false", "--batch_size", "32"]
    run_python(SCRIPT, *args, "--output_file", str(tmp_path / "one.jsonl"))
    accelerate_launch(SCRIPT, *args, "--output_file", str(tmp_path / "two.jsonl"))
    one = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert len(one) > 100 and one == two
    with pytest.raises(AssertionError, match="exists"):
        run_python(SCRIPT, *args, "--output_file", str(tmp_path / "one.jsonl"))


def test_faiss_search_equals_the_matmul_search() -> None:
    pytest.importorskip("faiss")
    from hfcontrast.mining import top_candidates

    g = torch.Generator().manual_seed(0)
    corpus, queries = F.normalize(torch.randn(300, 16, generator=g), dim=-1), F.normalize(torch.randn(40, 16, generator=g), dim=-1)
    s1, i1 = top_candidates(queries, corpus, 10, use_faiss=True)
    s2, i2 = top_candidates(queries, corpus, 10, use_faiss=False, chunk_size=7)
    assert torch.equal(i1, i2)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)
