"""Scored pairs: CoSENT, AnglE and cosine MSE against their formulas written out in float64, the collator's
score column and its row checks, the objective in the trainer (GradCache equals the plain step), and the
recipe's ``--demo sts`` on a tiny model."""

from __future__ import annotations

import cmath
import json
import math
from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as F

from hfcontrast.collators import TextPairCollator
from hfcontrast.collators.checks import BadRowsError, check_rows
from hfcontrast.demo import STSB_TRAIN, data_file
from hfcontrast.demo.text import load_text_dataset
from hfcontrast.losses import (
    angle_loss,
    angle_pair_similarity,
    cosent_loss,
    cosine_mse_loss,
    ranked_pairs_loss,
)
from hfcontrast.objectives import MatryoshkaConfig, ScoredPairs
from tests.tiny import bert_config, one_sgd_step_update, tokenizer


def _pairs(n: int = 9, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, dim, generator=g, dtype=torch.float64)
    v = u + 0.8 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    scores = torch.randint(0, 6, (n,), generator=g).double()  # ties included
    return u, v, scores


def _naive_ranking(similarities: list[float], scores: list[float], scale: float) -> float:
    """``log(1 + sum_{y_k > y_l} exp(scale (s_l - s_k)))``, pair of pairs by pair of pairs."""
    total = 1.0
    for k, (s_k, y_k) in enumerate(zip(similarities, scores)):
        for l, (s_l, y_l) in enumerate(zip(similarities, scores)):  # noqa: E741
            if k != l and y_k > y_l:
                total += math.exp(scale * (s_l - s_k))
    return math.log(total)


def _naive_cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _naive_angle(a: list[float], b: list[float]) -> float:
    """AnglE's angle score: the halves as complex numbers ``z = re + i im``, ``w``; the quotient ``z / w``'s
    parts ``z_j conj(w_j) / |w|^2``, rescaled by ``|w| / |z|``, summed real and imaginary, absolute value."""
    half = len(a) // 2
    z = [complex(a[j], a[half + j]) for j in range(half)]
    w = [complex(b[j], b[half + j]) for j in range(half)]
    norm_z = math.sqrt(sum(abs(x) ** 2 for x in z))
    norm_w = math.sqrt(sum(abs(x) ** 2 for x in w))
    parts = [zj * wj.conjugate() / norm_w**2 * (norm_w / norm_z) for zj, wj in zip(z, w)]
    assert all(cmath.isfinite(p) for p in parts)
    return abs(sum(p.real for p in parts) + sum(p.imag for p in parts))


@pytest.mark.parametrize("scale", [20.0, 1.0])
def test_cosent_and_angle_equal_their_formulas(scale: float) -> None:
    u, v, scores = _pairs()
    rows_u, rows_v, gold = u.tolist(), v.tolist(), scores.tolist()
    cosines = [_naive_cosine(a, b) for a, b in zip(rows_u, rows_v)]
    angles = [_naive_angle(a, b) for a, b in zip(rows_u, rows_v)]
    torch.testing.assert_close(angle_pair_similarity(u, v), torch.tensor(angles, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    cosent = cosent_loss(u, v, scores, scale).loss
    angle = angle_loss(u, v, scores, scale).loss
    assert cosent.dtype == torch.float64
    assert float(cosent) == pytest.approx(_naive_ranking(cosines, gold, scale), rel=1e-12)
    assert float(angle) == pytest.approx(_naive_ranking(angles, gold, scale), rel=1e-12)
    mse = cosine_mse_loss(u, v, scores / 5).loss
    assert float(mse) == pytest.approx(sum((c - y / 5) ** 2 for c, y in zip(cosines, gold)) / len(gold), rel=1e-12)


def test_cosent_gradient_matches_autograd_of_the_formula() -> None:
    """The gradient of the vectorised loss equals the gradient of the double loop (float64)."""
    u, v, scores = _pairs(6, 4, seed=1)
    u.requires_grad_(True)
    cosent_loss(u, v, scores).loss.backward()
    expected_u = u.detach().clone().requires_grad_(True)
    cos = F.cosine_similarity(expected_u, v, dim=-1)
    terms = [torch.zeros((), dtype=torch.float64)]
    for k in range(6):
        for l in range(6):  # noqa: E741
            if scores[k] > scores[l]:
                terms.append(20.0 * (cos[l] - cos[k]))
    torch.logsumexp(torch.stack(terms), 0).backward()
    torch.testing.assert_close(u.grad, expected_u.grad, rtol=1e-12, atol=1e-12)


def test_ranking_ignores_ties_and_order_accuracy() -> None:
    """Only strictly ordered pairs of pairs count: equal scores add nothing; a perfect order has accuracy 1."""
    predicted = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    assert float(ranked_pairs_loss(predicted, torch.tensor([2.0, 2.0, 2.0])).loss) == 0.0  # log(1 + 0)
    out = ranked_pairs_loss(predicted, torch.tensor([3.0, 2.0, 1.0]))
    assert float(out.stats["pair_order_accuracy"]) == 1.0
    assert float(ranked_pairs_loss(predicted, torch.tensor([1.0, 2.0, 3.0])).stats["pair_order_accuracy"]) == 0.0


def test_clear_errors() -> None:
    u, v, scores = _pairs(4, 6)
    with pytest.raises(ValueError, match="odd"):
        angle_loss(u[:, :5], v[:, :5], scores)
    with pytest.raises(ValueError, match="one score per pair"):
        cosent_loss(u, v, scores[:3])
    with pytest.raises(ValueError, match=r"ScoredPairs\.loss must be one of"):
        ScoredPairs("cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cosine_weight"):
        ScoredPairs("cosent", cosine_weight=1.0)
    with pytest.raises(ValueError, match=r"batch\['scores'\]"):
        ScoredPairs()({"anchor": u.float(), "positive": v.float()}, {})


def test_collator_scores_and_row_checks(tmp_path: Path) -> None:
    collator = TextPairCollator(tokenizer(), "s1", "s2", score_column="score", score_scale=5, max_length=8)
    batch = collator([{"s1": "a cat", "s2": "a dog", "score": 4}, {"s1": "red", "s2": "blue", "score": 0.5}])
    torch.testing.assert_close(batch["scores"], torch.tensor([0.8, 0.1]))
    assert set(batch) >= {"anchor", "positive", "scores"}
    bad = datasets.Dataset.from_dict(
        {"s1": ["a", "b", "c", "d"], "s2": ["e", "f", "g", "h"], "score": [1.0, 7.5, -0.5, float("nan")]}
    )
    with pytest.raises(BadRowsError) as error:
        check_rows(bad, collator, source="scored.csv")
    message = str(error.value)
    assert "scored.csv" in message and "'score'" in message
    for row, what in ((1, "got 7.5"), (2, "got -0.5"), (3, "finite")):
        assert f"row {row}" in message and what in message
    assert "row 0" not in message


def test_stsb_layout_reads_as_scored_pairs() -> None:
    data = load_text_dataset(data_file(STSB_TRAIN))
    assert data.column_names == ["sentence1", "sentence2", "score"] and len(data) == 5749
    assert min(data["score"]) >= 0.0 and max(data["score"]) <= 5.0


def _scored_rows(n: int) -> datasets.Dataset:
    g = torch.Generator().manual_seed(0)
    words = "red blue green cat dog bird runs sleeps eats big small old new fast slow tree car road".split()
    pick = lambda k: " ".join(words[i] for i in torch.randint(len(words), (k,), generator=g).tolist())  # noqa: E731
    return datasets.Dataset.from_dict(
        {"s1": [pick(5) for _ in range(n)], "s2": [pick(4) for _ in range(n)],
         "score": torch.randint(0, 11, (n,), generator=g).div(2).tolist()}
    )  # fmt: skip


def _one_step(tmp_path: Path, objective: ScoredPairs, **args: object) -> dict[str, torch.Tensor]:
    collator = TextPairCollator(tokenizer(), "s1", "s2", score_column="score", score_scale=5, max_length=12)
    return one_sgd_step_update(str(tmp_path), objective, _scored_rows(16), collator, **args)


@pytest.mark.parametrize("loss", ["cosent", "angle"])
def test_gradcache_equals_the_plain_step(tmp_path: Path, loss: str) -> None:
    """GradCache (4 rows a chunk) gives the plain step's update, with Matryoshka widths too (float64)."""
    objective = ScoredPairs(loss, matryoshka=MatryoshkaConfig((32, 16)))  # type: ignore[arg-type]
    plain = _one_step(tmp_path / "plain", objective)
    cached = _one_step(tmp_path / "cached", objective, gradcache_chunk_size=4)
    assert any(float(d.abs().max()) > 0 for d in plain.values())
    for name, delta in plain.items():
        torch.testing.assert_close(cached[name], delta, rtol=1e-9, atol=1e-12)


def test_recipe_demo_sts_trains_cosent(tmp_path: Path) -> None:
    """``recipes/simcse.py --demo sts`` trains CoSENT on the packaged STS-B train pairs (scores 0-5): STS-B dev
    rises from a random tiny BERT, and the card names CoSENT."""
    from hfcontrast.demo import default_text_model
    from tests.launch import REPO_ROOT, run_python

    config_dir = tmp_path / "config"
    bert_config().save_pretrained(config_dir)
    out = tmp_path / "out"
    stdout = run_python(
        REPO_ROOT / "recipes" / "simcse.py", "--demo", "sts", "--config_name", str(config_dir), "--tokenizer_name",
        default_text_model(), "--output_dir", str(out), "--max_steps", "60", "--per_device_train_batch_size", "32",
        "--learning_rate", "2e-3", "--eval_steps", "60", "--max_seq_length", "24", "--logging_steps", "10",
    )  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_sts_spearman"] > results["before_sts_spearman"] + 0.05, stdout[-2000:]
    assert "CoSENT" in (out / "README.md").read_text()
