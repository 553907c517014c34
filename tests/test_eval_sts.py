"""STS file loading and STSEvaluator against a naive per-pair computation on a tiny random BERT."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import transformers
from scipy.stats import pearsonr, spearmanr
from torch import nn

from hfcontrast.demo import STSB_DEV, data_file
from hfcontrast.evaluation import Evaluator, STSEvaluator, STSFormatError, load_sts_file

WORDS = [
    "a",
    "man",
    "woman",
    "child",
    "is",
    "are",
    "dancing",
    "riding",
    "playing",
    "eating",
    "horse",
    "guitar",
    "food",
    "the",
    "dog",
    ".",
    ",",
]


def tiny_tokenizer() -> Any:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    # transformers 5: BertTokenizer takes `vocab` (a dict or a path); `vocab_file=` is silently ignored
    return transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


class MeanPooledBert(nn.Module):
    """Tiny random BERT, mean-pooled; records the mode it ran in."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        config = transformers.BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            vocab_size=vocab_size,
            max_position_embeddings=64,
        )
        self.bert = transformers.BertModel(config)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> SimpleNamespace:
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        return SimpleNamespace(embeddings=3.0 * (hidden * mask).sum(1) / mask.sum(1))


def random_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str], list[float]]:
    g = torch.Generator().manual_seed(seed)
    pool = [
        " ".join(WORDS[i] for i in torch.randint(len(WORDS), (int(length),), generator=g))
        for length in torch.randint(2, 9, (10,), generator=g)
    ]
    pick = torch.randint(len(pool), (n, 2), generator=g)
    scores = (torch.rand(n, generator=g) * 5).tolist()
    return [pool[i] for i in pick[:, 0]], [pool[j] for j in pick[:, 1]], scores


def test_sts_evaluator_matches_naive_loop() -> None:
    tokenizer = tiny_tokenizer()
    model = MeanPooledBert(len(tokenizer))
    s1, s2, scores = random_pairs(14)
    evaluator = STSEvaluator(s1, s2, scores, tokenizer, name="dev", batch_size=3)
    assert isinstance(evaluator, Evaluator)
    model.train()
    result = evaluator(model)
    assert model.training  # restored
    assert model.calls and all(not training and inference for training, inference in model.calls)
    assert len(model.calls) == math.ceil(len(set(s1 + s2)) / 3)  # unique sentences embedded once

    model.eval()
    naive = []
    with torch.no_grad():
        for a, b in zip(s1, s2):
            ea = model(**tokenizer([a], return_tensors="pt")).embeddings
            eb = model(**tokenizer([b], return_tensors="pt")).embeddings
            naive.append(float(F.cosine_similarity(ea, eb)[0]))
    assert evaluator.last_predictions is not None
    assert evaluator.last_predictions.tolist() == pytest.approx(naive, abs=1e-5)
    assert set(result) == {"dev_spearman", "dev_pearson"}
    assert result["dev_spearman"] == pytest.approx(spearmanr(naive, scores)[0], abs=1e-6)
    assert result["dev_pearson"] == pytest.approx(pearsonr(naive, scores)[0], abs=1e-5)
    assert not model.training  # eval mode stays eval mode
    assert evaluator(model) == pytest.approx(result)  # the metric is reused


def test_prompt_and_matryoshka_widths_from_one_pass() -> None:
    """``dims`` scores each prefix width from the same forward pass; ``prompt`` prefixes every sentence."""
    tokenizer = tiny_tokenizer()
    model = MeanPooledBert(len(tokenizer)).eval()
    s1, s2, scores = random_pairs(12, seed=1)
    evaluator = STSEvaluator(s1, s2, scores, tokenizer, name="dev", dims=(8,), prompt="the ")
    result = evaluator(model)
    assert len(model.calls) == math.ceil(len(set(s1 + s2)) / 64)  # one pass for both widths
    naive = []
    with torch.no_grad():
        for a, b in zip(s1, s2):
            ea = model(**tokenizer(["the " + a], return_tensors="pt")).embeddings[:, :8]
            eb = model(**tokenizer(["the " + b], return_tensors="pt")).embeddings[:, :8]
            naive.append(float(F.cosine_similarity(ea, eb)[0]))
    assert result["dev_dim_8_spearman"] == pytest.approx(spearmanr(naive, scores)[0], abs=1e-6)
    assert result["dev_dim_8_spearman"] != pytest.approx(result["dev_spearman"], abs=1e-6)


def test_sts_evaluator_validates_inputs() -> None:
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="one entry per pair"):
        STSEvaluator(["a"], ["a", "b"], [1.0], tokenizer)
    with pytest.raises(ValueError, match="at least 2"):
        STSEvaluator(["a"], ["b"], [1.0], tokenizer)


def test_load_sts_benchmark_format(tmp_path: Path) -> None:
    path = tmp_path / "sts-dev.csv"
    path.write_text(
        'main-captions\tMSRvid\t2012test\t0000\t5.000\ta man "dances" .\ta man is dancing .\n'
        "\n"
        "main-news\theadlines\t2013\t0001\t0.5\ta dog\ta horse\tsource-a\tsource-b\n",
        encoding="utf-8",
    )
    data = load_sts_file(path)
    assert data == {
        "sentence1": ['a man "dances" .', "a dog"],
        "sentence2": ["a man is dancing .", "a horse"],
        "scores": [5.0, 0.5],
    }


@pytest.mark.parametrize(("name", "sep"), [("pairs.csv", ","), ("pairs.tsv", "\t")])
def test_load_headed_file(tmp_path: Path, name: str, sep: str) -> None:
    path = tmp_path / name
    quoted = '"a man, dancing"' if sep == "," else "a man, dancing"
    path.write_text(f"score{sep}sentence1{sep}sentence2\n4.5{sep}{quoted}{sep}a man dances\n1{sep}x{sep}y\n")
    data = load_sts_file(path)
    assert data == {
        "sentence1": ["a man, dancing", "x"],
        "sentence2": ["a man dances", "y"],
        "scores": [4.5, 1.0],
    }


def test_malformed_rows_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    good = "g\tf\t2012\t0\t3.0\ta\tb\n"
    path.write_text(good + "g\tf\t2012\t1\tfive\ta\tb\n")
    with pytest.raises(STSFormatError, match=r"line 2: score 'five'"):
        load_sts_file(path)
    path.write_text(good + good + "g\tf\t2012\t1\t3.0\ta\n")
    with pytest.raises(STSFormatError, match="line 3: expected at least 7 columns, got 6"):
        load_sts_file(path)
    path.write_text("sentence1,sentence2,score\na,b,1\nc,,2\n")
    with pytest.raises(STSFormatError, match="line 3: sentence2 is empty"):
        load_sts_file(path)
    path.write_text("just,some,commas\n")
    with pytest.raises(STSFormatError, match="line 1: no 'sentence1,sentence2,score' header"):
        load_sts_file(path)


def test_packaged_stsb_dev() -> None:
    path = data_file(STSB_DEV)  # shipped inside the package: no ../shared needed
    data = load_sts_file(path)
    assert len(data["scores"]) == len(data["sentence1"]) == len(data["sentence2"]) == 1500
    assert all(0.0 <= s <= 5.0 for s in data["scores"])
    assert all(s.strip() for s in data["sentence1"] + data["sentence2"])
    evaluator = STSEvaluator.from_file(path, tiny_tokenizer(), name="stsb_dev")
    assert len(evaluator) == 1500 and evaluator.name == "stsb_dev"
