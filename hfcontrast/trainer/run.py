"""The run of :class:`~hfcontrast.trainer.ContrastiveTrainer`, before and around Trainer's loop: the checkpoint to
resume, the output folder claimed, every training row checked (a stream's as they arrive), the objective's and the
stream's state restored."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from transformers import Trainer

from ..collators import CollatorEpochCallback
from ..collators.checks import check_rows
from ..collators.multi_source import MultiSourceDataset
from ..distributed import all_reduce_sum, world_size
from ..objectives.base import ContrastiveObjective
from .arguments import ContrastiveTrainingArguments
from .checkpoints import has_state, load_objective_state, reload_converted_weights, resolve_resume
from .multi_source import check_multi_source_rows, check_sampler_on_resume
from .outputs import claim_output_dir
from .streams import StreamStateCallback, bind_stream, is_stream, load_stream_state, stream_rejected


class CheckedRunTrainer(Trainer):
    """The run half of ``ContrastiveTrainer`` (its base class): :meth:`prepare_run` before step 1, :meth:`train`."""

    args: ContrastiveTrainingArguments
    objective: ContrastiveObjective
    train_source: str | None
    rejected_rows: int
    _output_dir_claimed: bool
    _rows_checked: bool
    _loaded_checkpoint: str | None
    _stream_resumes: bool  # a streamed run's checkpoint holds its position (unless ignore_data_skip)
    _given_ignore_data_skip: bool | None = None  # the user's, while a stream's train() runs

    def _add_data_callbacks(self) -> None:
        """New views every epoch (a collator with ``set_epoch``); one that ``callbacks=`` holds already (with
        the caller's settings) is not added twice. The objective's callbacks follow the row check."""
        collator, present = self.data_collator, list(self.callback_handler.callbacks)
        if is_stream(self.train_dataset):  # its rows' indices carry the stream's own epoch
            return
        if callable(getattr(collator, "set_epoch", None)) and not any(isinstance(cb, CollatorEpochCallback) for cb in present):
            self.add_callback(CollatorEpochCallback(collator))

    def _add_objective_callbacks(self, bound_rows: int | None) -> None:
        """The callbacks the objective declares (PCL's cluster refresh), over the checked training rows. An
        objective that looks rows up by index (``needs_row_ids``) refuses a dataset the check shrank."""
        if self.train_dataset is None:
            return
        rows = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None
        if self.objective.needs_row_ids and self.rejected_rows and rows != bound_rows:
            raise ValueError(
                f"{type(self.objective).__name__} looks each row up by its index, but bad_rows='skip' dropped "
                f"{self.rejected_rows} of {bound_rows} rows (listed in rejected_rows.jsonl): remove them from the data "
                "first, so that the row indices count the rows trained on"
            )
        present = list(self.callback_handler.callbacks)
        for callback in self.objective.training_callbacks(self.train_dataset, self.data_collator, present):
            self.add_callback(callback)

    def prepare_run(self, resume_from_checkpoint: str | bool | None = None) -> str | None:
        """Everything that must hold before the first step, once: resolve the checkpoint to resume
        (``resume_from_checkpoint`` or ``args.resume_from_checkpoint``: a folder, or ``"latest"`` /
        ``True``), claim the output folder (:mod:`hfcontrast.trainer.outputs`), check every training row,
        load the checkpoint's objective state. Recipes call it before their first evaluation so that a bad
        setup fails at once; ``train`` calls it again. Returns the checkpoint folder, or ``None``."""
        value = self.args.resume_from_checkpoint if resume_from_checkpoint is None else resume_from_checkpoint
        resume = resolve_resume(value, str(self.args.output_dir), has_state(self.objective))
        if not self._output_dir_claimed:
            claim_output_dir(str(self.args.output_dir), overwrite=self.args.overwrite_output_dir,
                             resuming=resume is not None, is_main_process=self.is_world_process_zero())  # fmt: skip
            self._output_dir_claimed = True
        self.check_train_rows()
        if resume is not None and resume != self._loaded_checkpoint:
            assert self.model is not None
            reload_converted_weights(self.model, resume)
            load_objective_state(self.objective, resume)
            if is_stream(self.train_dataset) and self._stream_resumes:
                load_stream_state(self.train_dataset, resume)
            if isinstance(self.train_dataset, MultiSourceDataset):
                check_sampler_on_resume(self.train_dataset, self.args, resume)
            self._loaded_checkpoint = resume
        return resume

    def check_train_rows(self) -> None:
        """Check every training row before step 1 (:func:`hfcontrast.collators.checks.check_rows`):
        bad rows are an error naming each (``bad_rows="error"``) or are dropped and written to
        ``rejected_rows.jsonl`` (``"skip"``). A dataset smaller than one global batch is an error."""
        if self._rows_checked or self.train_dataset is None:
            return
        settings: dict[str, Any] = {
            "policy": self.args.bad_rows, "num_proc": self.args.preprocessing_num_workers,
            "rejected_path": os.path.join(str(self.args.output_dir), "rejected_rows.jsonl"),
            "is_main_process": self.is_world_process_zero(),
        }  # fmt: skip
        source = self.train_source or "the training dataset"
        if is_stream(self.train_dataset):  # checked as its rows arrive
            bind_stream(self.train_dataset, self.data_collator, self.args, settings["rejected_path"])
            # A stream resumes at the position its checkpoint holds (prepare_run), unless ignore_data_skip.
            self._stream_resumes = not self.args.ignore_data_skip
            self.add_callback(StreamStateCallback(self.train_dataset))
            self._add_objective_callbacks(None)
            self._rows_checked = True
            return
        bound_rows = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None
        if isinstance(self.train_dataset, MultiSourceDataset):
            self.train_dataset, self.rejected_rows = check_multi_source_rows(self.train_dataset, self.data_collator, **settings)
        else:
            result = check_rows(self.train_dataset, self.data_collator, source=source, **settings)
            self.train_dataset, self.rejected_rows = result.dataset, result.rejected
        self._add_objective_callbacks(bound_rows)
        rows = len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None
        batch = self.args.per_device_train_batch_size * world_size()
        if rows is not None and rows < batch:
            raise ValueError(
                f"{source} has {rows} usable rows, fewer than one global batch ({self.args.per_device_train_batch_size} "
                f"per device x {world_size()} processes = {batch}): the run would train on nothing. Add data or "
                "lower per_device_train_batch_size"
            )
        self._rows_checked = True

    def train(  # type: ignore[override]
        self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any
    ) -> Any:
        """``Trainer.train`` after :meth:`prepare_run` (see the class doc)."""
        resume = self.prepare_run(resume_from_checkpoint)
        with self._stream_skips_no_batches():
            output = super().train(resume_from_checkpoint=resume, trial=trial, **kwargs)
        if is_stream(self.train_dataset):  # the rows every process's stream left out
            self.rejected_rows = int(all_reduce_sum(torch.tensor(float(stream_rejected(self.train_dataset)))).item())
        return output


    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """``save_model`` with ``args`` as the user gave them: a checkpoint's ``training_args.bin`` never holds
        the ``ignore_data_skip`` that a stream's ``train()`` sets for itself."""
        with self._args_as_given():
            super().save_model(output_dir, _internal_call)

    @contextlib.contextmanager
    def _stream_skips_no_batches(self) -> Iterator[None]:
        """A stream resumes at the position its checkpoint holds, never by reading its first batches again:
        Trainer's batch skipping is off inside ``train()`` (``args.ignore_data_skip``, on every transformers
        version), and the user's value is back in ``args`` after it."""
        if not is_stream(self.train_dataset):
            yield
            return
        self._given_ignore_data_skip, self.args.ignore_data_skip = self.args.ignore_data_skip, True
        try:
            yield
        finally:
            self.args.ignore_data_skip, self._given_ignore_data_skip = self._given_ignore_data_skip, None

    @contextlib.contextmanager
    def _args_as_given(self) -> Iterator[None]:
        given = self._given_ignore_data_skip
        if given is None:
            yield
            return
        self.args.ignore_data_skip = given
        try:
            yield
        finally:
            self.args.ignore_data_skip = True
