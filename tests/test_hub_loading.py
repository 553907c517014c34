"""A saved checkpoint loads three ways with identical outputs: ``import hfcontrast`` + AutoModel,
``trust_remote_code`` where hfcontrast cannot be imported (a subprocess), and SentenceTransformer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModel, BertConfig, ResNetConfig, ViTConfig, ViTImageProcessor

import hfcontrast.models
from hfcontrast import ContrastiveTextModel
from hfcontrast.hub import export_model
from tests.tiny import text_model, tokenizer

TEXTS = ["a red cat runs", "the old car on the road", "blue sky"]
REGISTERED = {config.model_type for config, _ in hfcontrast.models._REGISTRY}

# Runs with hfcontrast unimportable: a meta-path finder refuses it, as in an environment without it.
REMOTE_CODE = """
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "hfcontrast" or name.startswith("hfcontrast."):
            raise ImportError("hfcontrast is not installed here")
sys.meta_path.insert(0, Block())
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer
torch.set_num_threads(1)  # as in conftest: same reduction order, so outputs are bit-identical
path = sys.argv[1]
model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
inputs, expected = load_file(path + "/inputs.safetensors"), load_file(path + "/expected.safetensors")
texts = json.loads(sys.argv[2])
if texts:
    tokens = AutoTokenizer.from_pretrained(path, trust_remote_code=True)(texts, padding=True, return_tensors="pt")
    assert torch.equal(tokens["input_ids"], inputs["input_ids"])
with torch.no_grad():
    if "image" in expected:
        got = {"image": model.get_image_features(pixel_values=inputs["pixel_values"]),
               "text": model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])}
    else:
        got = {"embeddings": model(**inputs).embeddings}
for name, value in expected.items():
    torch.testing.assert_close(got[name], value, rtol=0, atol=0)
assert not any(m == "hfcontrast" or m.startswith("hfcontrast.") for m in sys.modules)
print("remote-code-ok")
"""


Batch = dict[str, torch.Tensor]



@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may reach the Hub: HF_HUB_OFFLINE=1 (env and huggingface_hub's parsed constant)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

def encode(model: torch.nn.Module, inputs: Batch) -> Batch:
    """What the subprocess computes: ``embeddings``, or a dual encoder's image and text features."""
    with torch.no_grad():
        if hasattr(model, "get_image_features"):
            return {
                "image": model.get_image_features(pixel_values=inputs["pixel_values"]),
                "text": model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]),
            }
        return {"embeddings": model(**inputs).embeddings}


def tiny_text() -> tuple[torch.nn.Module, Batch]:
    model = text_model(pooler="cls", projection_dim=16, normalize=True).eval()
    return model, dict(tokenizer()(TEXTS, padding=True, return_tensors="pt"))


def tiny_vision() -> tuple[torch.nn.Module, Batch]:
    from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    model = ContrastiveVisionModel(
        ContrastiveVisionConfig(backbone_config=backbone, projection_dim=6, use_projection_at_inference=True)
    ).eval()
    return model, {"pixel_values": torch.randn(2, 3, 32, 32)}


def tiny_dual() -> tuple[torch.nn.Module, Batch]:
    from hfcontrast import ContrastiveDualEncoder, ContrastiveDualEncoderConfig

    vision = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                       image_size=16, patch_size=8)
    text = BertConfig(vocab_size=tokenizer().vocab_size, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=48, max_position_embeddings=32)
    model = ContrastiveDualEncoder(
        ContrastiveDualEncoderConfig(vision_config=vision, text_config=text, projection_dim=8)
    ).eval()
    return model, {"pixel_values": torch.randn(2, 3, 16, 16), **tokenizer()(TEXTS, padding=True, return_tensors="pt")}


FAMILIES = {
    "hfcontrast-text": (tiny_text, tokenizer),
    "hfcontrast-vision": (tiny_vision, lambda: ViTImageProcessor(size={"height": 32, "width": 32})),
    "hfcontrast-dual-encoder": (tiny_dual, tokenizer),
}


def test_every_model_type_is_registered_with_the_auto_classes() -> None:
    """Each family's model type resolves through AutoConfig / AutoModel once hfcontrast is imported."""
    from transformers import AutoConfig, AutoModel

    assert set(FAMILIES) == REGISTERED
    for model_type in REGISTERED:
        config = AutoConfig.for_model(model_type)
        assert type(AutoModel.from_config(config)).__name__.startswith("Contrastive"), model_type


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_trust_remote_code_loads_without_hfcontrast(model_type: str, tmp_path: Path) -> None:
    assert model_type in REGISTERED, f"{model_type} is no longer registered with AutoConfig/AutoModel"
    build, processing_class = FAMILIES[model_type]
    torch.manual_seed(0)
    model, inputs = build()
    expected = encode(model, inputs)
    files = export_model(model, str(tmp_path), processing_class())
    assert not any(name.endswith(".bin") for name in files)
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(tmp_path / "inputs.safetensors"))
    save_file({k: v.contiguous() for k, v in expected.items()}, str(tmp_path / "expected.safetensors"))
    # (1) import hfcontrast; AutoModel, no trust_remote_code
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    for name, value in encode(loaded, inputs).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    # (2) trust_remote_code in a process where hfcontrast cannot be imported
    texts = json.dumps(TEXTS if model_type == "hfcontrast-text" else [])
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE, str(tmp_path), texts], capture_output=True, text=True, env=env,
        cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=300,
    )
    assert "remote-code-ok" in result.stdout, result.stderr[-4000:]


def test_sentence_transformers_matches_automodel(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model, inputs = tiny_text()
    expected = encode(model, inputs)
    export_model(model, str(tmp_path), tokenizer())
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ContrastiveTextModel)
    torch.testing.assert_close(encode(loaded, inputs)["embeddings"], expected["embeddings"], rtol=0, atol=0)
    st = SentenceTransformer(str(tmp_path), device="cpu")
    assert st.get_sentence_embedding_dimension() == 16
    encoded = torch.as_tensor(st.encode(TEXTS))
    torch.testing.assert_close(encoded, expected["embeddings"], rtol=0, atol=0)


@pytest.mark.parametrize("version", [0, 999])
def test_unknown_config_version_fails_naming_it(version: int, tmp_path: Path) -> None:
    text_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hfcontrast_config_version"] = version
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"hfcontrast_config_version={version}\b"):
        AutoModel.from_pretrained(tmp_path)


def test_checkpoint_without_config_version_loads(tmp_path: Path) -> None:
    text_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["hfcontrast_config_version"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert isinstance(AutoModel.from_pretrained(tmp_path), ContrastiveTextModel)
