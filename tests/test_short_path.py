"""The short path, ``ContrastiveTrainer(model=..., objective=..., train_dataset=..., processing_class=...)``,
against the explicit one (objective built with ``encoder=model``, the collator built by hand, the epoch
callback added by hand): bit-identical losses and weights over 10 steps for SimCSE, SimCLR, MoCo v2, CLIP and
a GradCache run; new views every epoch and the same views after a resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import SequentialSampler
from transformers import BertConfig, ViTConfig

from hfcontrast import (
    CLIP,
    PCL,
    ContrastiveDualEncoder,
    ContrastiveDualEncoderConfig,
    ContrastiveTrainer,
    ContrastiveTrainingArguments,
    ContrastiveVisionConfig,
    ContrastiveVisionModel,
    MoCo,
    SimCLR,
    SimCSE,
)
from hfcontrast.augment import IMAGENET_MEAN, IMAGENET_STD, eval_pipeline, view_pipelines
from hfcontrast.collators import (
    CollatorEpochCallback,
    ImageTextCollator,
    MultiViewCollator,
    TextPairCollator,
    with_index_column,
)
from hfcontrast.objectives import ClusterRefreshCallback
from hfcontrast.trainer.defaults import CAPTION_MAX_LENGTH, INDEX_COLUMN, TEXT_MAX_LENGTH
from tests.test_gradcache import sentences
from tests.tiny import text_model, tokenizer

STEPS, BATCH, SIZE = 10, 4, 16


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)) for _ in range(n)]


def vit_model() -> ContrastiveVisionModel:
    backbone = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)  # fmt: skip
    return ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=backbone, projection="linear", projection_dim=8))


def _dual(vision: Any, text: Any) -> ContrastiveDualEncoder:
    return ContrastiveDualEncoder(ContrastiveDualEncoderConfig(vision_config=vision, text_config=text, projection_dim=8))


class Recorded(ContrastiveTrainer):
    """Sequential batches; keeps each training batch's views."""

    batches: list[dict[str, Any]]

    def _get_train_sampler(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        if model.training:
            self.batches.append({k: {n: t.clone() for n, t in v.items()} for k, v in inputs.items() if isinstance(v, dict)})
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def run(tmp_path: Path, model: nn.Module, objective: Any, train: Any, **kwargs: Any) -> tuple[list[float], dict[str, Tensor], Recorded]:
    overrides = kwargs.pop("args", {})
    args = ContrastiveTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH, max_steps=STEPS, learning_rate=1e-2,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_drop_last=True, **overrides,
    )  # fmt: skip
    trainer = Recorded(model=model, args=args, objective=objective, train_dataset=train, **kwargs)
    trainer.batches = []
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, {k: v.clone() for k, v in model.state_dict().items()}, trainer


def assert_identical(short: tuple[list[float], dict[str, Tensor], Recorded], explicit: tuple[list[float], dict[str, Tensor], Recorded]) -> None:
    assert len(short[0]) == STEPS and short[0] == explicit[0]  # exact: the same floats
    assert short[1].keys() == explicit[1].keys()
    for name, value in explicit[1].items():
        assert torch.equal(short[1][name], value), name


def text_rows(columns: int) -> datasets.Dataset:
    names = ("sent0", "sent1", "hard_neg")[:columns] if columns > 1 else ("text",)
    return datasets.Dataset.from_dict({name: sentences(STEPS * BATCH, seed) for seed, name in enumerate(names)})


@pytest.mark.parametrize("columns", [1, 2, 3], ids=["unsupervised", "pairs", "triplets"])
def test_simcse_short_path_equals_the_explicit_one(tmp_path: Path, columns: int) -> None:
    def build(short: bool) -> Any:
        torch.manual_seed(0)
        model = text_model(pooler="mean")
        rows = text_rows(columns)
        if short:
            return run(tmp_path / "short", model, SimCSE(0.05, queue_size=8), rows, processing_class=tokenizer())
        names = rows.column_names
        anchor, positive, negatives = (names[0], names[0] if columns == 1 else names[1], tuple(names[2:]))
        collator = TextPairCollator(tokenizer(), anchor, positive, negatives, max_length=TEXT_MAX_LENGTH)
        return run(tmp_path / "explicit", model, SimCSE(0.05, queue_size=8, encoder=model), rows, data_collator=collator,
                   processing_class=tokenizer())  # fmt: skip

    assert_identical(build(True), build(False))


def test_gradcache_short_path_equals_the_explicit_one(tmp_path: Path) -> None:
    def build(short: bool) -> Any:
        torch.manual_seed(0)
        model = text_model(pooler="mean")
        rows, gradcache = text_rows(3), {"args": {"gradcache_chunk_size": 2}}
        if short:
            return run(tmp_path / "short", model, SimCSE(0.05), rows, processing_class=tokenizer(), **gradcache)
        collator = TextPairCollator(tokenizer(), "sent0", "sent1", ("hard_neg",), max_length=TEXT_MAX_LENGTH)
        return run(tmp_path / "explicit", model, SimCSE(0.05, encoder=model), rows, data_collator=collator, **gradcache)

    assert_identical(build(True), build(False))


@pytest.mark.parametrize(("method", "make"), [("simclr", lambda m: SimCLR(0.2)), ("mocov2", None)], ids=["simclr", "mocov2"])
def test_image_short_path_equals_the_explicit_one(tmp_path: Path, method: str, make: Callable[[Any], Any] | None) -> None:
    def build(short: bool) -> Any:
        torch.manual_seed(0)
        model = vit_model()
        objective = make(model) if make is not None else (MoCo(queue_size=16) if short else MoCo(model, queue_size=16))
        rows = datasets.Dataset.from_dict({"image": images(STEPS * BATCH)})
        if short:
            return run(tmp_path / "short", model, objective, rows)
        collator = MultiViewCollator(
            "image", pipeline=view_pipelines(method, SIZE, IMAGENET_MEAN, IMAGENET_STD), seed=0, index_column=INDEX_COLUMN,
            eval_pipeline=eval_pipeline(SIZE, IMAGENET_MEAN, IMAGENET_STD, resize_size=SIZE),
        )  # fmt: skip
        return run(tmp_path / "explicit", model, objective, with_index_column(rows, INDEX_COLUMN), data_collator=collator,
                   callbacks=[CollatorEpochCallback(collator)])  # fmt: skip

    assert_identical(build(True), build(False))


def test_clip_short_path_equals_the_explicit_one(tmp_path: Path) -> None:
    def build(short: bool) -> Any:
        torch.manual_seed(0)
        model = _dual(*_configs())
        rows = datasets.Dataset.from_dict({"image": images(STEPS * BATCH), "caption": sentences(STEPS * BATCH, 0)})
        if short:
            return run(tmp_path / "short", model, CLIP(queue_size=8), rows, processing_class=tokenizer())
        view = eval_pipeline(SIZE, (0.5,) * 3, (0.5,) * 3, resize_size=SIZE)
        collator = ImageTextCollator(view, tokenizer(), image_column="image", caption_column="caption", seed=0,
                                     index_column=INDEX_COLUMN, max_length=CAPTION_MAX_LENGTH)  # fmt: skip
        return run(tmp_path / "explicit", model, CLIP(model, queue_size=8), with_index_column(rows, INDEX_COLUMN),
                   data_collator=collator, callbacks=[CollatorEpochCallback(collator)])  # fmt: skip

    assert_identical(build(True), build(False))


def _configs() -> tuple[ViTConfig, BertConfig]:
    vision = ViTConfig(image_size=SIZE, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    text = BertConfig(vocab_size=tokenizer().vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    return vision, text


def test_views_change_every_epoch_and_repeat_after_a_resume(tmp_path: Path) -> None:
    """2 epochs of 2 steps through the short path: epoch 2 draws other views of the same rows (the trainer added
    the epoch callback), and a run resumed from the end of epoch 1 draws exactly the uninterrupted run's."""
    rows = datasets.Dataset.from_dict({"image": images(2 * BATCH)})

    def views(out: Path, resume: str | None = None) -> list[Tensor]:
        torch.manual_seed(0)
        model = vit_model()
        args = ContrastiveTrainingArguments(
            output_dir=str(out), per_device_train_batch_size=BATCH, num_train_epochs=2, learning_rate=1e-2,
            report_to=[], save_strategy="steps", save_steps=2, use_cpu=True, seed=0, disable_tqdm=True,
        )  # fmt: skip
        trainer = Recorded(model=model, args=args, objective=SimCLR(0.2), train_dataset=rows)
        assert any(isinstance(cb, CollatorEpochCallback) for cb in trainer.callback_handler.callbacks)
        trainer.batches = []
        trainer.train(resume_from_checkpoint=resume)
        return [batch["query"]["pixel_values"] for batch in trainer.batches]

    straight = views(tmp_path / "straight")
    assert len(straight) == 4
    for first, second in zip(straight[:2], straight[2:]):
        assert not torch.equal(first, second)  # same rows (sequential batches), other epoch: other views
    resumed = views(tmp_path / "resumed", str(tmp_path / "straight" / "checkpoint-2"))
    assert len(resumed) == 2
    for got, want in zip(resumed, straight[2:]):
        assert torch.equal(got, want)


def test_short_path_adds_pcls_cluster_refresh_over_the_checked_rows(tmp_path: Path) -> None:
    """The objective's declared callback (PCL's refresh) is added by the trainer and runs: the clusters exist after
    training. A row check that drops rows is refused for PCL, whose clusters are looked up by row index."""

    def trainer(rows: Any, out: Path, **overrides: Any) -> ContrastiveTrainer:
        torch.manual_seed(0)
        args = ContrastiveTrainingArguments(
            output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=3, learning_rate=1e-2, report_to=[],
            save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True, **overrides,
        )  # fmt: skip
        return ContrastiveTrainer(model=vit_model(), args=args, objective=PCL(num_clusters=(2, 3), every_n_steps=2, start_step=1,
                                                                               queue_size=8), train_dataset=rows)  # fmt: skip

    good = trainer(datasets.Dataset.from_dict({"image": images(4 * BATCH)}), tmp_path / "good")
    good.train()
    assert sum(isinstance(cb, ClusterRefreshCallback) for cb in good.callback_handler.callbacks) == 1
    objective = good.objective
    assert isinstance(objective, PCL) and int(objective.clustered_at) == 1 and bool((objective.assignments >= 0).all())
    bad_rows = datasets.Dataset.from_dict({"image": [*images(4 * BATCH - 1), b"not an image"]})
    with pytest.raises(ValueError, match=r"PCL looks each row up by its index, but bad_rows='skip' dropped 1 of 16 rows"):
        trainer(bad_rows, tmp_path / "bad", bad_rows="skip").train()
