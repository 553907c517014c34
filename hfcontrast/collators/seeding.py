"""Per-row random streams for collators: what makes a resumed run draw the same augmentations.

A collator with one running ``random.Random`` cannot be resumed exactly: its state is not in the
checkpoint, and even if it were, the dataloader prefetches batches ahead of the optimizer step (and
workers hold copies), so the state at a checkpoint is not the state of the next step's batch. Instead,
each row draws from its own generator seeded by ``(seed, epoch, dataset index[, view])``: a row's
augmentation then depends on nothing else -- not on batch composition, worker count, prefetching or
what was skipped on resume. The dataset index comes from a column added once
(``dataset.map(lambda _, i: {"idx": i}, with_indices=True)``); the epoch from
:class:`CollatorEpochCallback`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .validation import CollatorInputError, require_column


class SharedEpoch:
    """The epoch the per-row seeds use, in shared memory: persistent dataloader workers keep the collator
    they started with, so a plain attribute would stay at its first value in them; this one they read live."""

    def __init__(self) -> None:
        self._value = torch.zeros((), dtype=torch.long).share_memory_()

    def get(self) -> int:
        return int(self._value)

    def set(self, epoch: int) -> None:
        self._value.fill_(int(epoch))


def row_rng(seed: int | None, epoch: int, index: int, *extra: int) -> random.Random:
    """The generator of dataset row ``index`` in ``epoch``, from ``SeedSequence((seed, epoch, index, *extra))``
    (``seed=None`` counts as 0; ``extra`` separates e.g. the views of one row)."""
    entropy = [0 if seed is None else int(seed), int(epoch), int(index), *(int(e) for e in extra)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)
    return random.Random((int(state[0]) << 64) | int(state[1]))


def row_index(row: Mapping[str, Any], column: str, position: int) -> int:
    """The non-negative integer dataset index held in ``row[column]`` (error names row and column)."""
    value = require_column(row, column, position)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise CollatorInputError(
            f"row {position}, column {column!r}: expected a non-negative integer index, got {value!r}"
        )
    return int(value)


class CollatorEpochCallback(TrainerCallback):
    """Tell a collator with ``set_epoch`` which epoch starts (also the resumed one), before its dataloader
    iterator (and its workers) are created."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.collator.set_epoch(math.floor(state.epoch or 0.0))
