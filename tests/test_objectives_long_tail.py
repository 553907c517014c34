"""The KCL and BCL objectives: their loss is the pure loss's; BCL's class centres follow their update rule; both
resume exactly from their saved state. The 2-process parity is in tests/test_cluster_distributed.py."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from hfcontrast.losses.long_tail import bcl_loss, kcl_loss
from hfcontrast.objectives import BCL, KCL

LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


def _batch(step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    g = torch.Generator().manual_seed(step)
    z1, z2 = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    return {"query": z1, "key": z2}, {"labels": LABELS}


def _run(objective: Any, steps: range) -> list[float]:
    losses = []
    for step in steps:
        embeddings, batch = _batch(step)
        losses.append(float(objective(embeddings, batch).loss))
        objective.after_optimizer_step(None, step + 1, 10)
    return losses


def test_kcl_is_its_loss_with_draws_seeded_by_the_step() -> None:
    objective = KCL(k=2, temperature=0.2, seed=5).double()
    embeddings, batch = _batch(0)
    g = torch.Generator().manual_seed(5 * 1_000_003 + 0)
    expected = kcl_loss(torch.stack([embeddings["query"], embeddings["key"]], 1), LABELS, 2, torch.rand(12, 12, generator=g), 0.2)
    torch.testing.assert_close(objective(embeddings, batch).loss, expected, rtol=0, atol=0)
    first = float(objective(embeddings, batch).loss)
    objective.after_optimizer_step(None, 1, 10)
    assert float(objective(embeddings, batch).loss) != first  # a new step, new draws


def test_bcl_centres_follow_their_update_rule() -> None:
    objective = BCL(4, temperature=0.2, centre_momentum=0.5, embedding_dim=5).double()
    objective.train()
    embeddings, batch = _batch(0)
    loss = objective(embeddings, batch).loss  # no centre seen yet: no prototype in the loss
    features = torch.stack([embeddings["query"], embeddings["key"]], 1)
    torch.testing.assert_close(loss, bcl_loss(features, LABELS, 4, None, None, 0.2))
    objective.after_optimizer_step(None, 1, 10)
    rows, labels = F.normalize(torch.cat([embeddings["query"], embeddings["key"]]), dim=-1), LABELS.repeat(2)
    first = torch.stack([F.normalize(rows[labels == c].mean(0), dim=0) for c in range(3)])
    torch.testing.assert_close(objective.centres[:3], first)
    assert objective.seen.tolist() == [True, True, True, False] and not objective.centres[3].any()
    embeddings, batch = _batch(1)
    loss = objective(embeddings, batch).loss
    torch.testing.assert_close(loss, bcl_loss(torch.stack([embeddings["query"], embeddings["key"]], 1), LABELS, 4,
                                              objective.centres, objective.seen, 0.2))  # fmt: skip
    objective.after_optimizer_step(None, 2, 10)
    rows = F.normalize(torch.cat([embeddings["query"], embeddings["key"]]), dim=-1)
    second = torch.stack([F.normalize(0.5 * first[c] + 0.5 * rows[labels == c].mean(0), dim=0) for c in range(3)])
    torch.testing.assert_close(objective.centres[:3], second)


def test_bcl_leaves_its_centres_alone_outside_training() -> None:
    objective = BCL(3, embedding_dim=5).double()
    objective.eval()
    objective(*_batch(0))
    objective.after_optimizer_step(None, 1, 10)
    assert not objective.seen.any()


@pytest.mark.parametrize("make", [lambda: KCL(k=2, temperature=0.2, seed=1).double(),
                                  lambda: BCL(3, temperature=0.2, embedding_dim=5).double()])  # fmt: skip
def test_a_resumed_objective_continues_as_the_uninterrupted_one(make: Any) -> None:
    straight = make()
    expected = _run(straight, range(6))
    first = make()
    _run(first, range(3))
    state = {k: v.clone() for k, v in first.state_dict().items()}  # what a checkpoint holds
    resumed = make()
    resumed.load_state_dict(state)
    assert _run(resumed, range(3, 6)) == expected[3:]


def test_kcl_and_bcl_need_labels() -> None:
    embeddings, _ = _batch(0)
    with pytest.raises(KeyError, match="label_column"):
        KCL()(embeddings, {})
    with pytest.raises(ValueError, match="num_classes"):
        BCL(1, embedding_dim=5)
