"""The supervised hybrid: SupCon (Khosla et al. 2020, L_out, written out) and a classifier's cross-entropy (written
out), mixed by the schedule's weight; the weight follows the optimizer steps and comes back with the state."""

from __future__ import annotations

import math

import pytest
import torch

from hfcontrast.objectives import SupervisedHybrid
from hfcontrast.objectives.hybrid import ce_weight
from tests.test_losses_negatives import logit_rows, naive_general, rand


def naive_cross_entropy(logits: torch.Tensor, targets: list[int]) -> float:
    rows = logits.tolist()
    return sum(math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(rows, targets)) / len(rows)


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_the_loss_is_the_weighted_supcon_and_cross_entropy(weight: float) -> None:
    query, key, labels = rand(6, 4, seed=1), rand(6, 4, seed=2), [0, 1, 0, 2, 1, 0]
    hybrid = SupervisedHybrid(3, temperature=0.2, schedule="constant", weight=weight, embedding_dim=4).double()
    out = hybrid({"query": query, "key": key}, {"labels": torch.tensor(labels)})
    z, both = torch.cat([query, key]), labels + labels
    pos = [{j for j in range(12) if j != i and both[j] == both[i]} for i in range(12)]
    neg = [{j for j in range(12) if both[j] != both[i]} for i in range(12)]
    supcon = naive_general(logit_rows(z, z, 0.2), pos, neg)
    logits = z @ hybrid.classifier.weight.detach().T + hybrid.classifier.bias.detach()
    expected = (1 - weight) * supcon + weight * naive_cross_entropy(logits, both)
    assert float(out.loss) == pytest.approx(expected, rel=1e-12)
    assert float(out.stats["supcon"]) == pytest.approx(supcon, rel=1e-12)


def test_the_schedule_moves_the_weight_to_the_classifier_and_resumes() -> None:
    assert [ce_weight(p, "linear") for p in (0.0, 0.25, 1.0)] == [0.0, 0.25, 1.0]
    assert [ce_weight(p, "cosine") for p in (0.0, 0.5, 1.0)] == pytest.approx([0.0, 0.5, 1.0])
    hybrid = SupervisedHybrid(3, schedule="cosine", embedding_dim=4)
    hybrid.after_optimizer_step(torch.nn.Identity(), 25, 100)
    assert float(hybrid.ce_weight) == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    resumed = SupervisedHybrid(3, schedule="cosine", embedding_dim=4)
    resumed.load_state_dict(hybrid.state_dict())
    query, key = rand(4, 4, seed=3).float(), rand(4, 4, seed=4).float()
    batch = {"labels": torch.tensor([0, 1, 2, 0])}
    assert float(resumed({"query": query, "key": key}, batch).stats["ce_weight"]) == pytest.approx(float(hybrid.ce_weight))


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="schedule must be one of"):
        SupervisedHybrid(3, schedule="step")
    with pytest.raises(ValueError, match="num_classes"):
        SupervisedHybrid(1)
