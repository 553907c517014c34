"""Refresh a clustering objective (:class:`~hfcontrast.objectives.PCL`) from momentum-encoder features of
every training row, at the start of each epoch or every N optimizer steps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..distributed import gather_detached, rank, world_size

logger = logging.getLogger(__name__)


class Clustered(Protocol):
    """What the callback needs of an objective: its momentum encoder, row count and clustering state."""

    @property
    def key_encoder(self) -> nn.Module: ...

    @property
    def clustered_step(self) -> int: ...

    @property
    def num_rows(self) -> int: ...

    def set_clusters(self, features: Tensor, step: int) -> None: ...


def interleaved(gathered: Tensor, rows: int, processes: int) -> Tensor:
    """Undo the strided sharding: process ``r`` embedded rows ``r, r + W, ...`` and the gather put its
    block ``r``-th."""
    out = gathered.new_empty((rows, *gathered.shape[1:]))
    start = 0
    for process in range(processes):
        count = len(range(process, rows, processes))
        out[process::processes] = gathered[start : start + count]
        start += count
    return out


class ClusterRefreshCallback(TrainerCallback):
    """Before optimizer step ``s``: when a refresh is due (each epoch's first step, or every
    ``every_n_steps`` from ``start_step``) and the objective's clusters are older, embed every row of
    ``dataset`` (deterministic eval view from ``collate_fn``) with the objective's momentum encoder in
    eval mode, each process a strided share gathered in row order, and call ``objective.set_clusters``.
    A resumed run finds the clusters of its refresh in the checkpoint and does not recompute them."""

    def __init__(
        self,
        objective: Clustered,
        dataset: Sequence[Any],
        collate_fn: Callable[[list[Any]], dict[str, Any]],
        *,
        every_n_steps: int | None = None,
        start_step: int = 0,
        batch_size: int = 512,
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 (None: every epoch), got {every_n_steps}")
        if len(dataset) != objective.num_rows:
            raise ValueError(f"the objective clusters {objective.num_rows} rows, the dataset has {len(dataset)}")
        self.objective, self.dataset, self.collate_fn = objective, dataset, collate_fn
        self.every_n_steps, self.start_step, self.batch_size = every_n_steps, start_step, batch_size
        self.steps_per_epoch: int | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        loader = kwargs.get("train_dataloader")
        if self.every_n_steps is None:
            if loader is None or not hasattr(loader, "__len__"):
                raise ValueError("per-epoch clustering needs a sized train dataloader: pass every_n_steps")
            self.steps_per_epoch = max(len(loader) // args.gradient_accumulation_steps, 1)

    def due_step(self, step: int) -> int | None:
        """The step of the latest refresh at or before ``step`` (``None`` before ``start_step``)."""
        period = self.every_n_steps or self.steps_per_epoch
        if step < self.start_step or period is None:
            return None
        return self.start_step + (step - self.start_step) // period * period

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        due = self.due_step(state.global_step)
        if due is None or self.objective.clustered_step == due:
            return
        logger.info("clustering %d rows with the momentum encoder (step %d)", self.objective.num_rows, due)
        features = self.features(show_progress=not args.disable_tqdm, num_workers=args.dataloader_num_workers)
        self.objective.set_clusters(features, due)

    @torch.no_grad()
    def features(self, show_progress: bool = False, num_workers: int = 0) -> Tensor:
        """Momentum-encoder embeddings ``[num_rows, D]`` of every row, in dataset order, on every process."""
        encoder = self.objective.key_encoder
        device = next(encoder.parameters()).device
        shard = list(range(rank(), len(self.dataset), world_size()))
        loader: DataLoader[Any] = DataLoader(
            Subset(cast(Any, self.dataset), shard), batch_size=self.batch_size, collate_fn=self.collate_fn, num_workers=num_workers
        )
        was_training = encoder.training
        encoder.eval()
        parts = []
        for batch in tqdm(loader, desc="clustering features", disable=not show_progress or rank() != 0):
            inputs = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "ids")}
            parts.append(encoder(inputs).float())
        encoder.train(was_training)
        mine = torch.cat(parts) if parts else torch.zeros(0, 1, device=device)
        return interleaved(gather_detached(mine).to(device), len(self.dataset), world_size())
