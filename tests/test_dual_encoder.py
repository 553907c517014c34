"""ContrastiveDualEncoder: shapes, temperature, save/AutoModel round trip, trust_remote_code, CLIP conversion."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    BertConfig,
    BertModel,
    CLIPConfig,
    CLIPModel,
    ViTConfig,
    ViTModel,
)

from hfcontrast import (
    ContrastiveDualEncoder,
    ContrastiveDualEncoderConfig,
    ContrastiveEncoderOutput,
    DualEncoderOutput,
)


def vit_config() -> ViTConfig:
    return ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                     image_size=16, patch_size=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def bert_config() -> BertConfig:
    return BertConfig(vocab_size=120, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=40, max_position_embeddings=32, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


def tiny(**config_kwargs: object) -> ContrastiveDualEncoder:
    torch.manual_seed(0)
    config = ContrastiveDualEncoderConfig(vision_config=vit_config(), text_config=bert_config(), projection_dim=8,
                                          **config_kwargs)
    return ContrastiveDualEncoder(config).eval()


def inputs(batch: int = 3) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(batch, 3, 16, 16, generator=g)
    ids = torch.randint(5, 120, (batch, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    return pixels, {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_defaults_and_registration() -> None:
    config = ContrastiveDualEncoderConfig()
    assert config.vision_config.model_type == "vit" and config.text_config.model_type == "bert"
    assert config.projection_dim == 512 and config.hidden_size == 512
    assert config.logit_scale_init_value == pytest.approx(math.log(1 / 0.07))
    assert config.max_logit_scale == pytest.approx(math.log(100))
    assert isinstance(AutoConfig.for_model("hfcontrast-dual-encoder"), ContrastiveDualEncoderConfig)
    with pytest.raises(ValueError, match="text_pooler"):
        ContrastiveDualEncoderConfig(text_pooler="eos")
    with pytest.raises(ValueError, match="vision_pooler"):
        ContrastiveDualEncoderConfig(vision_pooler="max")
    with pytest.raises(ValueError, match="upgrade hfcontrast"):
        ContrastiveDualEncoderConfig(hfcontrast_config_version=99)


def test_shapes_and_outputs() -> None:
    model = tiny()
    pixels, text = inputs()
    assert model.vision_model.pooler is None and model.text_model.pooler is None  # unused poolers not built
    with torch.no_grad():
        image_features = model.get_image_features(pixels)
        text_features = model.get_text_features(**text)
        image_out = model(pixel_values=pixels)
        text_out = model(**text)
        both = model(pixel_values=pixels, **text)
    assert image_features.shape == text_features.shape == (3, 8)
    assert isinstance(image_out, ContrastiveEncoderOutput) and isinstance(text_out, ContrastiveEncoderOutput)
    torch.testing.assert_close(image_out.embeddings, image_features)
    torch.testing.assert_close(text_out.embeddings, text_features)
    assert isinstance(both, DualEncoderOutput)
    cos = F.normalize(text_features, dim=-1) @ F.normalize(image_features, dim=-1).T
    torch.testing.assert_close(both.logits_per_text, cos * model.logit_scale.exp())
    torch.testing.assert_close(both.logits_per_image, both.logits_per_text.T)
    torch.testing.assert_close(both.image_embeds.norm(dim=-1), torch.ones(3))
    with pytest.raises(ValueError, match="pixel_values"):
        model()


def test_pooler_output_option_and_bias() -> None:
    model = tiny(text_pooler="pooler_output", logit_bias_init_value=-10.0, logit_scale_init_value=math.log(10))
    assert model.text_model.pooler is not None  # BERT's pooler is kept when it is the pooling
    pixels, text = inputs()
    with torch.no_grad():
        pooled = model.text_model(**text).pooler_output
        both = model(pixel_values=pixels, **text)
    torch.testing.assert_close(model.get_text_features(**text), model.text_projection(pooled))
    cos = F.normalize(model.get_text_features(**text), dim=-1) @ F.normalize(model.get_image_features(pixels), dim=-1).T
    torch.testing.assert_close(both.logits_per_text, 10.0 * cos - 10.0)
    assert model.logit_bias.requires_grad


def test_clamp_logit_scale_after_a_big_step() -> None:
    model = tiny()
    optimizer = torch.optim.SGD([model.logit_scale], lr=100.0)
    (-model.logit_scale).backward()  # gradient -1: the step adds 100
    optimizer.step()
    assert model.logit_scale.item() > math.log(100)
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == pytest.approx(math.log(100))
    assert model.temperature == pytest.approx(0.01)
    with torch.no_grad():
        model.logit_scale.fill_(1.0)
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == 1.0  # below the bound: unchanged


def test_frozen_logit_scale_gets_no_gradient(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = tiny(learnable_logit_scale=False)
    assert not model.logit_scale.requires_grad
    assert "logit_scale" not in dict(model.named_parameters())
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert not reloaded.logit_scale.requires_grad and "logit_scale" not in dict(reloaded.named_parameters())
    assert reloaded.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def _trained_state(model: ContrastiveDualEncoder) -> None:
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
        model.visual_projection.weight.mul_(2.0)


def test_save_and_automodel_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = tiny(logit_bias_init_value=-5.0)
    _trained_state(model)
    pixels, text = inputs()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_dual.py").is_file() and (tmp_path / "configuration_dual.py").is_file()
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, ContrastiveDualEncoder)
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixels).embeddings, model(pixel_values=pixels).embeddings)
        assert torch.equal(reloaded(**text).embeddings, model(**text).embeddings)
    assert reloaded.logit_scale.item() == 3.0 and reloaded.logit_bias.item() == -5.0


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys
    import torch

    class BlockHfcontrast(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hfcontrast" or name.startswith("hfcontrast."):
                raise ImportError(f"hfcontrast is blocked in this test: {name}")
            return None

    sys.meta_path.insert(0, BlockHfcontrast())
    from transformers import AutoModel

    checkpoint, data = sys.argv[1], torch.load(sys.argv[2])
    model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    assert not any(name.startswith("hfcontrast") for name in sys.modules), "hfcontrast was imported"
    with torch.no_grad():
        out = {"image": model(pixel_values=data["pixels"]).embeddings, "text": model(**data["text"]).embeddings,
               "logits": model(pixel_values=data["pixels"], **data["text"]).logits_per_image}
    torch.save(out, sys.argv[3])
    """
)


def test_trust_remote_code_without_hfcontrast(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = tiny()
    _trained_state(model)
    pixels, text = inputs()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    torch.save({"pixels": pixels, "text": text}, tmp_path / "inputs.pt")
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1",
               PYTHONPATH="", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        assert torch.equal(out["image"], model(pixel_values=pixels).embeddings)
        assert torch.equal(out["text"], model(**text).embeddings)
        torch.testing.assert_close(out["logits"], model(pixel_values=pixels, **text).logits_per_image)


def test_from_clip_pretrained_equals_clip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    text = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    vision = dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=16,
                  patch_size=8)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)).eval()
    with torch.no_grad():
        clip.logit_scale.fill_(3.3)
    clip.save_pretrained(tmp_path)
    model = ContrastiveDualEncoder.from_clip_pretrained(str(tmp_path)).eval()
    assert model.config.text_pooler == model.config.vision_pooler == "pooler_output"
    ids = torch.randint(3, 99, (3, 6))
    ids[:, -1] = 2  # EOS: CLIP pools the hidden state at the EOS token
    ids[0, 3:] = 0
    ids[0, 3] = 2
    mask = (torch.arange(6) <= 3).long().expand(3, -1).clone()
    mask[1:] = 1
    pixels = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.get_text_features(ids, mask),
                                   clip.get_text_features(input_ids=ids, attention_mask=mask).pooler_output,
                                   atol=0, rtol=0)
        torch.testing.assert_close(model.get_image_features(pixels),
                                   clip.get_image_features(pixel_values=pixels).pooler_output, atol=0, rtol=0)
        ours = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        theirs = clip(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    torch.testing.assert_close(ours.logits_per_image, theirs.logits_per_image)
    assert model.logit_scale.item() == pytest.approx(3.3)


def test_from_vision_text_pretrained_copies_towers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    vit, bert = ViTModel(vit_config()), BertModel(bert_config())
    vit.save_pretrained(tmp_path / "vit")
    bert.save_pretrained(tmp_path / "bert")
    model = ContrastiveDualEncoder.from_vision_text_pretrained(str(tmp_path / "vit"), str(tmp_path / "bert"),
                                                               projection_dim=8).eval()
    pixels, text = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model.vision_model(pixel_values=pixels).last_hidden_state,
                                   vit.eval()(pixel_values=pixels).last_hidden_state)
        expected = _mean(bert.eval()(**text).last_hidden_state, text["attention_mask"])
        torch.testing.assert_close(model(**text).pooled, expected)
    assert model.config.projection_dim == 8 and model.vision_model.pooler is None


def test_load_pretrained_tower_copies_one_tower_and_names_mismatches() -> None:
    torch.manual_seed(0)
    model, bert = tiny().eval(), BertModel(bert_config()).eval()
    vision_before = {k: v.clone() for k, v in model.vision_model.state_dict().items()}
    model.load_pretrained_tower("text", bert)
    _, text = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model.text_model(**text).last_hidden_state, bert(**text).last_hidden_state)
    for name, tensor in model.vision_model.state_dict().items():
        torch.testing.assert_close(tensor, vision_before[name], rtol=0, atol=0)
    with pytest.raises(ValueError, match="tower must be 'vision' or 'text'"):
        model.load_pretrained_tower("audio", bert)
    with pytest.raises(ValueError, match="cannot copy the pretrained vision tower"):
        model.load_pretrained_tower("vision", bert)


def _mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).float()
    return (hidden * weights).sum(1) / weights.sum(1)
