"""The Trainer internals ContrastiveTrainer still relies on: if transformers renames or reshapes one, this
fails loudly here instead of quietly in a run. Everything else goes through public hooks (callbacks,
``compute_loss``, ``training_step``, ``save_model``, ``create_model_card``, ``evaluate``, ``train``)."""

from __future__ import annotations

import inspect

import torch
from transformers import Trainer

from hfcontrast.trainer import ContrastiveTrainer


def _params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_prepare_inputs_moves_nested_views_to_the_device() -> None:
    """Private; used by ``prediction_step`` and GradCache to move a batch of named views like Trainer does."""
    assert _params(Trainer._prepare_inputs) == ["self", "inputs"]
    trainer = object.__new__(ContrastiveTrainer)
    trainer.args = type("Args", (), {"device": torch.device("cpu"), "past_index": -1})()  # type: ignore[assignment]
    trainer.is_deepspeed_enabled = False
    batch = {"anchor": {"input_ids": torch.ones(2, 3, dtype=torch.long)}, "ids": torch.arange(2)}
    moved = trainer._prepare_inputs(batch)
    assert torch.equal(moved["anchor"]["input_ids"], batch["anchor"]["input_ids"]) and torch.equal(moved["ids"], batch["ids"])


def test_finish_current_push_takes_no_arguments() -> None:
    """Private; ``push_to_hub`` waits with it for the checkpoint uploads of ``hub_strategy="every_save"``."""
    assert _params(Trainer._finish_current_push) == ["self"]


def test_public_hooks_have_the_signatures_we_override() -> None:
    assert _params(Trainer.evaluation_loop)[1:] == [
        "dataloader", "description", "prediction_loss_only", "ignore_keys", "metric_key_prefix",
    ]  # fmt: skip
    assert _params(Trainer.compute_loss)[1:4] == ["model", "inputs", "return_outputs"]
    assert _params(Trainer.training_step)[1:3] == ["model", "inputs"]
    assert _params(Trainer.save_model)[1:] == ["output_dir", "_internal_call"]
