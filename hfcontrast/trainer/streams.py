"""The trainer's side of streamed rows (:mod:`hfcontrast.collators.streams`): a dataloader that keeps each
process's share as the stream split it, the rows checked with the collator's spec as they arrive, and each
process's stream state in every checkpoint (``stream_state-<rank>.pt``: the shuffle buffer's rows may hold images), loaded on resume instead of skipping
batches."""

from __future__ import annotations

import os
from typing import Any, TypeGuard

import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..collators.checks import BadRowsError
from ..collators.stream_mix import MixedStreams
from ..collators.streams import StreamedRows
from ..distributed import rank, world_size


def stream_state_name(process: int) -> str:
    return f"stream_state-{process}.pt"


def is_stream(dataset: Any) -> TypeGuard[StreamedRows | MixedStreams]:
    """A stream (:class:`StreamedRows`) or several mixed (:class:`MixedStreams`)."""
    return isinstance(dataset, StreamedRows | MixedStreams)


def bind_stream(stream: StreamedRows | MixedStreams, collator: Any, args: Any, rejected_path: str) -> None:
    """Give ``stream`` the run's settings: this process's share, the per-device batch, the collator's row spec and
    the ``bad_rows`` policy (a mix: each source those of its own collator). A stream has no length, so the run needs
    ``max_steps``; its state lives in the main process's loader, so the loader has no worker processes."""
    if args.max_steps is None or args.max_steps <= 0:
        raise ValueError("a streamed dataset has no length, so the run cannot count its epochs: set max_steps "
                         "(--max_steps) to the number of optimizer steps to train")  # fmt: skip
    if args.dataloader_num_workers:
        raise ValueError("a streamed dataset keeps its resumable state in the main process: set "
                         "dataloader_num_workers=0 (the stream's rows are read as they are needed)")  # fmt: skip
    if isinstance(stream, MixedStreams):
        collators = getattr(collator, "collators", None)
        if not isinstance(collators, dict) or set(collators) != set(stream.names):
            raise TypeError("mixed streams need a MultiSourceCollator with one collator per stream, by the same names")
        for index, (name, source) in enumerate(stream.streams.items()):
            bind_stream(source, collators[name], args, rejected_path.replace(".jsonl", f"-{index}.jsonl"))
        stream.bind(args.per_device_train_batch_size)
        stream.seed = args.data_seed or args.seed
        return
    if args.bad_rows == "unchecked":
        stream.spec = None
    else:
        spec_of = getattr(collator, "row_spec", None)
        if not callable(spec_of):
            raise BadRowsError(f"the collator {type(collator).__name__} has no row_spec(), so the streamed rows cannot be "
                               "checked as they arrive: give it one, or pass bad_rows='unchecked'")  # fmt: skip
        if rank() > 0:  # one file per process
            rejected_path = rejected_path.replace(".jsonl", f"-{rank()}.jsonl")
        stream.spec, stream.policy, stream.rejected_path = spec_of(), args.bad_rows, rejected_path
    stream.process_index, stream.num_processes = rank(), world_size()
    stream.batch_size, stream.seed = args.per_device_train_batch_size, args.data_seed or args.seed


def stream_dataloader(stream: StreamedRows | MixedStreams, collator: Any, args: TrainingArguments) -> DataLoader:
    """Batches of this process's rows. Not prepared by accelerate, which would split the share again; the
    trainer moves each batch to the device. The loader draws its iterators' seeds from a generator of its own, not
    the global one: a resumed run, which starts its iterator after restoring the checkpoint's random state, then
    draws the dropout of the uninterrupted run."""
    generator = torch.Generator().manual_seed(args.seed)
    return StreamLoader(stream, batch_size=args.per_device_train_batch_size, collate_fn=collator, drop_last=True,  # type: ignore[arg-type]
                        pin_memory=args.dataloader_pin_memory, generator=generator)  # fmt: skip


class StreamLoader(DataLoader):  # type: ignore[type-arg]
    """A stream's ``DataLoader``. A pass that resumes a stream where its epoch has less than a batch left (saved after
    the epoch's last whole batch) yields no batch, and the Trainer would take the empty pass for the end of the data;
    the uninterrupted run's loader dropped that remainder and went on with the next epoch, so this pass does too."""

    def __iter__(self) -> Any:
        resuming = getattr(self.dataset, "_resume", None) is not None  # a state loaded, not yet read
        batches = super().__iter__()
        return self._continued(batches) if resuming else batches

    def _continued(self, batches: Any) -> Any:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            yield from super().__iter__()


class StreamStateCallback(TrainerCallback):
    """Writes this process's stream state after the batches the run has consumed into each checkpoint."""

    def __init__(self, stream: StreamedRows | MixedStreams) -> None:
        self.stream = stream

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        folder = os.path.join(str(args.output_dir), f"checkpoint-{state.global_step}")
        os.makedirs(folder, exist_ok=True)
        consumed = state.global_step * args.gradient_accumulation_steps
        torch.save(self.stream.state_at(consumed), os.path.join(folder, stream_state_name(rank())))


def load_stream_state(stream: StreamedRows | MixedStreams, checkpoint: str) -> None:
    """Resume ``stream`` at this process's state in ``checkpoint``."""
    path = os.path.join(checkpoint, stream_state_name(rank()))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{checkpoint} has no {stream_state_name(rank())}: it is not from a streamed run "
                                f"with {world_size()} processes")  # fmt: skip
    stream.load_state_dict(torch.load(path, weights_only=False))  # written by this run's StreamStateCallback


def stream_rejected(stream: StreamedRows | MixedStreams) -> int:
    """The rows this process's stream (or each of a mix's) left out."""
    if isinstance(stream, MixedStreams):
        return sum(source.rejected for source in stream.streams.values())
    return stream.rejected
