"""ContrastiveVisionModel: shapes per backbone/pooler/head, AutoModel and trust_remote_code round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, ConvNextConfig, ResNetConfig, ResNetModel, ViTConfig

import hfcontrast  # noqa: F401  (registers the models)
from hfcontrast import ContrastiveEncoderOutput, ContrastiveVisionConfig, ContrastiveVisionModel


def tiny_resnet(**kwargs: object) -> ContrastiveVisionConfig:
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return ContrastiveVisionConfig(backbone_config=backbone, projection_dim=6, **kwargs)


def tiny_vit(**kwargs: object) -> ContrastiveVisionConfig:
    backbone = ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=12,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
    )
    return ContrastiveVisionConfig(backbone_config=backbone, projection_dim=6, **kwargs)


def pixels(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("make", "pooled"),
    [(tiny_resnet, 16), (tiny_vit, 12)],
)
@pytest.mark.parametrize("projection", ["mlp", "linear", "none"])
def test_forward_shapes_and_dims(make, pooled: int, projection: str) -> None:
    torch.manual_seed(0)
    config = make(projection=projection)
    model = ContrastiveVisionModel(config)
    train_dim = pooled if projection == "none" else 6
    assert (config.pooled_dim, config.train_embedding_dim, config.hidden_size) == (pooled, train_dim, pooled)
    assert model.embedding_dim == train_dim
    out = model(pixels())
    assert isinstance(out, ContrastiveEncoderOutput)
    assert out.embeddings.shape == (4, train_dim) and out.pooled.shape == (4, pooled)
    model.eval()
    out = model(pixels())
    assert out.embeddings.shape == (4, pooled)
    torch.testing.assert_close(out.embeddings, out.pooled)
    assert model(pixels(), use_head=True).embeddings.shape == (4, train_dim)
    assert model(pixels(), return_dict=False)[0].shape == (4, pooled)


def test_projection_at_inference_and_normalize() -> None:
    config = tiny_resnet(use_projection_at_inference=True, normalize=True)
    assert config.hidden_size == 6
    model = ContrastiveVisionModel(config).eval()
    emb = model(pixels()).embeddings
    assert emb.shape == (4, 6)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))


@pytest.mark.parametrize("pooler", ["auto", "cls", "mean"])
def test_vit_poolers(pooler: str) -> None:
    torch.manual_seed(0)
    model = ContrastiveVisionModel(tiny_vit(pooler=pooler, projection="none")).eval()
    out = model(pixels())
    tokens = out.last_hidden_state
    expected = {
        "auto": lambda: model.backbone.pooler(tokens),  # ViT returns pooler_output: auto uses it
        "cls": lambda: tokens[:, 0],
        "mean": lambda: tokens.mean(dim=1),
    }[pooler]()
    torch.testing.assert_close(out.embeddings, expected)
    # The ViT pooler has parameters: built only when used, so DDP sees no unused parameter.
    assert (model.backbone.pooler is not None) == (pooler == "auto")


def test_feature_map_poolers() -> None:
    torch.manual_seed(0)
    auto = ContrastiveVisionModel(tiny_resnet(projection="none")).eval()
    out = auto(pixels())
    torch.testing.assert_close(out.embeddings, out.last_hidden_state.mean(dim=(2, 3)))  # ResNet's avg pool
    mean = ContrastiveVisionModel(tiny_resnet(projection="none", pooler="mean"))
    mean.load_state_dict(auto.state_dict())
    torch.testing.assert_close(mean.eval()(pixels()).embeddings, out.embeddings)
    with pytest.raises(ValueError, match="token sequence"):
        ContrastiveVisionModel(tiny_resnet(pooler="cls"))(pixels())
    convnext = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    model = ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=convnext, projection_dim=5))
    assert model(pixels()).embeddings.shape == (4, 5)
    assert model.config.pooled_dim == 16


def test_config_defaults_and_validation() -> None:
    config = ContrastiveVisionConfig()
    assert config.backbone_config.model_type == "resnet" and config.pooled_dim == 2048
    config = ContrastiveVisionConfig(backbone_config={"hidden_sizes": [4, 8], "depths": [1, 1]})
    assert config.backbone_config.model_type == "resnet" and config.pooled_dim == 8
    with pytest.raises(ValueError, match="unknown pooler"):
        ContrastiveVisionConfig(pooler="max")
    with pytest.raises(ValueError, match="unknown projection"):
        ContrastiveVisionConfig(projection="deep")


def test_config_version_mismatch_names_the_version(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hfcontrast_config_version=99"):
        ContrastiveVisionConfig(hfcontrast_config_version=99)
    ContrastiveVisionModel(tiny_resnet()).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    data["hfcontrast_config_version"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="hfcontrast_config_version=7"):
        AutoModel.from_pretrained(tmp_path)


def _trained_model() -> ContrastiveVisionModel:
    """A model whose head BatchNorm has non-default running statistics."""
    torch.manual_seed(0)
    model = ContrastiveVisionModel(tiny_resnet(use_projection_at_inference=True))
    model.train()
    with torch.no_grad():
        model(pixels(8, seed=1))
    return model.eval()


def test_save_and_automodel_round_trip(tmp_path: Path) -> None:
    model = _trained_model()
    model.save_pretrained(tmp_path)
    assert {"configuration_vision.py", "modeling_vision.py", "pooling.py", "configuration_common.py", "towers.py"} <= set(
        os.listdir(tmp_path)
    )
    assert AutoConfig.from_pretrained(tmp_path).model_type == "hfcontrast-vision"
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is ContrastiveVisionModel
    assert loaded.config.to_dict()["projection_dim"] == 6
    with torch.no_grad():
        assert torch.equal(loaded(pixels()).embeddings, model(pixels()).embeddings)
        assert torch.equal(loaded(pixels(), use_head=False).embeddings, model(pixels()).pooled)


_REMOTE_SCRIPT = """
import importlib.abc, sys

class _NoHfcontrast(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hfcontrast" or name.startswith("hfcontrast."):
            raise ImportError("hfcontrast is blocked in this test")
        return None

sys.meta_path.insert(0, _NoHfcontrast())
import torch
from transformers import AutoModel

checkpoint, inputs, output = sys.argv[1:4]
model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert not any(name.startswith("hfcontrast") for name in sys.modules)
with torch.no_grad():
    torch.save(model(torch.load(inputs)).embeddings, output)
"""


def test_trust_remote_code_without_hfcontrast(tmp_path: Path) -> None:
    model = _trained_model()
    checkpoint = tmp_path / "model"
    model.save_pretrained(checkpoint)
    torch.save(pixels(), tmp_path / "inputs.pt")
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(_REMOTE_SCRIPT))
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        expected = model(pixels()).embeddings
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)


def test_from_backbone_pretrained(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone = ResNetModel(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    )
    backbone.save_pretrained(tmp_path)
    model = ContrastiveVisionModel.from_backbone_pretrained(str(tmp_path), projection_dim=3)
    assert model.config.projection_dim == 3 and model.config.backbone_config.hidden_sizes == [8, 16]
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name
    model.eval()
    backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(pixels()).embeddings, backbone(pixels()).pooler_output.flatten(1))
