"""Matryoshka (Kusupati et al. 2022): the loss is the weighted sum of the engine's loss on each prefix,
GradCache is unchanged by it, and the exported config records it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hfcontrast.losses import matryoshka_loss
from hfcontrast.objectives import MatryoshkaConfig, MoCo, SimCSE
from tests.test_gradcache import assert_same, cached, text_batch, uncached
from tests.tiny import text_model

DIMS, WEIGHTS = (32, 16, 8), (1.0, 0.5, 2.0)


def naive_info_nce(q: torch.Tensor, c: torch.Tensor, tau: float) -> torch.Tensor:
    """-log softmax of each row's own column (positive i at column i), cosine, by a loop."""
    losses = []
    for i in range(q.shape[0]):
        sims = torch.stack([F.cosine_similarity(q[i], c[j], dim=0) for j in range(c.shape[0])]) / tau
        losses.append(-(sims[i] - torch.logsumexp(sims, 0)))
    return torch.stack(losses).mean()


def test_loss_is_weighted_sum_over_prefixes_of_naive_loss() -> None:
    g = torch.Generator().manual_seed(0)
    anchor, positive = torch.randn(6, 32, generator=g, dtype=torch.float64), torch.randn(6, 32, generator=g, dtype=torch.float64)
    objective = SimCSE(0.1, gather=False, matryoshka=MatryoshkaConfig(DIMS, WEIGHTS))
    got = objective({"anchor": anchor, "positive": positive}, {}).loss
    want = sum(w * naive_info_nce(anchor[:, :d], positive[:, :d], 0.1) for d, w in zip(DIMS, WEIGHTS))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    plain = SimCSE(0.1, gather=False)({"anchor": anchor, "positive": positive}, {}).loss
    assert abs(float(got) - float(plain)) > 1e-3  # the option does something


def test_pure_function_keeps_widest_stats_and_per_dim_losses() -> None:
    calls = []

    def loss(r: torch.Tensor, c: torch.Tensor):  # type: ignore[no-untyped-def]
        from hfcontrast.losses import LossOutput

        calls.append(r.shape[1])
        return LossOutput(r.sum() * 0 + r.shape[1], stats={"top1": torch.tensor(float(r.shape[1]))})

    out = matryoshka_loss(loss, torch.zeros(2, 8), torch.zeros(2, 8), (8, 4), (1.0, 3.0))
    assert calls == [8, 4] and float(out.loss) == 8 + 3 * 4 and float(out.stats["top1"]) == 8
    assert set(out.stats) == {"top1", "loss_dim_8", "loss_dim_4"}


@pytest.mark.parametrize(
    ("dims", "weights", "message"),
    [((8, 16), None, "strictly decreasing"), ((16, 8), (1.0,), "one weight"), ((0,), None, "positive")],
)
def test_bad_settings_are_refused(dims: tuple[int, ...], weights: tuple[float, ...] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MatryoshkaConfig(dims, weights)


def test_wider_than_embedding_is_refused() -> None:
    objective = SimCSE(0.1, gather=False, matryoshka=MatryoshkaConfig((64, 8)))
    with pytest.raises(ValueError, match="wider than the embedding"):
        objective({"anchor": torch.randn(2, 32), "positive": torch.randn(2, 32)}, {})


def test_gradcache_equals_uncached_step_with_matryoshka() -> None:
    """Supervised SimCSE with hard negatives and a queue, dropout on, Matryoshka over 3 widths, fp32."""
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.1).train()
    config = MatryoshkaConfig(DIMS, WEIGHTS)
    objective = SimCSE(0.05, hard_negative_weight=0.3, queue_size=6, encoder=model, matryoshka=config).train()
    assert objective.keys is not None
    objective.keys.queue.enqueue(torch.randn(6, model.config.train_embedding_dim))
    batch = text_batch()
    assert_same(cached(model, objective, batch, chunk=5), uncached(model, objective, batch, chunk=5), 1e-5)


def test_moco_queue_with_matryoshka_truncates_queued_keys_too() -> None:
    model = text_model(pooler="mean", dropout=0.0)
    objective = MoCo(model, version="v2", queue_size=8, temperature=0.2, matryoshka=MatryoshkaConfig((32, 4)))
    assert objective.keys is not None
    objective.keys.queue.enqueue(torch.randn(8, 32))
    q, k = torch.randn(4, 32), torch.randn(4, 32)
    out = objective.contrast(q, torch.cat([k, objective.keys.negatives()]), objective.roles(torch.arange(4), objective.examples({}, 4, q.device), objective.examples({}, 4, q.device)))
    assert set(out.stats) >= {"loss_dim_32", "loss_dim_4"}


def test_exported_truncate_dim_cuts_and_renormalises() -> None:
    model = text_model(pooler="mean", dropout=0.0, normalize=True, matryoshka_dims=[32, 8], truncate_dim=8).eval()
    inputs = {"input_ids": torch.tensor([[101, 2000, 2001, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    exported = model(**inputs).embeddings
    training = model(**inputs, use_head=True).embeddings
    assert exported.shape == (1, 8) and training.shape == (1, 32)
    torch.testing.assert_close(exported, F.normalize(training[:, :8], dim=-1))  # the prefix, re-normalised
    assert model.config.embedding_dim == 8 and model.config.to_dict()["matryoshka_dims"] == [32, 8]
