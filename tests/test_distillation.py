"""Distillation: MarginMSE and in-batch KL against naive references, from batch columns and from a teacher
model, and the collator's teacher columns."""

from __future__ import annotations

import math

import pytest
import torch

from hfcontrast.collators import TextPairCollator
from hfcontrast.collators.checks import BadRowsError, check_rows
from hfcontrast.losses import in_batch_kl_loss, margin_mse_loss
from hfcontrast.objectives.distill import InBatchKL, MarginMSE
from tests.tiny import text_model, tokenizer


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_kl(student: torch.Tensor, teacher: torch.Tensor, ts: float, tt: float) -> float:
    total = 0.0
    for i in range(student.shape[0]):
        zs = sum(math.exp(float(v) / ts) for v in student[i])
        zt = sum(math.exp(float(v) / tt) for v in teacher[i])
        for j in range(student.shape[1]):
            p = math.exp(float(teacher[i, j]) / tt) / zt
            q = math.exp(float(student[i, j]) / ts) / zs
            total += p * math.log(p / q)
    return total / student.shape[0]


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.unsqueeze(1), b.unsqueeze(0), dim=-1)


def test_in_batch_kl_matches_naive_loop() -> None:
    s, t = randn(4, 6, seed=1), randn(4, 6, seed=2)
    got = in_batch_kl_loss(s, t, student_temperature=0.5, teacher_temperature=0.2).loss
    assert float(got) == pytest.approx(naive_kl(s, t, 0.5, 0.2), rel=1e-9)
    assert float(in_batch_kl_loss(t, t, student_temperature=0.2, teacher_temperature=0.2).loss) == pytest.approx(0, abs=1e-12)


def test_margin_mse_matches_formula_with_k_negatives() -> None:
    pos, neg, margin = randn(3, seed=1), randn(6, seed=2), randn(3, seed=3)
    got = margin_mse_loss(pos, neg, margin).loss
    want = sum(((pos[i] - neg[j * 3 + i]) - margin[i]) ** 2 for j in range(2) for i in range(3)) / 6
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_objectives_from_teacher_columns() -> None:
    a, p, n = randn(4, 8, seed=1), randn(4, 8, seed=2), randn(4, 8, seed=3)
    ta, tp, tn = randn(4, 5, seed=4), randn(4, 5, seed=5), randn(4, 5, seed=6)
    batch = {"teacher_anchor": ta, "teacher_positive": tp, "teacher_negative": tn}
    kl = InBatchKL(0.1, teacher_temperature=0.05, gather=False)({"anchor": a, "positive": p, "negative": n}, batch)
    want = naive_kl(cos(a, torch.cat([p, n])), cos(ta, torch.cat([tp, tn])), 0.1, 0.05)
    assert float(kl.loss) == pytest.approx(want, rel=1e-6)
    mse = MarginMSE()({"anchor": a, "positive": p, "negative": n}, batch)
    teacher_margin = (ta * tp).sum(-1) - (ta * tn).sum(-1)
    student_margin = (a * p).sum(-1) - (a * n).sum(-1)
    assert float(mse.loss) == pytest.approx(float(((student_margin - teacher_margin) ** 2).mean()), rel=1e-6)
    given = MarginMSE()({"anchor": a, "positive": p, "negative": n}, {"teacher_margin": torch.zeros(4)})
    assert float(given.loss) == pytest.approx(float((student_margin**2).mean()), rel=1e-6)


def test_teacher_on_the_fly_equals_precomputed_columns_and_is_not_state() -> None:
    teacher = text_model(pooler="mean", dropout=0.0)
    rows = [{"a": "a red car", "b": "a car that is red"}, {"a": "the sea", "b": "blue sea"}, {"a": "dogs", "b": "a dog"}]
    batch = TextPairCollator(tokenizer(), "a", "b")(rows)
    student = {"anchor": randn(3, 8, seed=1).float(), "positive": randn(3, 8, seed=2).float()}
    objective = InBatchKL(0.1, gather=False, teacher=teacher)
    assert not any(p.requires_grad for p in teacher.parameters()) and len(objective.state_dict()) == 0
    fly = objective(student, batch).loss
    with torch.no_grad():
        columns = {f"teacher_{v}": teacher(**batch[v], use_head=True).embeddings for v in ("anchor", "positive")}
    ahead = InBatchKL(0.1, gather=False)(student, {**batch, **columns}).loss
    torch.testing.assert_close(fly, ahead)


def test_collator_passes_teacher_columns_and_checks_them() -> None:
    rows = [{"q": "x", "p": "y", "n": "z", "teacher_q": [1.0, 0.0], "teacher_p": [0.0, 1.0], "teacher_n": [1.0, 1.0], "m": 0.5}]
    collator = TextPairCollator(tokenizer(), "q", "p", ("n",), teacher_embeddings=True, teacher_margin_column="m")
    batch = collator(rows * 2)
    assert batch["teacher_anchor"].shape == (2, 2) and batch["teacher_negative"].tolist()[0] == [1.0, 1.0]
    assert batch["teacher_margin"].tolist() == [0.5, 0.5]
    bad = [*rows, {**rows[0], "teacher_p": [float("nan"), 1.0]}]
    with pytest.raises(BadRowsError, match=r"row 1, column 'teacher_p'"):
        check_rows(bad, collator, source="t.jsonl")


def test_gradcache_equals_uncached_step_with_in_batch_kl() -> None:
    from tests.test_gradcache import assert_same, cached, text_batch, uncached

    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.1).train()
    teacher = text_model(pooler="mean", dropout=0.0)
    objective = InBatchKL(0.2, teacher_temperature=0.1, gather=False, teacher=teacher)
    batch = text_batch()
    assert_same(cached(model, objective, batch, chunk=5), uncached(model, objective, batch, chunk=5), 1e-5)
