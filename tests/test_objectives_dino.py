"""DINO against the paper's pseudo-code written out: the teacher (EMA backbone + EMA head) scores the global
crops only, the student every crop; the centre follows the teacher outputs' mean; the teacher temperature
warms up; centre, teacher and step count are objective state."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hfcontrast.collators import TextPairCollator
from hfcontrast.objectives import DINO
from tests.tiny import text_model, tokenizer

TEXTS = ["a red car", "the blue sea", "dogs run fast", "an old tree", "green grass grows", "birds sing"]


def views() -> dict[str, dict[str, torch.Tensor]]:
    tok = TextPairCollator(tokenizer(), "a", "b", max_length=16)
    first = tok([{"a": t, "b": t[::-1]} for t in TEXTS])
    local = tok([{"a": t.upper(), "b": t} for t in TEXTS])
    return {"query": first["anchor"], "key": first["positive"], "local_0": local["anchor"]}


def test_loss_matches_pseudo_code_and_teacher_sees_global_crops_only() -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0).eval()
    objective = DINO(model, out_dim=16, hidden_dim=32, bottleneck_dim=8, teacher_temperature=0.05).eval()
    with torch.no_grad():
        objective.center.copy_(torch.randn(16) * 0.1)
    batch = views()
    seen: list[int] = []
    objective.teacher_encoder.encoder.register_forward_pre_hook(lambda m, a, k: seen.append(k["input_ids"].shape[0]), with_kwargs=True)
    embeddings = {n: model(**v, use_head=True).embeddings for n, v in batch.items()}
    got = objective(embeddings, batch).loss
    assert sum(seen) == 2 * len(TEXTS)  # query and key, never local_0
    head, teacher, teacher_head = copy.deepcopy(objective.head), copy.deepcopy(model), copy.deepcopy(objective.teacher_head)
    total, pairs = 0.0, 0
    with torch.no_grad():
        for i in ("query", "key"):
            t = F.softmax((teacher_head(teacher(**batch[i], use_head=True).embeddings) - objective.center) / 0.05, dim=-1)
            for v in ("query", "key", "local_0"):
                if v != i:
                    s = F.log_softmax(head(embeddings[v]) / 0.1, dim=-1)
                    total += float(-(t * s).sum(-1).mean())
                    pairs += 1
    assert float(got.detach()) == pytest.approx(total / pairs, rel=1e-5)


def test_centre_teacher_and_temperature_after_a_step() -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0)
    objective = DINO(model, out_dim=16, hidden_dim=32, bottleneck_dim=8, center_momentum=0.8, momentum=0.5,
                     final_momentum=None, teacher_temperature=0.07, warmup_teacher_temperature=0.03, warmup_steps=4).train()
    assert [objective.teacher_temperature_at(s) for s in (0, 2, 4, 9)] == pytest.approx([0.03, 0.05, 0.07, 0.07])
    batch = views()
    embeddings = {n: model(**v, use_head=True).embeddings for n, v in batch.items()}
    with torch.no_grad():
        outputs = torch.cat([objective.teacher_head(t) for t in objective.teacher_encoder.embed_views(batch, ("query", "key"))])
    objective(embeddings, batch).loss.backward()
    with torch.no_grad():
        for p in objective.head.parameters():
            p.add_(0.1)
    teacher_head_before = copy.deepcopy(objective.teacher_head)
    objective.after_optimizer_step(model, 1, 10)
    torch.testing.assert_close(objective.center, 0.2 * outputs.mean(0))  # 0.8 * 0 + 0.2 * mean
    for (name, t), s, old in zip(objective.teacher_head.named_parameters(), objective.head.parameters(), teacher_head_before.parameters()):
        torch.testing.assert_close(t, 0.5 * old + 0.5 * s, msg=name)
    assert int(objective.steps_done) == 1
    state = objective.state_dict()
    assert "center" in state and "steps_done" in state and any(k.startswith("teacher_head.") for k in state)
    assert any(k.startswith("teacher_encoder.") for k in state)
