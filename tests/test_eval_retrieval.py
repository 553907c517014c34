"""Retrieval metrics on hand-computed examples, and RetrievalEvaluator with a fake dual encoder."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers
from torch import nn

from hfcontrast.evaluation import RetrievalEvaluator, retrieval_metrics, retrieval_ranks


def embeddings_with_similarities(sims: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images e_i (scaled) and texts whose cosine with image i is sims[t][i] / sqrt(2), via a slack dim."""
    s = torch.tensor(sims)
    n_img = s.shape[1]
    images = torch.eye(n_img, n_img + 1) * torch.arange(1, n_img + 1).unsqueeze(1)  # norms differ
    slack = (2.0 - s.pow(2).sum(1, keepdim=True)).sqrt()
    texts = torch.cat([s, slack], dim=1) * torch.linspace(0.5, 3.0, len(sims)).unsqueeze(1)
    return images, texts


def test_one_caption_per_image_hand_example() -> None:
    # texts t0..t2 caption images 0..2; rows are texts, columns images (cosine up to a common factor)
    images, texts = embeddings_with_similarities([[0.2, 1.0, 0.0], [0.0, 0.9, 0.5], [1.0, 0.0, 0.3]])
    # text->image: t0 ranks image 1 first (rank 2), t1 rank 1, t2 ranks image 0 first (rank 2)
    # image->text: image0 [0.2, 0, 1] -> rank 2; image1 [1, .9, 0] -> rank 2; image2 [0, .5, .3] -> rank 2
    i2t, t2i = retrieval_ranks(images, texts, torch.arange(3))
    assert i2t.tolist() == [2, 2, 2] and t2i.tolist() == [2, 1, 2]
    metrics = retrieval_metrics(images, texts, ks=(1, 2, 5))
    assert metrics == pytest.approx(
        {
            "image_to_text_R@1": 0.0,
            "image_to_text_R@2": 1.0,
            "image_to_text_R@5": 1.0,
            "image_to_text_median_rank": 2.0,
            "text_to_image_R@1": 1 / 3,
            "text_to_image_R@2": 1.0,
            "text_to_image_R@5": 1.0,
            "text_to_image_median_rank": 2.0,
        }
    )


def test_several_captions_per_image_hand_example() -> None:
    sims = [
        [0.1, 0.5, 0.2],  # t0 -> image 0: images 1 and 2 above -> rank 3
        [0.9, 0.3, 0.0],  # t1 -> image 0: rank 1
        [0.4, 0.6, 0.7],  # t2 -> image 1: image 2 above -> rank 2
        [0.2, 0.1, 0.3],  # t3 -> image 2: rank 1
        [0.8, 0.0, 0.5],  # t4 -> image 2: image 0 above -> rank 2
    ]
    # image->text: image0 best caption t1 (0.9) is top -> 1; image1 t2 (0.6) is top -> 1;
    # image2 best caption t4 (0.5), only t2 (0.7, not its caption) above -> 2
    images, texts = embeddings_with_similarities(sims)
    t2i_index = torch.tensor([0, 0, 1, 2, 2])
    i2t, t2i = retrieval_ranks(images, texts, t2i_index, chunk_size=2)
    assert i2t.tolist() == [1, 1, 2] and t2i.tolist() == [3, 1, 2, 1, 2]
    metrics = retrieval_metrics(images, texts, text_to_image=t2i_index, ks=(1, 2))
    assert metrics == pytest.approx(
        {
            "image_to_text_R@1": 2 / 3,
            "image_to_text_R@2": 1.0,
            "image_to_text_median_rank": 1.0,
            "text_to_image_R@1": 2 / 5,
            "text_to_image_R@2": 4 / 5,
            "text_to_image_median_rank": 2.0,
        }
    )


def test_collapsed_embeddings_get_the_worst_rank() -> None:
    same = torch.ones(4, 3)
    metrics = retrieval_metrics(same, same, ks=(1,))
    assert metrics["image_to_text_R@1"] == 0.0 and metrics["image_to_text_median_rank"] == 4.0
    assert metrics["text_to_image_R@1"] == 0.0 and metrics["text_to_image_median_rank"] == 4.0


def test_retrieval_metrics_validates() -> None:
    with pytest.raises(ValueError, match="pass text_to_image"):
        retrieval_metrics(torch.randn(2, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"images without a caption.*\[1\]"):
        retrieval_metrics(torch.randn(2, 3), torch.randn(2, 3), text_to_image=torch.tensor([0, 0]))


class FakeTokenizer:
    """Maps each known caption to one token id (its index)."""

    def __init__(self, texts: list[str]) -> None:
        self.ids = {t: i for i, t in enumerate(texts)}

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([[self.ids[t]] for t in texts])}


class FakeDualEncoder(nn.Module):
    def __init__(self, text_table: torch.Tensor) -> None:
        super().__init__()
        self.text_table = nn.Parameter(text_table.clone())
        self.image_calls = 0
        self.modes: list[bool] = []

    def get_text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training or torch.is_grad_enabled())
        return self.text_table[input_ids[:, 0]]

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training or torch.is_grad_enabled())
        self.image_calls += pixel_values.shape[0]
        return pixel_values.flatten(1)


def test_retrieval_evaluator_with_several_captions() -> None:
    g = torch.Generator().manual_seed(0)
    image_vectors, text_table = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g)
    captions = [f"caption {i}" for i in range(5)]
    image_of = [1, 0, 1, 2, 0]  # rows in dataset order; image ids first seen in order 1, 0, 2
    rows = [
        {"image": image_vectors[j], "caption": c, "image_id": f"img{j}"} for j, c in zip(image_of, captions)
    ]
    tokenizer = FakeTokenizer(captions)

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "image": {"pixel_values": torch.stack([r["image"] for r in batch])},
            "text": tokenizer([r["caption"] for r in batch]),
        }

    evaluator = RetrievalEvaluator(
        rows, collate_fn=collate, image_id_column="image_id", batch_size=2, ks=(1, 2)
    )
    model = FakeDualEncoder(text_table).train()
    result = evaluator(model)
    assert model.training and not any(model.modes)
    assert model.image_calls == 3  # each image embedded once
    order = torch.tensor([1, 0, 2])  # embedding order of images
    expected = retrieval_metrics(
        image_vectors[order], text_table, text_to_image=torch.tensor([0, 1, 0, 2, 1]), ks=(1, 2)
    )
    assert result == pytest.approx({f"retrieval_{k}": v for k, v in expected.items()})


def test_retrieval_evaluator_on_tiny_clip_model() -> None:
    """transformers 5 CLIPModel.get_*_features return a ModelOutput (pooler_output); flat batches work."""
    torch.manual_seed(0)
    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = transformers.CLIPConfig(
        text_config={**small, "vocab_size": 20, "max_position_embeddings": 8},
        vision_config={**small, "image_size": 8, "patch_size": 4, "num_channels": 3},
        projection_dim=8,
    )
    model = transformers.CLIPModel(config)
    g = torch.Generator().manual_seed(1)
    rows = [
        {"pixels": torch.rand(3, 8, 8, generator=g), "ids": torch.randint(20, (5,), generator=g)}
        for _ in range(6)
    ]

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.stack([r["pixels"] for r in batch]),
            "input_ids": torch.stack([r["ids"] for r in batch]),
        }

    result = RetrievalEvaluator(rows, collate_fn=collate, name="clip", batch_size=4)(model)
    assert set(result) == {
        f"clip_{d}_{m}"
        for d in ("image_to_text", "text_to_image")
        for m in ("R@1", "R@5", "R@10", "median_rank")
    }
    assert result["clip_image_to_text_R@10"] == 1.0 and 0.0 <= result["clip_text_to_image_R@1"] <= 1.0
