"""Zero-shot classifier (template averaging) and accuracy on hand examples with a controlled dual encoder."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hfcontrast.evaluation import ZeroShotEvaluator, zero_shot_accuracy, zero_shot_classifier

CLASSES = ["cat", "dog"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", lambda c: f"itap of a {c}"]
PROMPTS = {
    "a photo of a cat.": [4.0, 0.0, 0.0],
    "a drawing of a cat.": [0.0, 1.0, 0.0],
    "itap of a cat": [1.0, 1.0, 0.0],
    "a photo of a dog.": [0.0, 0.0, 2.0],
    "a drawing of a dog.": [0.0, 3.0, 3.0],
    "itap of a dog": [-1.0, 0.0, 1.0],
}


class PromptTokenizer:
    def __init__(self) -> None:
        self.ids = {p: i for i, p in enumerate(PROMPTS)}

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([[self.ids[t]] for t in texts])}


class ControlledDualEncoder(nn.Module):
    """Text features from a fixed table (by prompt), image features = the pixel values themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(list(PROMPTS.values())))
        self.modes: list[bool] = []

    def get_text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training or torch.is_grad_enabled())
        return self.table[input_ids[:, 0]]

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training or torch.is_grad_enabled())
        return pixel_values


def test_template_averaging_matches_manual_computation() -> None:
    model = ControlledDualEncoder().train()
    classifier = zero_shot_classifier(model, PromptTokenizer(), CLASSES, TEMPLATES, batch_size=4)
    assert model.training and not any(model.modes)
    expected = []
    for name in CLASSES:
        prompts = [t(name) if callable(t) else t.format(name) for t in TEMPLATES]
        unit = [F.normalize(torch.tensor(PROMPTS[p]), dim=0) for p in prompts]
        expected.append(F.normalize(torch.stack(unit).mean(0), dim=0))
    assert torch.allclose(classifier, torch.stack(expected), atol=1e-6)
    # cat by hand: mean of (1,0,0), (0,1,0), (1,1,0)/sqrt2 -> direction (1 + 1/sqrt2, 1 + 1/sqrt2, 0)
    assert torch.allclose(classifier[0], torch.tensor([2**-0.5, 2**-0.5, 0.0]), atol=1e-6)
    naive = F.normalize(torch.tensor([[5.0, 2.0, 0.0]]), dim=1)  # mean without per-prompt normalisation
    assert not torch.allclose(classifier[0], naive[0], atol=1e-2)


def test_zero_shot_accuracy_hand_example() -> None:
    classifier = torch.tensor([[2.0, 0.0], [0.0, 0.5]])  # rows need not be unit: normalised inside
    images = torch.tensor([[2.0, 1.0], [0.1, 3.0], [5.0, 6.0], [1.0, -1.0]])
    labels = torch.tensor([0, 1, 0, 1])  # predictions: 0, 1, 1, 0
    assert zero_shot_accuracy(images, classifier, labels) == 0.5
    assert zero_shot_accuracy(images, classifier, labels, top_k=2) == 1.0
    with pytest.raises(ValueError, match="top_k"):
        zero_shot_accuracy(images, classifier, labels, top_k=3)


def test_template_without_placeholder_is_an_error() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        zero_shot_classifier(ControlledDualEncoder(), PromptTokenizer(), CLASSES, ["a photo"])


def test_zero_shot_evaluator() -> None:
    # classifier (see above): cat ~ (1, 1, 0)/sqrt2; dog ~ mean of (0,0,1), (0,1,1)/sqrt2, (-1,0,1)/sqrt2
    rows = [
        {"x": [1.0, 1.0, 0.0], "y": 0},
        {"x": [0.0, 0.0, 1.0], "y": 1},
        {"x": [3.0, 2.0, 0.5], "y": 0},
        {"x": [0.0, 1.0, 0.0], "y": 1},  # closer to cat: wrong
        {"x": [-1.0, 0.0, 2.0], "y": 1},
    ]

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.tensor([r["x"] for r in batch]),
            "labels": torch.tensor([r["y"] for r in batch]),
        }

    evaluator = ZeroShotEvaluator(
        rows,
        collate_fn=collate,
        class_names=CLASSES,
        templates=TEMPLATES,
        tokenizer=PromptTokenizer(),
        batch_size=2,
    )
    model = ControlledDualEncoder().train()
    assert evaluator(model) == {"zeroshot_top1": pytest.approx(0.8)}
    assert model.training and not any(model.modes)
