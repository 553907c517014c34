"""Train with an evaluation before and after, the shape every recipe reports."""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import Trainer


def use_all_cpu_cores_when_alone() -> None:
    """A single CPU process may use every core: ``accelerate launch`` without ``--cpu`` sets
    ``OMP_NUM_THREADS=1``, which halves a 2-core demo. Several processes keep their share."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and not torch.cuda.is_available():
        torch.set_num_threads(os.cpu_count() or 1)


def train_with_before_after(trainer: Trainer, **train_kwargs: Any) -> dict[str, float]:
    """Evaluate, train, evaluate; return ``{"before_<metric>": ..., "eval_<metric>": ...}``.

    The run is prepared first (``ContrastiveTrainer.prepare_run``: resume, output folder, row checks),
    so a bad setup fails before the first evaluation. The first evaluation is logged at step 0, so
    curves start at the untrained model. The final one reuses the trainer's own evaluation when
    training ended on an evaluation step.
    """
    prepare = getattr(trainer, "prepare_run", None)
    if callable(prepare):
        prepare(train_kwargs.get("resume_from_checkpoint"))
    before = trainer.evaluate()
    trainer.train(**train_kwargs)
    # train() starts a fresh TrainerState: put the untrained model's evaluation back at step 0.
    trainer.state.log_history.insert(0, {**before, "step": 0})
    step = trainer.state.global_step
    last = next((e for e in reversed(trainer.state.log_history) if any(k.startswith("eval_") for k in e)), None)
    after = last if last is not None and last.get("step") == step and step > 0 else trainer.evaluate()
    results: dict[str, float] = {}
    for key, value in before.items():
        if key.startswith("eval_") and isinstance(value, (int, float)) and not key.endswith(("runtime", "per_second")):
            results["before_" + key[len("eval_") :]] = float(value)
    for key, value in after.items():
        if key.startswith("eval_") and isinstance(value, (int, float)) and not key.endswith(("runtime", "per_second")):
            results[key] = float(value)
    results["train_steps"] = float(step)
    return results
