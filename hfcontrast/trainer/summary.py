"""The :class:`~hfcontrast.hub.RunSummary` of a run, built by the trainer from what it ran: the objective,
the arguments, the devices and precision, the evaluation results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from torch import nn
from transformers import TrainerState

from ..hub import RunSummary
from ..memory import EmbeddingQueue
from ..objectives import ContrastiveObjective
from .arguments import ContrastiveTrainingArguments

#: The model card family of each objective modality.
FAMILIES = {"text": "text", "image": "vision", "image_text": "dual"}


class Run(Protocol):
    """What the summary reads of a :class:`~hfcontrast.trainer.ContrastiveTrainer`."""

    args: ContrastiveTrainingArguments
    objective: ContrastiveObjective
    accelerator: Accelerator
    model: nn.Module | None
    state: TrainerState
    rejected_rows: int

    @property
    def hub_model_id(self) -> str | None: ...


def hardware(trainer: Run) -> str:
    """``"2 x NVIDIA H200, bf16 mixed precision"``: the devices and the precision the run used (accelerate's
    mixed precision, not the flags asked for)."""
    device = trainer.args.device
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.get_num_threads()} threads)" if device.type == "cpu" else device.type.upper()
    used = str(trainer.accelerator.mixed_precision)
    precision = "fp32" if used == "no" else f"{used} mixed precision"
    return f"{int(trainer.args.world_size or 1)} x {name}, {precision}"


def setup_rows(trainer: Run, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The card's set-up rows: temperature, global batch size, queue size, steps, optimisation, hardware."""
    args, objective = trainer.args, trainer.objective
    per_device, processes = int(args.per_device_train_batch_size), int(args.world_size or 1)
    accumulation = int(args.gradient_accumulation_steps or 1)
    temperature = hyperparameters.get("temperature", getattr(objective, "temperature", None))
    model = trainer.accelerator.unwrap_model(trainer.model)
    if temperature is None and isinstance(getattr(model, "logit_scale", None), torch.Tensor):
        temperature = f"{float(1.0 / model.logit_scale.exp()):.4g} (learned: 1 / exp(logit_scale))"
    queues = [int(m.size) for m in objective.modules() if isinstance(m, EmbeddingQueue)]
    scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    return {
        "Temperature": temperature,
        "Global batch size": f"{per_device * processes * accumulation} (= {per_device} per device x "
        f"{processes} processes x {accumulation} gradient accumulation steps)",
        "In-batch candidates per step": f"{per_device * processes} (embeddings gathered across processes)",
        "Queue size": hyperparameters.get("queue_size", max(queues, default=0)),
        "Training steps": int(trainer.state.global_step),
        "Learning rate": f"{args.learning_rate:g} ({scheduler} schedule)",
        "Optimizer": getattr(args.optim, "value", args.optim),
        "Weight decay": args.weight_decay,
        "Seed": args.seed,
        "Hardware": hardware(trainer),
        "Rows left out": (
            f"{trainer.rejected_rows} unusable training rows (bad_rows='skip'), listed in rejected_rows.jsonl"
            if trainer.rejected_rows
            else None
        ),
    }


def _objective_settings(objective: Any) -> dict[str, Any]:
    """The objective's plain settings (numbers, strings, flags), for a card written without a recipe."""
    return {
        name: value
        for name, value in vars(objective).items()
        if not name.startswith("_") and name != "training" and isinstance(value, int | float | str | bool)
    }


def _logged_results(trainer: Run) -> dict[str, Any]:
    """``eval_results.json`` of the output folder, else the last logged evaluation."""
    path = Path(str(trainer.args.output_dir)) / "eval_results.json"
    if path.is_file():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    logged = [entry for entry in trainer.state.log_history if any(k.startswith("eval_") for k in entry)]
    return dict(logged[-1]) if logged else {}


def run_summary(
    trainer: Run,
    *,
    method: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, Any] | None = None,
    train_dataset_name: str | None = None,
    base_model: str | None = None,
    **card_kwargs: Any,
) -> RunSummary:
    """The run's summary; what is not given comes from the objective (its name and settings) and from the
    output folder's ``eval_results.json``. ``card_kwargs``: ``eval_datasets``, ``eval_splits``, ``license``,
    ``language``, or ``Trainer.create_model_card``'s keywords (``dataset``, ``finetuned_from``, ...)."""
    objective = trainer.objective
    dataset = card_kwargs.pop("dataset", None)
    base_model = base_model or card_kwargs.pop("finetuned_from", None)
    kept: dict[str, Any] = {key: card_kwargs[key] for key in ("eval_datasets", "eval_splits", "license", "language") if key in card_kwargs}
    hyperparameters = dict(hyperparameters) if hyperparameters is not None else _objective_settings(objective)
    config = getattr(trainer.accelerator.unwrap_model(trainer.model), "config", None)
    family = FAMILIES[objective.modality]
    width = getattr(config, "projection_dim" if family == "dual" else "hidden_size", None)
    return RunSummary(
        family=family,
        method=method or type(objective).__name__,
        tag=objective.tag,
        output_dir=str(trainer.args.output_dir),
        hyperparameters=hyperparameters,
        eval_results=dict(eval_results) if eval_results is not None else _logged_results(trainer),
        train_dataset_name=train_dataset_name or (dataset[0] if isinstance(dataset, list) and dataset else dataset),
        base_model=base_model,
        repo_id=trainer.hub_model_id or trainer.args.hub_model_id,
        embedding_dim=width if isinstance(width, int) else None,
        setup=setup_rows(trainer, hyperparameters),
        card_kwargs=kept,
        export_format=trainer.args.export_format,
        model_details=text_details(config) if family == "text" else {},
    )


def text_details(config: Any) -> dict[str, Any]:
    """What a text card's snippets say of the model: its pooling, whether a ``Dense`` head and ``Normalize``
    follow, whether it was trained with prompts."""
    return {
        "pooler": getattr(config, "pooler", "mean"),
        "has_dense": bool(getattr(config, "mlp_head", False) and not getattr(config, "mlp_only_train", False)),
        "normalize": bool(getattr(config, "normalize", False)),
        "has_prompts": bool(getattr(config, "prompts", None)),
    }
