"""The step's levers against the plain path: the merged forward, length buckets and per-view forwards give the
same embeddings, loss and gradients as one forward per view written out; GradCache chunked by a token budget
gives the same gradients as GradCache by rows and as the uncached step; the collator's host lengths plan the
same chunks as a read of the mask."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from hfcontrast.collators import TextPairCollator
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer.gradcache import gradcache_step
from hfcontrast.trainer.views import embed_views, plan_chunks, split_views, unsort_rows
from tests.test_gradcache import grads, reset, sentences
from tests.tiny import text_model, tokenizer


def batch_of(rows: int = 6) -> dict[str, Any]:
    collator = TextPairCollator(tokenizer(), "a", "p", ("n",), max_length=24)
    texts = [sentences(rows, seed) for seed in range(3)]
    texts[0] = [f"{t} and a much longer anchor with many words in it" if i % 2 else t for i, t in enumerate(texts[0])]
    return collator([{"a": a, "p": p, "n": n} for a, p, n in zip(*texts)])


def written_out(model: torch.nn.Module, views: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    """The reference: one forward per view on exactly the collator's tensors."""
    return {name: model(**view, use_head=True).embeddings for name, view in views.items()}


@pytest.mark.parametrize("forwards", ["merged", "length_buckets", "per_view"])
def test_view_forwards_equal_one_forward_per_view_in_loss_and_gradients(forwards: str) -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0)
    batch = batch_of()
    views, _ = split_views(batch)
    objective = SimCSE(0.05)

    def step(embed: Any) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        reset(model)
        embeddings = embed()
        loss = objective(embeddings, batch).loss
        loss.backward()
        return loss.detach(), {k: v.detach() for k, v in embeddings.items()}, grads(model)

    want = step(lambda: written_out(model, views))
    got = step(lambda: embed_views(model, views, batch["lengths"], forwards))
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-6)
    for name in want[1]:
        torch.testing.assert_close(got[1][name], want[1][name], rtol=1e-5, atol=1e-6, msg=name)
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], rtol=1e-4, atol=1e-6, msg=name)


def test_length_buckets_cut_each_forward_to_its_longest_row() -> None:
    batch = batch_of()
    views, _ = split_views(batch)
    seen: list[tuple[int, int]] = []
    model = text_model(pooler="mean", dropout=0.0)

    def spy(**inputs: Tensor) -> Any:
        seen.append(tuple(inputs["input_ids"].shape))
        return model(**inputs)

    embed_views(spy, views, batch["lengths"], "length_buckets")  # type: ignore[arg-type]
    lengths = sorted((n for view in ("anchor", "positive", "negative") for n in batch["lengths"].views[view]), reverse=True)
    assert seen == [(6, max(lengths[0:6])), (6, max(lengths[6:12])), (6, max(lengths[12:18]))]
    embed_views(spy, views, batch["lengths"], "merged")
    assert seen[-1] == (18, max(lengths))


def test_host_lengths_plan_the_same_chunks_as_a_read_of_the_mask() -> None:
    batch = batch_of()
    views, _ = split_views(batch)
    from hfcontrast.trainer.views import group_lengths, group_views

    (names, inputs, _), = group_views(views)
    known = plan_chunks(inputs, 4, group_lengths(names, batch["lengths"]))
    read = plan_chunks(inputs, 4)
    assert known[0] is not None and read[0] is not None and torch.equal(known[0], read[0])
    for a, b in zip(known[1], read[1], strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = torch.arange(18.0)
    assert torch.equal(unsort_rows(rows[known[0]], known[0]), rows)


@pytest.mark.parametrize("tokens", [40, 120])
def test_gradcache_by_tokens_equals_by_rows_and_the_uncached_step(tokens: int) -> None:
    """float64, no dropout: the token budget changes the chunks, never the gradient."""
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0).double()
    objective = SimCSE(0.05)
    batch = batch_of(8)
    views, _ = split_views(batch)

    reset(model)
    objective(written_out(model, views), batch).loss.backward()
    plain = grads(model)
    results = []
    for rows, budget in ((3, None), (10_000, tokens)):
        reset(model)
        gradcache_step(model, objective, views, batch, chunk_size=rows, tokens=budget, lengths=batch["lengths"])
        results.append(grads(model))
    for got in results:
        assert got.keys() == plain.keys()
        for name, value in plain.items():
            torch.testing.assert_close(got[name], value, rtol=1e-9, atol=1e-12, msg=name)
