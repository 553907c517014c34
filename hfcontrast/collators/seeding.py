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


class SeededCollator:
    """The randomness of the augmenting collators: per-row generators ``(seed, epoch, row[, view])`` when
    rows carry their index (exact resume), else one stream per dataloader worker.

    The stream reseeds on its first call in a worker (and whenever the worker's seed changes, i.e. every
    epoch without persistent workers) from ``torch.initial_seed()`` mixed with ``seed``; it is not in
    checkpoints, so a resumed run draws different views than an uninterrupted one.
    """

    seed: int | None

    def _init_randomness(self, seed: int | None) -> None:
        self.seed = seed
        self._epoch = SharedEpoch()
        self.rng = random.Random(seed)
        self._worker_seed: int | None = None

    @property
    def epoch(self) -> int:
        """Epoch used by the per-row seeds, shared with dataloader workers."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Set :attr:`epoch`; persistent dataloader workers see it too."""
        self._epoch.set(epoch)

    def reseed(self, seed: int | None) -> None:
        """Restart the collator's random stream."""
        self._init_randomness(seed)

    def stream_rng(self) -> random.Random:
        """The random stream of this process or dataloader worker."""
        if torch.utils.data.get_worker_info() is None:
            return self.rng
        worker_seed = torch.initial_seed()
        if worker_seed != self._worker_seed:
            self._worker_seed = worker_seed
            base = 0 if self.seed is None else self.seed + 1
            self.rng = random.Random((base << 64) | worker_seed)
        return self.rng


def row_rng(seed: int | None, epoch: int, index: int, *extra: int) -> random.Random:
    """The generator of dataset row ``index`` in ``epoch``, from ``SeedSequence((seed, epoch, index, *extra))``
    (``seed=None`` counts as 0; ``extra`` separates e.g. the views of one row)."""
    entropy = [0 if seed is None else int(seed), int(epoch), int(index), *(int(e) for e in extra)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64)
    return random.Random((int(state[0]) << 64) | int(state[1]))


def with_index_column(dataset: Any, name: str = "row_index") -> Any:
    """Set column ``name`` to each row's position (the per-row augmentation seeds of
    :class:`~hfcontrast.collators.MultiViewCollator`, which make a resumed run exact)."""
    if name in dataset.column_names:
        dataset = dataset.remove_columns(name)
    return dataset.add_column(name, list(range(len(dataset))))


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
