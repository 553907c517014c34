"""Checkpoints of a contrastive run: the objective's state beside Trainer's, and which checkpoint to resume.

Trainer saves the model, optimizer, scheduler, RNG and trainer state in ``checkpoint-<step>``; the
objective's state (queues, momentum encoders, predictors, prototypes) goes into the same folder as
``objective.safetensors`` through the public ``on_save`` callback. A resumed run loads both, so it
continues exactly; the exported model never holds the objective's state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

OBJECTIVE_STATE_NAME = "objective.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
#: ``--resume_from_checkpoint`` values that mean "the newest complete checkpoint in output_dir".
LATEST = ("latest", "last", "true", "yes")
_STEP = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def has_state(objective: nn.Module) -> bool:
    """True when the objective holds anything a checkpoint must carry."""
    return any(True for _ in objective.state_dict())


def checkpoint_folders(output_dir: str | os.PathLike[str]) -> list[Path]:
    """``checkpoint-<step>`` folders of ``output_dir``, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [path for _, path in sorted(found)]


def missing_files(folder: Path, needs_objective_state: bool) -> list[str]:
    """What a checkpoint folder lacks to resume from (Trainer's state; the objective's, if it has one)."""
    names = [TRAINER_STATE_NAME] + ([OBJECTIVE_STATE_NAME] if needs_objective_state else [])
    return [name for name in names if not (folder / name).is_file()]


def resolve_resume(value: str | bool | None, output_dir: str, needs_objective_state: bool) -> str | None:
    """The checkpoint folder ``--resume_from_checkpoint value`` names, or ``None`` (no resume).

    ``latest`` (or ``True``): the newest *complete* checkpoint of ``output_dir`` (one written to the end:
    a run killed while saving leaves an incomplete folder, which is skipped with a warning). A path
    must exist and be complete. Anything else is an error naming the value.
    """
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in LATEST):
        folders = checkpoint_folders(output_dir)
        for folder in reversed(folders):
            if not missing_files(folder, needs_objective_state):
                return str(folder)
        detail = f"; incomplete: {[f.name for f in folders]}" if folders else ""
        raise FileNotFoundError(
            f"resume_from_checkpoint {value}: no complete checkpoint in {output_dir}{detail}"
        )
    folder = Path(str(value))
    if not folder.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint {value}: no such checkpoint folder")
    missing = missing_files(folder, needs_objective_state)
    if missing:
        what = (
            "; the objective's state (queue, momentum encoder) cannot be restored, so the resumed run "
            "would not continue exactly"
            if OBJECTIVE_STATE_NAME in missing
            else ""
        )
        raise FileNotFoundError(f"resume_from_checkpoint {value}: the checkpoint has no {', '.join(missing)}{what}")
    return str(folder)


def save_objective_state(objective: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Write ``objective.state_dict()`` to ``folder/objective.safetensors`` (atomically: a kill leaves
    either the old file or none, never half of one)."""
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in objective.state_dict().items()}
    path = Path(folder) / OBJECTIVE_STATE_NAME
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial))
    os.replace(partial, path)


def _shape_problem(name: str, saved: tuple[int, ...], current: tuple[int, ...]) -> str:
    if name.endswith("queue.embeddings") and saved[1:] == current[1:]:
        return f"the queue {name.rsplit('.queue', 1)[0]!r} holds {saved[0]} keys in the checkpoint but {current[0]} in this run (queue_size {saved[0]} then, {current[0]} now)"
    if name.endswith("queue.embeddings"):
        return f"the queue {name.rsplit('.queue', 1)[0]!r} stores {saved[1]}-d keys in the checkpoint but {current[1]}-d in this run (a different model width)"
    return f"{name!r} has shape {list(saved)} in the checkpoint but {list(current)} in this run"


def load_objective_state(objective: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Load ``folder/objective.safetensors`` into ``objective`` (on whatever device it lives).

    The file is read on the CPU and copied into the objective's tensors, so no device string (``cpu:0``
    of a multi-process CPU run, ``cuda:3``) reaches safetensors. A changed queue size, width or set of
    state entries is an error that names both sides.
    """
    path = Path(folder) / OBJECTIVE_STATE_NAME
    saved = load_file(str(path), device="cpu")
    current = objective.state_dict()
    problems = [
        _shape_problem(name, tuple(saved[name].shape), tuple(tensor.shape))
        for name, tensor in current.items()
        if name in saved and tuple(saved[name].shape) != tuple(tensor.shape)
    ]
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    if missing:
        problems.append(f"this run's objective has state the checkpoint lacks: {missing[:8]}")
    if unexpected:
        problems.append(f"the checkpoint has state this run's objective lacks: {unexpected[:8]}")
    if problems:
        raise ValueError(
            f"{path} does not fit this run's objective ({type(objective).__name__}): " + "; ".join(problems)
            + ". Resume with the settings of the run that wrote it."
        )
    objective.load_state_dict(saved, strict=True)


class ObjectiveCheckpointCallback(TrainerCallback):
    """Adds ``objective.safetensors`` to every checkpoint Trainer writes (``on_save``, a public hook)."""

    def __init__(self, objective: nn.Module) -> None:
        self.objective = objective

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not args.should_save:
            return
        folder = Path(str(args.output_dir)) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if folder.is_dir():
            save_objective_state(self.objective, folder)


def reload_converted_weights(model: nn.Module, checkpoint: str) -> None:
    """Load a checkpoint's weights through ``from_pretrained``'s key conversion, when it needs one.

    Trainer reloads a checkpoint with a plain non-strict ``load_state_dict``. Recent transformers save
    some backbones (ViT, ...) under legacy parameter names that only ``from_pretrained`` maps back, so
    those weights would silently keep their values. When the saved names differ from the model's, the
    weights are reloaded strictly through ``from_pretrained``; otherwise nothing is built twice.
    """
    from transformers import PreTrainedModel

    weights = os.path.join(checkpoint, "model.safetensors")
    if not isinstance(model, PreTrainedModel) or not os.path.isfile(weights):
        return
    with safe_open(weights, framework="pt") as handle:
        saved = set(handle.keys())
    if saved == set(model.state_dict()):
        return
    reloaded = type(model).from_pretrained(checkpoint)
    model.load_state_dict(reloaded.state_dict(), strict=True)
