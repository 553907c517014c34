"""The shape every recipe's run has: set up, evaluate before, train, evaluate after, write the artefacts.

``start_run`` (logging, seed, cores, a fed GPU) -> ``train_with_before_after`` (prepare the run: resume,
output folder, row checks; then evaluate, train, evaluate) -> ``finish_run`` (``eval_results.json``,
``training.png``, the model card, the exported model).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers import set_seed

from ..collators import with_index_column
from ..collators.streams import StreamedRows
from ..hub import plot_training, save_eval_results, write_model_card
from ..shards import shard_streams
from ..trainer import ContrastiveTrainer
from ..trainer.defaults import INDEX_COLUMN
from .flags import given

logger = logging.getLogger(__name__)
_BOOKKEEPING = ("runtime", "per_second")


def use_all_cpu_cores_when_alone() -> None:
    """A single CPU process may use every core: ``accelerate launch`` without ``--cpu`` sets
    ``OMP_NUM_THREADS=1``, which halves a 2-core demo. Several processes keep their share. The cores are the
    ones this process may run on (``taskset``, a container's cpuset), not every core of the machine."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and not torch.cuda.is_available():
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def feed_the_device(training_args: Any, argv: list[str] | None = None) -> None:
    """Dataloader settings for the device, unless the user set them.

    On a GPU, ``min(8, cores per process)`` workers with persistent workers and pinned memory, so the GPU
    does not wait for Pillow (one H200 went from 1,916 to 8,220 images/s with 8 workers).
    """
    if torch.cuda.is_available():
        if not given("--dataloader_num_workers", argv):
            per_process = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
            training_args.dataloader_num_workers = max(0, min(8, per_process))
        if training_args.dataloader_num_workers > 0 and not given("--dataloader_persistent_workers", argv):
            training_args.dataloader_persistent_workers = True


def start_run(training_args: Any, argv: list[str] | None = None) -> None:
    """Logging (the main process at INFO), the seed, every CPU core of a lone process, a fed GPU."""
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING, stream=sys.stdout)
    set_seed(training_args.seed)
    use_all_cpu_cores_when_alone()
    feed_the_device(training_args, argv)


def _metrics(logged: Mapping[str, Any], prefix: str) -> dict[str, float]:
    return {
        prefix + key[len("eval_") :]: float(value)
        for key, value in logged.items()
        if key.startswith("eval_") and isinstance(value, int | float) and not key.endswith(_BOOKKEEPING)
    }


def training_rows(rows: Any, shards: str | None, shuffle_buffer_size: int, bad_rows: str) -> Any:
    """What a recipe trains on: ``rows`` with each row's index (its views' seed), or with ``--train_shards`` those
    WebDataset shards streamed (:mod:`hfcontrast.shards`; the index from the stream's epoch and position)."""
    if not shards:
        return with_index_column(rows, INDEX_COLUMN)
    return image_stream_rows(shard_streams(shards, truncated="skip" if bad_rows == "skip" else "error"), shuffle_buffer_size)


def image_stream_rows(streams: Mapping[str, Any], shuffle_buffer_size: int) -> StreamedRows:
    """Image streams (shards, a streamed folder or table) as the trainer's rows, each with its index (its views'
    seed, from the stream's epoch and position)."""
    return StreamedRows(streams, shuffle_buffer_size=shuffle_buffer_size, index_column=INDEX_COLUMN)


def train_with_before_after(
    trainer: ContrastiveTrainer, evaluate: Callable[[], dict[str, float]] | None = None, **train_kwargs: Any
) -> dict[str, float]:
    """Evaluate, train, evaluate; return ``{"before_<metric>": ..., "eval_<metric>": ...}``.

    The run is prepared first (``ContrastiveTrainer.prepare_run``: resume, output folder, row checks),
    so a bad setup fails before the first evaluation. By default the evaluation is the trainer's: the
    first one is logged at step 0, so curves start at the untrained model, and the final one reuses the
    trainer's own when training ended on an evaluation step. ``evaluate`` replaces it with another
    (the image recipes' full kNN and linear probe; its keys without ``eval_``).
    """
    trainer.prepare_run(train_kwargs.get("resume_from_checkpoint"))
    if evaluate is not None:
        before = {f"eval_{k}": v for k, v in evaluate().items()}
        trainer.train(**train_kwargs)
        after = {f"eval_{k}": v for k, v in evaluate().items()}
    else:
        before = trainer.evaluate()
        trainer.train(**train_kwargs)
        # train() starts a fresh TrainerState: put the untrained model's evaluation back at step 0.
        trainer.state.log_history.insert(0, {**before, "step": 0})
        step = trainer.state.global_step
        last = next((e for e in reversed(trainer.state.log_history) if any(k.startswith("eval_") for k in e)), None)
        after = last if last is not None and last.get("step") == step and step > 0 else trainer.evaluate()
    results = _metrics(before, "before_") | _metrics(after, "eval_")
    results["train_steps"] = float(trainer.state.global_step)
    return results


def finish_run(
    trainer: ContrastiveTrainer,
    results: dict[str, float],
    *,
    method: str,
    hyperparameters: Mapping[str, Any],
    train_dataset_name: str | None,
    base_model: str | None,
    metric_key: str | None,
    title: str,
    scatter: tuple[Sequence[float], Sequence[float]] | None = None,
    export: bool = True,
    evaluate_export: Callable[[str], dict[str, float]] | None = None,
    **card_kwargs: Any,
) -> None:
    """Export the encoder on every process unless ``export`` is off (e.g. a LoRA adapter saved alone), then
    write ``eval_results.json``, ``training.png`` and the model card (main process). ``evaluate_export`` scores
    the exported folder (e.g. its int8 ONNX model) and adds its results first. Last, every process waits for the
    others and leaves the process group (``Accelerator.end_training``)."""
    out = str(trainer.args.output_dir)
    if trainer.rejected_rows:
        results["train_rejected_rows"] = float(trainer.rejected_rows)
    if export:
        trainer.export(out)
    if trainer.is_world_process_zero():
        if export and evaluate_export is not None:
            results.update(evaluate_export(out))
        save_eval_results(out, results)
        plot_training(
            os.path.join(out, "training.png"), trainer.state.log_history, metric_key=metric_key, scatter=scatter,
            title=title,
        )  # fmt: skip
        write_model_card(trainer.summary(
            method=method, hyperparameters=hyperparameters, eval_results=results,
            train_dataset_name=train_dataset_name, base_model=base_model, **card_kwargs,
        ))  # fmt: skip
    if export and trainer.args.push_to_hub:
        trainer.push_to_hub()  # the export and the card above, in one commit
    # The processes leave together: one that exits while the process group's threads still run aborts
    # ("terminate called without an active exception"), even after a run that succeeded.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
