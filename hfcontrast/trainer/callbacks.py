"""The callback that ties the objective's state to the optimizer step."""

from __future__ import annotations

from typing import Any

from accelerate.utils import extract_model_from_parallel
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..objectives import ContrastiveObjective


class ObjectiveStepCallback(TrainerCallback):
    """After each optimizer step: clear the objective's own gradients (Trainer's ``model.zero_grad()`` reaches
    the model only, so predictors, prototypes and heads would sum their gradients over every step), then let
    the objective update its momentum encoders and flush its queues with the model of the callback event."""

    def __init__(self, objective: ContrastiveObjective) -> None:
        self.objective = objective

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        for param in self.objective.trainable_parameters():
            param.grad = None
        model = extract_model_from_parallel(kwargs["model"])
        self.objective.after_optimizer_step(model, state.global_step, state.max_steps)
