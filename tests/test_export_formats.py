"""Standard export formats, loaded where hfcontrast is not installed (a venv that sees this one's packages, torch,
transformers, sentence-transformers and onnxruntime among them, but not hfcontrast, and no ``trust_remote_code``):

* text: a sentence-transformers folder; ``SentenceTransformer(path)`` gives the trained model's embeddings (1e-5),
  prompts and ``truncate_dim`` included, ``AutoModel`` the plain backbone, and hfcontrast reads it back;
* images: the plain backbone and processor; ``AutoModel`` and ``pipeline("image-feature-extraction")``;
* image-text: ``VisionTextDualEncoderModel``; ``AutoModel`` and ``pipeline("zero-shot-image-classification")``;
* no ``.py`` file in a standard folder; what a standard format cannot express is refused, naming the custom one;
* ONNX: onnxruntime's outputs equal torch's (1e-4), and an int8 file runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    BertConfig,
    ConvNextImageProcessorPil,
    VisionTextDualEncoderProcessor,
    ViTConfig,
    ViTImageProcessorPil,
)

from hfcontrast import (
    ContrastiveDualEncoder,
    ContrastiveDualEncoderConfig,
    ContrastiveTextModel,
    ContrastiveVisionModel,
)
from hfcontrast.hub import ExportRefused, export, export_onnx
from tests.conftest import PIL_AUTO_IMAGE_PROCESSOR
from tests.tiny import fresh_tokenizer, text_model, tokenizer, vision_config

TEXTS = ["A man is playing a guitar.", "where is the cat", "the sea at night, under a sky full of stars"]


def no_code_files(folder: Path) -> None:
    assert not list(folder.rglob("*.py")), list(folder.rglob("*.py"))
    config = json.loads((folder / "config.json").read_text())
    assert "auto_map" not in config and not str(config.get("model_type", "")).startswith("hfcontrast")


TEXT_MODELS = {
    "mean": dict(pooler="mean"),
    "cls-head": dict(pooler="cls", mlp_head=True),
    "max-normalize-truncate": dict(pooler="max", normalize=True, truncate_dim=16),
    "training-only-head": dict(pooler="cls", mlp_head=True, mlp_only_train=True),
    "prompts": dict(pooler="mean", prompts={"anchor": "query: ", "positive": "passage: "}),
}


@pytest.mark.parametrize("name", sorted(TEXT_MODELS))
def test_text_exports_a_sentence_transformers_folder(name: str, tmp_path: Path, isolated_python: Callable[[str, Path], Any]) -> None:
    torch.manual_seed(0)
    model = text_model(**TEXT_MODELS[name]).eval()
    export(model, str(tmp_path), tokenizer(), max_seq_length=24)
    no_code_files(tmp_path)
    prompts = model.config.prompts or {}

    def ours(texts: list[str], prompt: str = "") -> list[list[float]]:
        with torch.no_grad():
            inputs = tokenizer()([prompt + t for t in texts], padding=True, truncation=True, max_length=24, return_tensors="pt")
            return model(**inputs).embeddings.tolist()

    code = f"""
import json
from sentence_transformers import SentenceTransformer
from transformers import AutoModel
st = SentenceTransformer({str(tmp_path)!r}, device="cpu")
plain = st.encode({TEXTS!r}).tolist()
query = st.encode_query({TEXTS!r}).tolist()
pooling = json.load(open({str(tmp_path / "1_Pooling" / "config.json")!r}))
print(json.dumps({{"plain": plain, "query": query, "backbone": type(AutoModel.from_pretrained({str(tmp_path)!r})).__name__,
                   "max_seq_length": st.max_seq_length, "pooling": pooling, "dim": st.get_sentence_embedding_dimension()}}))
"""
    got = isolated_python(code, tmp_path)
    torch.testing.assert_close(torch.tensor(got["plain"]), torch.tensor(ours(TEXTS)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(got["query"]), torch.tensor(ours(TEXTS, prompts.get("anchor", ""))), rtol=1e-5, atol=1e-5)
    assert got["backbone"] == "BertModel" and got["max_seq_length"] == 24
    assert got["dim"] == model.config.embedding_dim
    mode = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}
    assert got["pooling"]["word_embedding_dimension"] == 32 and got["pooling"][mode[model.config.pooler]] is True  # TEI reads these
    back = ContrastiveTextModel.from_pretrained(str(tmp_path)).eval()  # the round trip: training continues from it
    for key in ("pooler", "mlp_head", "mlp_only_train", "normalize", "prompts", "truncate_dim", "pool_prompt_tokens"):
        assert getattr(back.config, key) == getattr(model.config, key), key
    with torch.no_grad():
        inputs = tokenizer()(TEXTS, padding=True, return_tensors="pt")
        torch.testing.assert_close(back(**inputs).embeddings, model(**inputs).embeddings)
        torch.testing.assert_close(back(**inputs, use_head=True).embeddings, model(**inputs, use_head=True).embeddings)


def test_a_pooling_sentence_transformers_cannot_express_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportRefused, match=r"first_last_avg.*export_format='hfcontrast'"):
        export(text_model(pooler="first_last_avg"), str(tmp_path / "a"), tokenizer())
    model = text_model(pooler="mean", prompts={"anchor": "query: "}, prompt_token_ids={"anchor": [1, 2]}, pool_prompt_tokens=False)
    with pytest.raises(ExportRefused, match="pool_prompt_tokens=False"):
        export(model, str(tmp_path / "b"), tokenizer())
    files = export(model, str(tmp_path / "c"), tokenizer(), export_format="hfcontrast")  # the custom format keeps it
    assert "modeling_text.py" in files and "model.safetensors" in files


def test_a_foreign_sentence_transformers_folder_is_read_as_it_is(tmp_path: Path) -> None:
    """Any sentence-transformers folder (here one sentence-transformers itself saved): its modules become the config."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from hfcontrast.demo import default_text_model

    st = SentenceTransformer(modules=[Transformer(default_text_model(), max_seq_length=32), Pooling(384, "cls"), Normalize()])
    st.save(str(tmp_path))
    model = ContrastiveTextModel.from_pretrained(str(tmp_path)).eval()
    assert model.config.pooler == "cls" and model.config.normalize and not model.config.mlp_head
    with torch.no_grad():
        mine = model(**st.tokenizer(TEXTS, padding=True, return_tensors="pt")).embeddings
    torch.testing.assert_close(mine, st.encode(TEXTS, convert_to_tensor=True), rtol=1e-5, atol=1e-5)


def picture(path: Path, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


@PIL_AUTO_IMAGE_PROCESSOR
@pytest.mark.parametrize("backbone", ["resnet", "vit", "vit-cls"])
def test_images_export_the_plain_backbone(backbone: str, tmp_path: Path, isolated_python: Callable[[str, Path], Any]) -> None:
    torch.manual_seed(0)
    if backbone == "resnet":
        model, processor = ContrastiveVisionModel(vision_config()).eval(), ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0)
    else:
        vit = ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
        pooler = "cls" if backbone == "vit-cls" else "auto"  # the class token: an identity pooler in the export
        model = ContrastiveVisionModel(type(vision_config())(backbone_config=vit, projection_dim=8, pooler=pooler)).eval()
        processor = ViTImageProcessorPil(size={"height": 16, "width": 16})
    export(model, str(tmp_path), processor)
    no_code_files(tmp_path)
    image = picture(tmp_path / "cat.png")
    with torch.no_grad():
        pooled = model(**processor(images=Image.open(image).convert("RGB"), return_tensors="pt")).pooled
    code = """
import json, torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline
model = AutoModel.from_pretrained("."); processor = AutoImageProcessor.from_pretrained(".")
with torch.no_grad():
    features = model(**processor(images=Image.open("cat.png").convert("RGB"), return_tensors="pt")).pooler_output.flatten(1)
piped = pipeline("image-feature-extraction", model=".")("cat.png", pool=True)
print(json.dumps({"auto": features.tolist(), "pipeline": torch.tensor(piped).flatten().tolist(), "type": type(model).__name__}))
"""
    got = isolated_python(code, tmp_path)
    assert got["type"] == ("ResNetModel" if backbone == "resnet" else "ViTModel")
    torch.testing.assert_close(torch.tensor(got["auto"]), pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(got["pipeline"]), pooled.flatten(), rtol=1e-5, atol=1e-5)


def dual(**kwargs: Any) -> ContrastiveDualEncoder:
    vision = ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    text = BertConfig(vocab_size=tokenizer().vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    values = dict(vision_config=vision, text_config=text, projection_dim=8, text_pooler="pooler_output",
                  vision_pooler="pooler_output", logit_scale_init_value=math.log(20.0))  # fmt: skip
    return ContrastiveDualEncoder(ContrastiveDualEncoderConfig(**{**values, **kwargs})).eval()


@PIL_AUTO_IMAGE_PROCESSOR
def test_image_text_exports_a_vision_text_dual_encoder(tmp_path: Path, isolated_python: Callable[[str, Path], Any]) -> None:
    torch.manual_seed(0)
    model = dual()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(33.0))  # a learned temperature, kept by the export
    processor = VisionTextDualEncoderProcessor(image_processor=ViTImageProcessorPil(size={"height": 16, "width": 16}),
                                               tokenizer=fresh_tokenizer())  # fmt: skip
    export(model, str(tmp_path), processor)
    no_code_files(tmp_path)
    labels = ["a photo of a cat", "a photo of a dog", "a red car"]
    logits = []
    for seed in range(4):
        inputs = processor(text=labels, images=Image.open(picture(tmp_path / f"{seed}.png", seed)), return_tensors="pt", padding=True)
        with torch.no_grad():
            image = torch.nn.functional.normalize(model.get_image_features(pixel_values=inputs["pixel_values"]), dim=-1)
            text = torch.nn.functional.normalize(model.get_text_features(**{k: v for k, v in inputs.items() if k != "pixel_values"}), dim=-1)
        logits.append((model.logit_scale.exp() * image @ text.T)[0])
    code = f"""
import json, torch
from PIL import Image
from transformers import AutoModel, AutoProcessor, pipeline
model = AutoModel.from_pretrained("."); processor = AutoProcessor.from_pretrained(".")
classify = pipeline("zero-shot-image-classification", model=".")
out = {{"type": type(model).__name__, "scale": model.logit_scale.exp().item(), "logits": [], "top": []}}
for seed in range(4):
    image = Image.open(f"{{seed}}.png")
    with torch.no_grad():
        out["logits"].append(model(**processor(text={labels!r}, images=image, return_tensors="pt", padding=True)).logits_per_image[0].tolist())
    out["top"].append(classify(image, candidate_labels={labels!r}, hypothesis_template="{{}}")[0]["label"])
print(json.dumps(out))
"""
    got = isolated_python(code, tmp_path)
    assert got["type"] == "VisionTextDualEncoderModel" and got["scale"] == pytest.approx(33.0, rel=1e-5)
    torch.testing.assert_close(torch.tensor(got["logits"]), torch.stack(logits), rtol=1e-4, atol=1e-4)
    assert got["top"] == [labels[int(row.argmax())] for row in logits]  # the pipeline's top-1 is ours


def test_a_dual_encoder_pooling_otherwise_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportRefused, match=r"text_pooler='mean'.*export_format='hfcontrast'"):
        export(dual(text_pooler="mean"), str(tmp_path))


def test_onnx_equals_torch_and_int8_runs(tmp_path: Path) -> None:
    import onnxruntime

    torch.manual_seed(0)
    text = text_model(pooler="mean").eval()
    written = export_onnx(text, str(tmp_path / "text"), tokenizer(), quantize="int8")
    encoded = tokenizer()(TEXTS, padding=True, return_tensors="np")
    feeds = {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    (hidden,) = onnxruntime.InferenceSession(written[0]).run(["last_hidden_state"], feeds)
    with torch.no_grad():
        want = text.backbone(**{k: torch.tensor(v) for k, v in feeds.items()}).last_hidden_state
    np.testing.assert_allclose(hidden, want.numpy(), rtol=1e-4, atol=1e-4)
    (quantized,) = onnxruntime.InferenceSession(written[1]).run(["last_hidden_state"], feeds)
    assert quantized.shape == hidden.shape and np.isfinite(quantized).all() and not np.allclose(quantized, hidden, atol=1e-6)
    image = ContrastiveVisionModel(vision_config()).eval()
    (path,) = export_onnx(image, str(tmp_path / "image"))
    pixels = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    _, pooled = onnxruntime.InferenceSession(path).run(["last_hidden_state", "pooler_output"], {"pixel_values": pixels})
    with torch.no_grad():
        np.testing.assert_allclose(pooled, image.backbone(pixel_values=torch.tensor(pixels)).pooler_output.numpy(), rtol=1e-4, atol=1e-4)


@PIL_AUTO_IMAGE_PROCESSOR
@pytest.mark.fashion_mnist
def test_pipeline_zero_shot_equals_the_evaluators_on_fashion_mnist(tmp_path: Path, isolated_python: Callable[[str, Path], Any]) -> None:
    """The exported dual encoder through ``pipeline("zero-shot-image-classification")`` predicts, on Fashion-MNIST test
    images, the class hfcontrast's ``ZeroShotEvaluator`` predicts with the same prompt: the same top-1 accuracy."""
    from hfcontrast.demo import load_fashion_mnist
    from hfcontrast.demo.captions import FASHION_MNIST_CLASS_NAMES
    from hfcontrast.evaluation import ZeroShotEvaluator

    torch.manual_seed(3)
    model = dual()
    images = ViTImageProcessorPil(size={"height": 16, "width": 16})
    processor = VisionTextDualEncoderProcessor(image_processor=images, tokenizer=fresh_tokenizer())
    export(model, str(tmp_path), processor)
    rows = load_fashion_mnist("test", max_samples=40)
    for i, row in enumerate(rows):
        row["image"].convert("RGB").save(tmp_path / f"{i}.png")

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        pixels = images(images=[row["image"].convert("RGB") for row in batch], return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.tensor([row["label"] for row in batch])}

    template = "a photo of a {}."
    evaluator = ZeroShotEvaluator(rows, collate_fn=collate, class_names=FASHION_MNIST_CLASS_NAMES, templates=[template],
                                  tokenizer=tokenizer())  # fmt: skip
    ours = evaluator(model)["zeroshot_top1"]
    prompts = [template.format(name) for name in FASHION_MNIST_CLASS_NAMES]
    code = f"""
import json
from PIL import Image
from transformers import pipeline
classify = pipeline("zero-shot-image-classification", model=".")
prompts = {prompts!r}
print(json.dumps([prompts.index(classify(Image.open(f"{{i}}.png"), candidate_labels=prompts, hypothesis_template="{{}}")[0]["label"])
                  for i in range({len(rows)})]))
"""
    predicted = isolated_python(code, tmp_path)
    accuracy = sum(p == row["label"] for p, row in zip(predicted, rows, strict=True)) / len(rows)
    assert accuracy == pytest.approx(ours)
