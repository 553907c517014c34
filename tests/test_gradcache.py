"""GradCache equals the uncached step: loss and every gradient, for text, image and image-text.

With dropout, a chunked forward draws other masks than a full-batch forward, so the reference is the
uncached step of the same model run in the same chunks (:class:`ChunkedForward`, written here
independently of hfcontrast.trainer.gradcache); without dropout or BatchNorm it is the plain
full-batch step. Trainer integration: tests/test_gradcache_trainer.py; distributed parity:
tests/test_gradcache_distributed.py.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from transformers import ViTConfig

from hfcontrast import ContrastiveEncoderOutput, ContrastiveVisionConfig, ContrastiveVisionModel
from hfcontrast.collators import TextPairCollator
from hfcontrast.objectives import CLIP, MoCo, SimCLR, SimCSE
from hfcontrast.objectives.base import ContrastiveObjective
from hfcontrast.trainer.gradcache import RngState, gradcache_step
from hfcontrast.trainer.views import (
    chunk_rows,
    group_views,
    plan_chunks,
    split_views,
    trim_padding,
    unsort_rows,
)
from tests.test_objectives_clip import tiny_dual
from tests.tiny import text_model, tokenizer

WORDS = ["red", "blue", "green", "cat", "dog", "bird", "runs", "sleeps", "eats", "big", "small", "old", "new", "fast", "slow", "tree", "car", "road", "sky", "sea"]


def sentences(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (n,), generator=g).tolist()  # ragged: chunks get trimmed
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (k,), generator=g).tolist()) for k in lengths]


def text_batch(n: int = 8) -> dict[str, Any]:
    rows = [{"sent0": a, "sent1": b, "hard_neg": c} for a, b, c in zip(*(sentences(n, s) for s in range(3)))]
    return TextPairCollator.from_column_names(tokenizer(), ["sent0", "sent1", "hard_neg"], max_length=16)(rows)


def pixels(n: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def tiny_vit(projection: str = "linear") -> ContrastiveVisionModel:
    torch.manual_seed(0)
    backbone = ViTConfig(image_size=16, patch_size=8, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=24)
    config = ContrastiveVisionConfig(backbone_config=backbone, projection=projection, projection_dim=8,
                                     projection_hidden_dim=16)
    return ContrastiveVisionModel(config).double()


class ChunkedForward(nn.Module):
    """Reference encoder: ``model`` run on chunks of rows in one graph; token rows longest-first (each
    chunk cut to its longest row), outputs put back in batch order."""

    def __init__(self, model: nn.Module, chunk: int) -> None:
        super().__init__()
        self.model, self.chunk = model, chunk

    def forward(self, use_head: bool = True, **inputs: Tensor) -> ContrastiveEncoderOutput:
        rows = next(iter(inputs.values())).shape[0]
        order = list(range(rows))
        mask = inputs.get("attention_mask")
        if mask is not None and rows > self.chunk:
            last = [max(j for j in range(mask.shape[1]) if mask[i, j]) for i in range(rows)]
            order = sorted(order, key=lambda i: -last[i])
        outputs = []
        for start in range(0, rows, self.chunk):
            index = torch.tensor(order[start : start + self.chunk])
            part = {key: value[index] for key, value in inputs.items()}
            if "attention_mask" in part:
                length = int(part["attention_mask"].sum(0).nonzero().max()) + 1
                part = {k: v[:, :length] if v.dim() == 2 else v for k, v in part.items()}
            outputs.append(self.model(**part, use_head=use_head).embeddings)
        stacked = torch.cat(outputs)
        return ContrastiveEncoderOutput(embeddings=torch.stack([stacked[order.index(i)] for i in range(rows)]))


def one_forward_per_group(encoder: nn.Module, views: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Reference embedding: each group of views concatenated and given to ``encoder`` in one call."""
    out: dict[str, Tensor] = {}
    for names, batch, sizes in group_views(views):
        out.update(zip(names, torch.split(encoder(**batch, use_head=True).embeddings, sizes)))
    return out


def online(objective: ContrastiveObjective, batch: Mapping[str, Any]) -> dict[str, dict[str, Tensor]]:
    views, _ = split_views(batch)
    names = objective.online_views
    return views if names is None else {name: views[name] for name in names if name in views}


def grads(*modules: nn.Module) -> dict[str, Tensor]:
    return {f"{i}.{n}": p.grad.clone() for i, m in enumerate(modules) for n, p in m.named_parameters()
            if p.grad is not None}


def reset(*modules: nn.Module) -> None:
    for module in modules:
        module.zero_grad(set_to_none=True)


def uncached(model: nn.Module, objective: ContrastiveObjective, batch: dict[str, Any], chunk: int | None,
             scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    reset(model, objective)
    torch.manual_seed(123)
    encoder = model if chunk is None else ChunkedForward(model, chunk)
    loss = objective(one_forward_per_group(encoder, online(objective, batch)), batch).loss
    (loss * scale).backward()
    return loss.detach(), grads(model, objective)


def cached(model: nn.Module, objective: ContrastiveObjective, batch: dict[str, Any], chunk: int,
           scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    reset(model, objective)
    torch.manual_seed(123)
    out = gradcache_step(model, objective, online(objective, batch), batch, chunk_size=chunk, loss_scale=scale)
    return out.loss, grads(model, objective)


def assert_same(got: tuple[Tensor, dict[str, Tensor]], want: tuple[Tensor, dict[str, Tensor]], tol: float) -> None:
    torch.testing.assert_close(got[0], want[0], rtol=tol, atol=tol)
    assert got[1].keys() == want[1].keys() and len(want[1]) > 0
    for name, value in want[1].items():
        torch.testing.assert_close(got[1][name], value, rtol=tol, atol=tol, msg=name)


# ----------------------------------------------------------------------------- text
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_text_simcse_with_dropout_equals_uncached_step(dtype: torch.dtype, tol: float) -> None:
    """Supervised SimCSE (hard negatives, symmetric, a filled queue), dropout 0.1, 3 views in one group
    of 24 rows, chunks of 5 (the last one short)."""
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.1).to(dtype).train()
    objective = SimCSE(0.05, hard_negative_weight=0.3, symmetric=True, queue_size=6, encoder=model).train()
    assert objective.keys is not None
    objective.keys.queue.enqueue(torch.randn(6, model.config.train_embedding_dim))
    batch = text_batch()
    reference = uncached(model, objective, batch, chunk=5, scale=0.5)
    assert_same(cached(model, objective, batch, chunk=5, scale=0.5), reference, tol)
    # Dropout really is on: another seed gives another loss, so the replay had to restore the RNG.
    reset(model, objective)
    torch.manual_seed(7)
    other = objective(one_forward_per_group(ChunkedForward(model, 5), online(objective, batch)), batch).loss
    assert abs(float(other.detach()) - float(reference[0])) > 1e-4


def test_text_without_rng_replay_would_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.1).double().train()
    objective = SimCSE(0.05)
    batch = text_batch()
    reference = uncached(model, objective, batch, chunk=4)
    monkeypatch.setattr(RngState, "replay", lambda self: contextlib.nullcontext())
    broken = cached(model, objective, batch, chunk=4)
    assert torch.allclose(broken[0], reference[0])  # stage 1 is the same forward...
    assert any(not torch.allclose(broken[1][k], v) for k, v in reference[1].items())  # ...the replay is not


def test_text_without_dropout_equals_full_batch_step() -> None:
    torch.manual_seed(0)
    model = text_model(pooler="cls", dropout=0.0).double().train()
    objective = SimCSE(0.05, hard_negative_weight=0.5)
    batch = text_batch()
    assert_same(cached(model, objective, batch, chunk=3), uncached(model, objective, batch, chunk=None), 1e-10)


# ----------------------------------------------------------------------------- image
def test_image_simclr_vit_equals_full_batch_step() -> None:
    model = tiny_vit("linear").train()
    objective = SimCLR(0.2)
    batch = {"query": {"pixel_values": pixels(6, 1)}, "key": {"pixel_values": pixels(6, 2)}}
    assert_same(cached(model, objective, batch, chunk=4), uncached(model, objective, batch, chunk=None), 1e-10)


def test_image_moco_v2_with_queue_equals_full_batch_step() -> None:
    model = tiny_vit("linear").train()
    objective = MoCo(model, version="v2", queue_size=16, temperature=0.2).double().train()
    assert objective.keys is not None
    objective.keys.queue.enqueue(torch.randn(10, 8))
    batch = {"query": {"pixel_values": pixels(6, 1)}, "key": {"pixel_values": pixels(6, 2)}}
    want = uncached(model, objective, batch, chunk=None)
    assert_same(cached(model, objective, batch, chunk=2), want, 1e-10)


def test_moco_v3_predictor_gradients_match() -> None:
    """The objective's own parameters (the v3 predictor, with BatchNorm on the full batch) get stage 2's
    gradients; the momentum encoder runs there, unaffected by chunking."""
    model = tiny_vit("linear").train()
    objective = MoCo(model, version="v3", predictor_hidden_dim=16, temperature=0.5).double().train()
    batch = {"query": {"pixel_values": pixels(6, 3)}, "key": {"pixel_values": pixels(6, 4)}}
    want = uncached(model, objective, batch, chunk=None)
    assert any(k.startswith("1.predictor") for k in want[1])
    assert_same(cached(model, objective, batch, chunk=4), want, 1e-10)


def test_batchnorm_head_equals_same_chunks_and_updates_running_stats_once() -> None:
    """SimCLR's MLP head has BatchNorm: each chunk is normalised with its own statistics, so the step
    equals the uncached step in the same chunks, and running statistics move once per chunk."""
    model = tiny_vit("mlp").train()
    twin = copy.deepcopy(model)
    objective = SimCLR(0.2)
    batch = {"query": {"pixel_values": pixels(6, 1)}, "key": {"pixel_values": pixels(6, 2)}}
    want = uncached(twin, objective, batch, chunk=4)
    assert_same(cached(model, objective, batch, chunk=4), want, 1e-10)
    for (name, mine), (_, theirs) in zip(model.named_buffers(), twin.named_buffers()):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12, msg=name)
    assert int(dict(model.named_buffers())["projection.layers.1.num_batches_tracked"]) == 3


# ----------------------------------------------------------------------------- image-text
def test_image_text_clip_with_queue_equals_full_batch_step() -> None:
    """Two view groups (two towers), the learnable temperature used outside forward, queued negatives."""
    model = tiny_dual(0).double().train()
    objective = CLIP(model, queue_size=8).train()
    assert objective.image_queue is not None and objective.text_queue is not None
    objective.image_queue.queue.enqueue(torch.randn(5, 16))
    objective.text_queue.queue.enqueue(torch.randn(5, 16))
    text = tokenizer()(sentences(6, 9), padding=True, return_tensors="pt")
    batch = {"image": {"pixel_values": pixels(6, 5)}, "text": dict(text)}
    want = uncached(model, objective, batch, chunk=None)
    assert "0.logit_scale" in want[1]
    assert_same(cached(model, objective, batch, chunk=4), want, 1e-10)


# ----------------------------------------------------------------------------- helpers
def test_chunk_rows_trims_padding_only_where_every_row_is_padding() -> None:
    inputs = {"input_ids": torch.tensor([[5, 6, 0, 0], [5, 0, 0, 0], [5, 6, 7, 0]]),
              "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])}
    first, second = chunk_rows(inputs, 2)
    assert first["input_ids"].tolist() == [[5, 6], [5, 0]] and second["attention_mask"].tolist() == [[1, 1, 1]]
    pixels_only = {"pixel_values": torch.zeros(3, 2)}
    assert trim_padding(pixels_only)["pixel_values"].shape == (3, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_rows(inputs, 0)


def test_plan_chunks_sorts_token_rows_longest_first_and_unsorts() -> None:
    mask = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]])
    order, chunks = plan_chunks({"attention_mask": mask, "input_ids": mask * 7}, 2)
    assert order is not None and order.tolist() == [1, 3, 2, 0, 4]  # stable among equal lengths
    assert [c["input_ids"].shape[1] for c in chunks] == [3, 2, 1]
    rows = torch.arange(5.0)[order]
    assert unsort_rows(rows, order).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert plan_chunks({"attention_mask": mask}, 5)[0] is None  # one chunk: nothing to gain
    assert plan_chunks({"pixel_values": torch.zeros(5, 3)}, 2)[0] is None


def test_rng_state_replays_and_restores() -> None:
    state = RngState.capture(torch.device("cpu"))
    first = torch.rand(3)
    after = torch.get_rng_state()
    with state.replay():
        assert torch.equal(torch.rand(3), first)
    assert torch.equal(torch.get_rng_state(), after)


@contextlib.contextmanager
def _counting(calls: list[str]) -> Iterator[None]:
    calls.append("enter")
    yield


def test_backward_and_context_hooks_are_used() -> None:
    """The trainer passes accelerator.backward (AMP scaling) and its autocast context."""
    model = tiny_vit("linear").train()
    objective = SimCLR(0.2)
    batch = {"query": {"pixel_values": pixels(4, 1)}, "key": {"pixel_values": pixels(4, 2)}}
    seen: list[Tensor] = []
    calls: list[str] = []

    def backward(loss: Tensor) -> None:
        seen.append(loss.detach())
        loss.backward()

    out = gradcache_step(model, objective, online(objective, batch), batch, chunk_size=3, loss_scale=0.25,
                         backward=backward, context=lambda: _counting(calls))
    assert torch.allclose(seen[0], out.loss * 0.25)
    assert len(calls) == 3 + 1 + 3  # 8 rows in chunks of 3: stage 1, the objective, the replays
