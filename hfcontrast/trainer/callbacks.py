"""Callbacks that tie the objective's state to the optimizer step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..distributed import all_reduce_mean, is_distributed

if TYPE_CHECKING:
    from .trainer import ContrastiveTrainer


class ObjectiveStepCallback(TrainerCallback):
    """Before each optimizer step: average the objective's own gradients over processes (DDP only
    wraps the model). After it: clear those gradients and let the objective update momentum encoders and
    flush queues."""

    def __init__(self, trainer: ContrastiveTrainer) -> None:
        self.trainer = trainer

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not is_distributed():
            return
        for param in self.trainer.objective.trainable_parameters():
            # Every rank joins the all-reduce, also one whose loss did not reach this parameter.
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            param.grad = all_reduce_mean(grad)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # Trainer zeroes the model's gradients only (``model.zero_grad()``): without this the objective's
        # own parameters (predictors, prototypes, heads) would sum their gradients over every step.
        for param in self.trainer.objective.trainable_parameters():
            param.grad = None
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        self.trainer.objective.after_optimizer_step(model, state.global_step, state.max_steps)
