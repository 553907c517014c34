"""The trainer's side of several datasets in one run (:mod:`hfcontrast.collators.multi_source`): the
single-source batch sampler in the training dataloader, every source's rows checked against its own
collator, and the sampler's state in every checkpoint (``sampler.json``), checked on resume."""

from __future__ import annotations

import json
import os
from typing import Any

from torch.utils.data import DataLoader
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..collators.checks import check_rows
from ..collators.multi_source import MultiSourceCollator, MultiSourceDataset, SingleSourceBatchSampler
from ..distributed import world_size
from .arguments import ContrastiveTrainingArguments

SAMPLER_STATE_NAME = "sampler.json"


def multi_source_sampler(dataset: MultiSourceDataset, args: ContrastiveTrainingArguments) -> SingleSourceBatchSampler:
    """The batch sampler of ``args`` (``multi_dataset_policy``, batch size, seed) over ``dataset``'s sources."""
    return SingleSourceBatchSampler(
        dataset.sizes, args.per_device_train_batch_size, policy=args.multi_dataset_policy,
        temperature=args.multi_dataset_temperature, group=world_size(), seed=args.data_seed or args.seed,
    )  # fmt: skip


def multi_source_dataloader(
    dataset: MultiSourceDataset, collator: Any, args: ContrastiveTrainingArguments, accelerator: Any
) -> tuple[DataLoader, SingleSourceBatchSampler]:
    """``(loader, sampler)``: single-source batches, prepared by accelerate (sharded per process)."""
    sampler = multi_source_sampler(dataset, args)
    loader = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=sampler,
        collate_fn=collator,
        num_workers=args.dataloader_num_workers,
        pin_memory=args.dataloader_pin_memory,
        persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
    )
    return accelerator.prepare(loader), sampler


def check_multi_source_rows(dataset: MultiSourceDataset, collator: Any, **kwargs: Any) -> tuple[MultiSourceDataset, int]:
    """Each source checked against its own collator; errors name the source (its file)."""
    if not isinstance(collator, MultiSourceCollator):
        raise TypeError("a MultiSourceDataset needs a MultiSourceCollator (one collator per source)")
    kept, rejected = {}, 0
    path = kwargs.pop("rejected_path", None)
    for index, (name, source) in enumerate(dataset.sources.items()):
        where = None if path is None else path.replace(".jsonl", f"-{index}.jsonl")  # one file per source
        result = check_rows(source, collator.collators[name], source=name, rejected_path=where, **kwargs)
        kept[name], rejected = result.dataset, rejected + result.rejected
    return MultiSourceDataset(kept), rejected


class SamplerStateCallback(TrainerCallback):
    """Writes the multi-dataset sampler's state (``sampler``, set by the trainer when it builds the
    dataloader) into each checkpoint."""

    def __init__(self) -> None:
        self.sampler: SingleSourceBatchSampler | None = None

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.sampler is None or not state.is_world_process_zero:
            return
        folder = os.path.join(str(args.output_dir), f"checkpoint-{state.global_step}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, SAMPLER_STATE_NAME), "w", encoding="utf-8") as handle:
            json.dump(self.sampler.state_dict(), handle, indent=2)


def check_sampler_on_resume(dataset: MultiSourceDataset, args: ContrastiveTrainingArguments, checkpoint: str) -> None:
    """Refuse a checkpoint whose sampler would draw other batches than this run's."""
    path = os.path.join(checkpoint, SAMPLER_STATE_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{checkpoint} has no {SAMPLER_STATE_NAME}: it is not from a multi-dataset run")
    with open(path, encoding="utf-8") as handle:
        multi_source_sampler(dataset, args).check_resume(json.load(handle))
