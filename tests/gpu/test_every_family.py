"""Every family on the training device: CUDA in bf16 when a GPU is present, else the CPU in fp32 (so the
suite runs in ``make test`` and cannot rot). For each: the loss falls over a few steps on a small fixed
dataset, every tensor of the objective's state (queues, momentum encoders, centres, prototypes) lives on the
device, and the export reloads with ``AutoModel`` to the same embeddings. On a GPU machine:
``pytest tests/gpu`` (``HFCONTRAST_TEST_DEVICE=cuda`` makes a missing GPU an error)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from torch import nn
from transformers import AutoModel

from hfcontrast import ContrastiveTextModel, ContrastiveTrainer, ContrastiveTrainingArguments
from hfcontrast.augment import ViewPipeline, local_crop_pipeline
from hfcontrast.augment.device_views import DeviceViews
from hfcontrast.collators import ImageTextCollator, MultiViewCollator, RawImageCollator
from hfcontrast.objectives import (
    BYOL,
    CLIP,
    DINO,
    NNCLR,
    PCL,
    InBatchKL,
    MatryoshkaConfig,
    MoCo,
    NegativeConfig,
    SigLIP,
    SimCLR,
    SimCSE,
    SimSiam,
    SwAV,
)  # fmt: skip
from tests.test_objectives_clip import color_rows, tiny_dual
from tests.test_objectives_clip import tokenizer as clip_tokenizer
from tests.test_recipe_image import VIEW, image_rows, tiny_model
from tests.test_trainer_text import sentences
from tests.tiny import text_model, tokenizer

WANTED = os.environ.get("HFCONTRAST_TEST_DEVICE")
DEVICE = torch.device(WANTED or ("cuda" if torch.cuda.is_available() else "cpu"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError("HFCONTRAST_TEST_DEVICE=cuda but torch sees no CUDA device")
pytestmark = pytest.mark.gpu
STEPS = 12
#: Steps before the loss is compared: until a queue or support set is full (32 rows at batch 8, 16 or 8
#: for text and CLIP); DINO's first step, before the teacher's center exists (with center_momentum=0 the
#: center is the batch mean; a slow center raises the loss for many steps as it flattens the teacher).
SETTLE = {"dino": 1, "moco-v2": 4, "nnclr": 4, "pcl": 4, "simcse-queue-momentum": 2, "clip-queue-momentum": 2}


def train(tmp_path: Path, model: nn.Module, objective: Any, rows: Any, settle: int = 0, **kwargs: Any) -> ContrastiveTrainer:
    """``STEPS`` steps of the short path (or of ``data_collator=``); the loss must fall (after the ``settle``
    steps that fill a queue: each new batch of negatives raises it) and the state must be on the device."""
    overrides = kwargs.pop("args", {})
    values: dict[str, Any] = dict(
        output_dir=str(tmp_path / "out"), bf16=DEVICE.type == "cuda", use_cpu=DEVICE.type == "cpu",
        max_steps=STEPS, per_device_train_batch_size=8, learning_rate=3e-3, logging_steps=1, report_to=[],
        save_strategy="no", disable_tqdm=True, dataloader_drop_last=True, seed=0,
    )  # fmt: skip
    trainer = ContrastiveTrainer(model, ContrastiveTrainingArguments(**{**values, **overrides}), objective=objective,
                                 train_dataset=rows, **kwargs)  # fmt: skip
    seen: list[torch.device] = []
    record = trainer.record_stats

    def spy(output: Any) -> None:  # every step's loss and statistics are made on the device
        seen.extend([output.loss.device, *(value.device for value in output.stats.values())])
        record(output)

    trainer.record_stats = spy  # type: ignore[method-assign]
    trainer.train()
    assert seen and all(device.type == DEVICE.type for device in seen), seen
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses))), losses
    assert sum(losses[-3:]) < sum(losses[settle : settle + 3]), f"the loss did not fall: {losses}"
    state = [*objective.named_buffers(), *objective.named_parameters(), *trainer.model.named_parameters()]
    assert state and all(t.device.type == DEVICE.type for _, t in state), [n for n, t in state if t.device != DEVICE]
    return trainer


def reloads(trainer: ContrastiveTrainer, inputs: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """The export (``args.export_format``: standard by default) loads and embeds as the trained model does (in
    fp32): text read back by hfcontrast from the sentence-transformers folder, images through the plain backbone's
    pooled output, image-text through ``VisionTextDualEncoderModel``; the custom format through ``AutoModel``."""
    folder = tmp_path / "export"
    trainer.save_model(str(folder))
    model = trainer.accelerator.unwrap_model(trainer.model).float().eval()
    inputs = {k: v.to(DEVICE) for k, v in inputs.items()}
    kind = model.config.model_type
    with torch.no_grad():
        if trainer.args.export_format == "hfcontrast":
            got, want = AutoModel.from_pretrained(folder).to(DEVICE).eval()(**inputs).embeddings, model(**inputs).embeddings
        elif kind == "hfcontrast-text":
            got, want = ContrastiveTextModel.from_pretrained(str(folder)).to(DEVICE).eval()(**inputs).embeddings, model(**inputs).embeddings
        elif kind == "hfcontrast-vision":
            got, want = AutoModel.from_pretrained(folder).to(DEVICE).eval()(**inputs).pooler_output.flatten(1), model(**inputs).pooled
        else:
            native = AutoModel.from_pretrained(folder).to(DEVICE).eval()
            got, want = native.get_image_features(**inputs).pooler_output, model.get_image_features(**inputs)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def text_inputs() -> dict[str, torch.Tensor]:
    return dict(tokenizer()(["a red cat", "the sea at night"], padding=True, return_tensors="pt"))


def pixels() -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.rand(2, 3, 16, 16)}


# ----------------------------------------------------------------------------- text
TEXT: dict[str, Callable[[nn.Module], Any]] = {
    "simcse-unsupervised": lambda model: SimCSE(0.05),
    "simcse-queue-momentum": lambda model: SimCSE(0.05, queue_size=16, momentum=0.99),
    "simcse-decoupled-matryoshka": lambda model: SimCSE(
        0.05, negatives=NegativeConfig(decoupled=True), matryoshka=MatryoshkaConfig(dims=(16, 8))
    ),
}


@pytest.mark.parametrize("name", sorted(TEXT))
def test_text(tmp_path: Path, name: str) -> None:
    model = text_model(pooler="mean")
    rows = datasets.Dataset.from_dict({"text": sentences(32)})
    objective = TEXT[name](model)
    trainer = train(tmp_path, model, objective, rows, SETTLE.get(name, 0), processing_class=tokenizer())
    if objective.keys is not None:  # the queue is full, on the device
        assert len(objective.keys) == 16 and objective.keys.queue.embeddings.device.type == DEVICE.type
    reloads(trainer, text_inputs(), tmp_path)


def test_simcse_supervised_with_hard_negatives_and_gradcache(tmp_path: Path) -> None:
    texts = sentences(96)
    rows = datasets.Dataset.from_dict({"anchor": texts[:32], "positive": texts[32:64], "negative": texts[64:]})
    model = text_model(pooler="mean")
    trainer = train(tmp_path, model, SimCSE(0.05), rows, processing_class=tokenizer(),
                    args={"gradcache_chunk_size": 4})  # fmt: skip
    reloads(trainer, text_inputs(), tmp_path)


def test_in_batch_distillation_from_a_teacher(tmp_path: Path) -> None:
    torch.manual_seed(1)
    teacher = text_model(pooler="mean", dropout=0.0).to(DEVICE).eval()
    model = text_model(pooler="mean")
    rows = datasets.Dataset.from_dict({"anchor": sentences(32), "positive": sentences(32, seed=1)})
    trainer = train(tmp_path, model, InBatchKL(0.1, teacher=teacher), rows, processing_class=tokenizer())
    reloads(trainer, text_inputs(), tmp_path)


# ----------------------------------------------------------------------------- images
IMAGE: dict[str, Callable[[nn.Module], Any]] = {
    "simclr": lambda model: SimCLR(0.2),
    "moco-v2": lambda model: MoCo(model, queue_size=32),
    "moco-v3": lambda model: MoCo(model, version="v3", predictor_hidden_dim=16),
    "byol": lambda model: BYOL(model, predictor_hidden_dim=16),
    "simsiam": lambda model: SimSiam(encoder=model, predictor_hidden_dim=16),
    "nnclr": lambda model: NNCLR(0.2, support_size=32),
    "pcl": lambda model: PCL(model, num_clusters=(2, 4), num_rows=32, queue_size=32, every_n_steps=4, start_step=2),
}


@pytest.mark.parametrize("name", sorted(IMAGE))
def test_image(tmp_path: Path, name: str) -> None:
    model = tiny_model()
    collator = MultiViewCollator("image", pipeline=ViewPipeline.from_params(VIEW), seed=0, index_column="row_index",
                                 id_column="row_index" if name == "pcl" else None)  # fmt: skip
    trainer = train(tmp_path, model, IMAGE[name](model), image_rows(32), SETTLE.get(name, 0), data_collator=collator)
    reloads(trainer, pixels(), tmp_path)


MULTI_CROP: dict[str, Callable[[nn.Module], Any]] = {
    "swav": lambda model: SwAV(num_prototypes=8, freeze_prototypes_steps=0),
    "dino": lambda model: DINO(model, out_dim=16, hidden_dim=16, bottleneck_dim=8, center_momentum=0.0),
}


@pytest.mark.parametrize("name", sorted(MULTI_CROP))
def test_multi_crop(tmp_path: Path, name: str) -> None:
    model = tiny_model()
    pipeline = ViewPipeline.from_params(VIEW)
    collator = MultiViewCollator.multi_crop([pipeline, pipeline], local_crop_pipeline(pipeline, 8, (0.1, 0.4)), 2,
                                            "image", seed=0, index_column="row_index")  # fmt: skip
    trainer = train(tmp_path, model, MULTI_CROP[name](model), image_rows(32), SETTLE.get(name, 0), data_collator=collator)
    reloads(trainer, pixels(), tmp_path)


def test_simclr_with_views_drawn_on_the_device(tmp_path: Path) -> None:
    """kornia draws the views of a raw batch on the training device (``--augmentation_device``)."""
    model = tiny_model()
    views = DeviceViews([ViewPipeline.from_params(VIEW)] * 2, seed=0)
    trainer = train(tmp_path, model, SimCLR(0.2), image_rows(32), data_collator=RawImageCollator("image", 16),
                    device_views=views)  # fmt: skip
    reloads(trainer, pixels(), tmp_path)


# ----------------------------------------------------------------------------- image-text
@pytest.mark.parametrize("name", ["clip-queue-momentum", "siglip"])
def test_image_text(tmp_path: Path, name: str) -> None:
    # SigLIP's logit bias has no place in VisionTextDualEncoderModel: its run exports hfcontrast's own format.
    model = tiny_dual(**({"logit_bias_init_value": -5.0} if name == "siglip" else {"text_pooler": "pooler_output",
                                                                                  "vision_pooler": "pooler_output"}))
    # The queue holds earlier keys of the same four rows: masked by id, as false negatives.
    negatives = NegativeConfig(mask_duplicates=True)
    objective = CLIP(model, queue_size=8, momentum=0.9, negatives=negatives) if name != "siglip" else SigLIP(model)
    collator = ImageTextCollator(ViewPipeline.from_params(VIEW), clip_tokenizer(), index_column="idx", id_column="idx")
    rows = datasets.Dataset.from_list(color_rows(1, index=True))
    trainer = train(tmp_path, model, objective, rows, SETTLE.get(name, 0), data_collator=collator,
                    args={"per_device_train_batch_size": 4,
                          **({"export_format": "hfcontrast"} if name == "siglip" else {"learning_rate": 1e-3})})  # fmt: skip
    if name != "siglip":
        assert objective.image_queue is not None and objective.image_queue.queue.embeddings.device.type == DEVICE.type
    reloads(trainer, pixels(), tmp_path)
