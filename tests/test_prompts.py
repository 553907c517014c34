"""Prompts (E5 / BGE instructions): applied per view, recorded in the config and in sentence-transformers'
``prompts``, optionally left out of mean pooling; ``encode(x, prompt_name=...)`` equals the model's own
embedding of the prompted text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from hfcontrast.collators import TextPairCollator
from hfcontrast.collators.text import prompt_token_ids
from hfcontrast.hub import export_model
from hfcontrast.models.pooling import masked_mean
from tests.tiny import text_model, tokenizer

PROMPTS = {"anchor": "query: ", "positive": "passage: "}
ROWS = [{"q": "how big is the sea", "p": "the sea is very big", "n": "a cat sleeps"},
        {"q": "what eats birds", "p": "cats eat birds", "n": "the road is long"}]


def decode(ids: torch.Tensor) -> list[str]:
    return tokenizer().batch_decode(ids, skip_special_tokens=True)


def test_collator_prefixes_each_view_and_negatives_take_the_positive_prompt() -> None:
    collator = TextPairCollator(tokenizer(), "q", "p", ("n",), prompts=PROMPTS, ids_from_text=True)
    batch = collator(ROWS)
    assert decode(batch["anchor"]["input_ids"]) == ["query : how big is the sea", "query : what eats birds"]
    assert decode(batch["positive"]["input_ids"])[0] == "passage : the sea is very big"
    assert decode(batch["negative"]["input_ids"])[1] == "passage : the road is long"
    plain = TextPairCollator(tokenizer(), "q", "p", ("n",), ids_from_text=True)(ROWS)
    assert torch.equal(batch["ids"], plain["ids"])  # ids from the texts without prompts


def test_unsupervised_views_differ_when_prompts_differ() -> None:
    collator = TextPairCollator(tokenizer(), "q", "q", prompts=PROMPTS)
    batch = collator(ROWS)
    assert decode(batch["positive"]["input_ids"])[0] == "passage : how big is the sea"
    same = TextPairCollator(tokenizer(), "q", "q", prompts={"anchor": "query: ", "positive": "query: "})(ROWS)
    assert torch.equal(same["anchor"]["input_ids"], same["positive"]["input_ids"])


def test_unknown_view_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown view 'query'"):
        TextPairCollator(tokenizer(), prompts={"query": "q: "})


def test_prompt_tokens_left_out_of_mean_pooling() -> None:
    ids = prompt_token_ids(tokenizer(), PROMPTS)
    model = text_model(pooler="mean", dropout=0.0, prompts=PROMPTS, prompt_token_ids=ids, pool_prompt_tokens=False)
    model.eval()
    inputs = tokenizer()(["query: how big is the sea", "the sea"], return_tensors="pt", padding=True)
    out = model(**inputs)
    mask = inputs["attention_mask"].clone()
    mask[0, 1 : 1 + len(ids["anchor"])] = 0  # by hand: [CLS] query : how ... -> pool from "how"
    torch.testing.assert_close(out.embeddings, masked_mean(out.last_hidden_state, mask))
    model.config.pool_prompt_tokens = True
    assert not torch.allclose(model(**inputs).embeddings[0], out.embeddings[0])
    torch.testing.assert_close(model(**inputs).embeddings[1], out.embeddings[1])  # no prompt: unchanged


@pytest.mark.parametrize("pool_prompt_tokens", [True, False])
def test_sentence_transformers_prompt_name_equals_model_on_prompted_text(tmp_path: Path, pool_prompt_tokens: bool) -> None:
    model = text_model(pooler="mean", dropout=0.0, prompts=PROMPTS, prompt_token_ids=prompt_token_ids(tokenizer(), PROMPTS),
                       pool_prompt_tokens=pool_prompt_tokens).eval()
    export_model(model, str(tmp_path), tokenizer())
    saved = json.loads((tmp_path / "config_sentence_transformers.json").read_text())
    assert saved["prompts"] == {"query": "query: ", "document": "passage: "}
    st = SentenceTransformer(str(tmp_path), device="cpu")
    texts = ["how big is the sea", "cats eat birds"]
    for name, prompt in (("query", "query: "), ("document", "passage: ")):
        got = st.encode(texts, prompt_name=name, convert_to_tensor=True)
        with torch.no_grad():
            want = model(**tokenizer()([prompt + t for t in texts], return_tensors="pt", padding=True)).embeddings
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
