"""GradCache through ``ContrastiveTrainer`` (``gradcache_chunk_size``): gradient accumulation with dropout,
a training run, chunked evaluation. The uncached reference runs the same chunks (``ChunkedForward``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import datasets
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import SequentialSampler
from transformers import TrainerCallback

from hfcontrast.collators import TextPairCollator
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from hfcontrast.trainer.views import embed_views
from tests.test_gradcache import ChunkedForward, one_forward_per_group, online, sentences, text_batch
from tests.tiny import text_model, tokenizer


class Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.grads: list[dict[str, Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        self.grads.append({n.removeprefix("model."): p.grad.clone() for n, p in model.named_parameters()})


class OrderedTrainer(ContrastiveTrainer):
    """Sequential batches; records what ``training_step`` returns."""

    losses: list[float]

    def _get_train_sampler(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return SequentialSampler(self.train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.losses.append(float(loss))
        return loss


def train_text(tmp_path: Path, *, chunk: int | None, reference_chunk: int | None = None, dtype: torch.dtype,
               same_positive: bool = False, **overrides: Any) -> tuple[OrderedTrainer, Recorder, nn.Module]:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.1).to(dtype)
    objective = SimCSE(0.05, hard_negative_weight=0.3, queue_size=12, encoder=model)
    values: dict[str, Any] = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=2, learning_rate=0.05, optim="sgd",
        lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[], save_strategy="no", logging_steps=1,
        use_cpu=True, seed=0, disable_tqdm=True, dataloader_drop_last=True, gradcache_chunk_size=chunk,
    )
    values.update(overrides)
    n = values["per_device_train_batch_size"] * values["max_steps"] * values.get("gradient_accumulation_steps", 1)
    rows = {"sent0": sentences(n, 0), "sent1": sentences(n, 0 if same_positive else 1), "hard_neg": sentences(n, 2)}
    train = datasets.Dataset.from_dict(rows)
    recorder = Recorder()
    encoder = model if reference_chunk is None else ChunkedForward(model, reference_chunk)
    trainer = OrderedTrainer(
        model=encoder, args=ContrastiveTrainingArguments(**values), objective=objective, train_dataset=train,
        data_collator=TextPairCollator.from_column_names(tokenizer(), train.column_names, max_length=16),
        callbacks=[recorder],
    )
    trainer.losses = []
    if reference_chunk is None:
        trainer.train()
    else:  # the reference embeds each view group in one call of ChunkedForward (the chunks GradCache uses)
        with mock.patch("hfcontrast.trainer.trainer.embed_views", lambda model, views, *_, **__: one_forward_per_group(model, views)):
            trainer.train()
    return trainer, recorder, model


def test_trainer_gradient_accumulation_with_dropout_equals_uncached(tmp_path: Path) -> None:
    """Trainer, gradient accumulation 2, dropout on, a queue: every micro-batch loss, every accumulated
    gradient and the final weights equal the uncached trainer running the same chunks."""
    common = dict(dtype=torch.float64, gradient_accumulation_steps=2)
    cache_trainer, cache_rec, cache_model = train_text(tmp_path / "cache", chunk=5, **common)
    ref_trainer, ref_rec, ref_model = train_text(tmp_path / "ref", chunk=None, reference_chunk=5, **common)
    assert len(cache_trainer.losses) == 4 and cache_trainer.losses == pytest.approx(ref_trainer.losses, rel=1e-10)
    assert len(cache_rec.grads) == 2
    for got, want in zip(cache_rec.grads, ref_rec.grads):
        assert got.keys() == want.keys()
        for name, value in want.items():
            torch.testing.assert_close(got[name], value, rtol=1e-9, atol=1e-10, msg=name)
    for (name, mine), theirs in zip(cache_model.state_dict().items(), ref_model.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-10, msg=name)
    assert "top1" in cache_trainer.state.log_history[0]  # the objective's stats are logged


def test_trainer_gradcache_lowers_the_loss_like_uncached(tmp_path: Path) -> None:
    """fp32, AdamW, 12 steps of 16 rows in chunks of 4 (positive = the anchor sentence, as in unsupervised
    SimCSE, plus a hard negative): the loss falls, along the uncached curve."""
    common: dict[str, Any] = dict(dtype=torch.float32, same_positive=True, per_device_train_batch_size=16, max_steps=12,
                                  learning_rate=1e-3, optim="adamw_torch", lr_scheduler_type="linear")
    cache_trainer, _, _ = train_text(tmp_path / "cache", chunk=4, **common)
    ref_trainer, _, _ = train_text(tmp_path / "ref", chunk=None, reference_chunk=4, **common)
    losses = cache_trainer.losses
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    assert losses == pytest.approx(ref_trainer.losses, rel=1e-3)


def test_evaluation_loss_is_chunked_and_equal(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.1).double().eval()
    objective = SimCSE(0.05)
    batch = text_batch()
    want = objective(embed_views(model, online(objective, batch)), batch).loss
    args = ContrastiveTrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, gradcache_chunk_size=3)
    trainer = ContrastiveTrainer(model=model, args=args, objective=objective)
    loss, _, _ = trainer.prediction_step(model, batch, prediction_loss_only=True)
    assert loss is not None
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
