"""Weighted kNN against a naive loop, linear probe, and KNNEvaluator."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from hfcontrast.evaluation import Evaluator, KNNEvaluator, knn_classify, knn_top1, linear_probe


def naive_knn(train: torch.Tensor, labels: list[int], test: torch.Tensor, k: int, t: float) -> list[int]:
    predictions = []
    for q in test.tolist():
        sims = []
        for i, x in enumerate(train.tolist()):
            dot = sum(a * b for a, b in zip(q, x))
            norm = math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in x))
            sims.append((dot / norm, i))
        sims.sort(reverse=True)
        votes = [0.0] * (max(labels) + 1)
        for sim, i in sims[:k]:
            votes[labels[i]] += math.exp(sim / t)
        predictions.append(max(range(len(votes)), key=lambda c: (votes[c], -c)))
    return predictions


@pytest.mark.parametrize(("k", "temperature", "chunk_size"), [(7, 0.1, 4), (3, 0.5, 1024), (100, 0.07, 5)])
def test_knn_matches_naive_loop(k: int, temperature: float, chunk_size: int) -> None:
    g = torch.Generator().manual_seed(k)
    train, test = torch.randn(40, 8, generator=g), torch.randn(15, 8, generator=g)
    labels = torch.randint(5, (40,), generator=g)
    predictions = knn_classify(train, labels, test, k=k, temperature=temperature, chunk_size=chunk_size)
    assert predictions.dtype == torch.long and predictions.shape == (15,)
    assert predictions.tolist() == naive_knn(train, labels.tolist(), test, min(k, 40), temperature)


def clustered(n_per_class: int, classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(dim)[:classes] * 5.0
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    scale = torch.rand(len(labels), 1, generator=g) + 0.5  # norms differ; cosine must not care
    return (centers[labels] + 0.1 * torch.randn(len(labels), dim, generator=g)) * scale, labels


def test_clustered_embeddings_score_one() -> None:
    train, train_labels = clustered(10, 4, 6, seed=0)
    test, test_labels = clustered(5, 4, 6, seed=1)
    assert knn_top1(train, train_labels, test, test_labels, k=20) == 1.0
    assert linear_probe(train, train_labels, test, test_labels, epochs=50) == 1.0
    wrong = (test_labels + 1) % 4
    assert knn_top1(train, train_labels, test, wrong, k=20) == 0.0


def test_linear_probe_is_deterministic_and_learns() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = (x[:, 0] > 0).long()  # linearly separable after normalisation (sign of first coordinate)
    first = linear_probe(x[:40], y[:40], x[40:], y[40:], epochs=30)
    assert first == linear_probe(x[:40], y[:40], x[40:], y[40:], epochs=30)
    assert first >= 0.9


def test_knn_validates_arguments() -> None:
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="temperature"):
        knn_classify(x, y, x, temperature=0.0)
    with pytest.raises(ValueError, match="labels must be"):
        knn_classify(x, y[:3], x)
    with pytest.raises(ValueError, match="num_classes=1"):
        knn_classify(x, y, x, num_classes=1)


class Flatten(nn.Module):
    """An 'image encoder' whose embedding is its (flattened) input times a learnable identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.proj.weight)
        self.modes: list[tuple[bool, bool]] = []

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        self.modes.append((self.training, torch.is_grad_enabled()))
        return SimpleNamespace(embeddings=self.proj(pixel_values.flatten(1)))


def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([r["image"] for r in rows]).view(len(rows), 2, 3),
        "labels": torch.tensor([r["label"] for r in rows]),
    }


@pytest.mark.parametrize("probe", [False, True])
def test_knn_evaluator(probe: bool) -> None:
    g = torch.Generator().manual_seed(3)
    train_x, train_y = torch.randn(30, 6, generator=g), torch.randint(3, (30,), generator=g)
    test_x, test_y = torch.randn(11, 6, generator=g), torch.randint(3, (11,), generator=g)
    train_rows = [{"image": x, "label": int(y)} for x, y in zip(train_x, train_y)]
    test_rows = [{"image": x, "label": int(y)} for x, y in zip(test_x, test_y)]
    evaluator = KNNEvaluator(
        train_rows,
        test_rows,
        collate_fn=collate,
        k=5,
        batch_size=4,
        name="fmnist",
        linear_probe=probe,
        show_progress_bar=probe,
    )
    assert isinstance(evaluator, Evaluator)
    model = Flatten(6).train()
    result = evaluator(model)
    assert model.training and model.modes and all(m == (False, False) for m in model.modes)
    expected = {"fmnist_top1": knn_top1(train_x, train_y, test_x, test_y, k=5, temperature=0.1)}
    if probe:
        expected["fmnist_linear_probe_top1"] = linear_probe(train_x, train_y, test_x, test_y)
    assert result == pytest.approx(expected)
