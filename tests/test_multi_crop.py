"""Multi-crop (Caron et al. 2020): 2 global + V local views from the collator, one forward per resolution
in the trainer, equal to embedding each view on its own; local crops through a ViT interpolate its
position embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ViTConfig

from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel
from hfcontrast.augment import ViewParams, ViewPipeline, local_crop_pipeline, simclr_pipeline
from hfcontrast.collators import MultiViewCollator
from hfcontrast.trainer.views import embed_views
from tests.tiny import vision_config


def rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 255, (28, 28), dtype=np.uint8), "idx": i} for i in range(n)]


def collator(local_crops: int = 3) -> MultiViewCollator:
    params = ViewParams(size=20, crop_scale=(0.4, 1.0), blur_p=0.0)
    global_view = ViewPipeline.from_params(params)
    return MultiViewCollator.multi_crop(global_view, local_crop_pipeline(global_view, 12), local_crops, seed=1, index_column="idx")


def test_collator_gives_two_global_and_v_local_views_seeded_per_row() -> None:
    batch = collator()(rows(4))
    assert list(batch) == ["query", "key", "local_0", "local_1", "local_2"]
    assert [tuple(batch[n]["pixel_values"].shape) for n in batch] == [(4, 3, 20, 20)] * 2 + [(4, 3, 12, 12)] * 3
    assert not torch.equal(batch["local_0"]["pixel_values"], batch["local_1"]["pixel_values"])
    again = collator()(rows(4)[2:])  # each row's crops depend on (seed, epoch, row, view) only
    torch.testing.assert_close(again["local_2"]["pixel_values"], batch["local_2"]["pixel_values"][2:])
    with pytest.raises(ValueError, match="local_crops"):
        collator(-1)
    with pytest.raises(ValueError, match="ViewParams"):
        local_crop_pipeline(ViewPipeline([]), 12)
    assert local_crop_pipeline(simclr_pipeline(32), 16).params.size == 16  # type: ignore[union-attr]


class Counting(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.shapes = model, []

    def forward(self, **inputs: object) -> object:
        self.shapes.append(tuple(inputs["pixel_values"].shape))  # type: ignore[union-attr]
        return self.model(**inputs)


@pytest.mark.parametrize("backbone", ["resnet", "vit"])
def test_one_forward_per_resolution_equals_each_view_alone(backbone: str) -> None:
    torch.manual_seed(0)
    if backbone == "vit":
        vit = ViTConfig(image_size=20, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
        model = ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=vit, projection_dim=8))
    else:
        model = ContrastiveVisionModel(vision_config())
    model.eval()  # BatchNorm / dropout independent of the batch: grouped and alone must agree
    batch = collator()(rows(4))
    counting = Counting(model)
    grouped = embed_views(counting, batch)
    assert counting.shapes == [(8, 3, 20, 20), (12, 3, 12, 12)]
    for name, view in batch.items():
        alone = model(**view, use_head=True).embeddings
        torch.testing.assert_close(grouped[name], alone, rtol=1e-5, atol=1e-5)
    if backbone == "vit":
        explicit = model(**batch["local_0"], use_head=True, interpolate_pos_encoding=True).embeddings
        torch.testing.assert_close(grouped["local_0"], explicit, rtol=1e-5, atol=1e-5)
