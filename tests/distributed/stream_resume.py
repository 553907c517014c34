"""A streamed SimCSE run, straight or killed after a step and resumed: each process writes the anchors of every
batch it collated and, at the end, the model's weights. Run under ``accelerate launch`` (2 processes) by
tests/test_streams.py, which compares the resumed run with the straight one."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import datasets
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout under test, and its tests package

from hfcontrast.collators.streams import StreamedRows
from hfcontrast.distributed import rank
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer
from tests.test_streams import _Recording
from tests.test_trainer_text import StopAt, args
from tests.tiny import text_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="folder of part*.jsonl files")
    parser.add_argument("--output", required=True)
    parser.add_argument("--stop", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    a = parser.parse_args()
    files = sorted(Path(a.data).glob("part*.jsonl"))
    sources = {f.name: datasets.load_dataset("json", data_files=str(f), streaming=True, split="train") for f in files}
    torch.manual_seed(0)
    model = text_model(pooler="mean")
    seen: list[tuple[str, ...]] = []
    trainer = ContrastiveTrainer(
        model=model, args=args(Path(a.output), max_steps=10, per_device_train_batch_size=4, save_strategy="steps",
                               save_steps=3),
        objective=SimCSE(0.05), train_dataset=StreamedRows(sources, shuffle_buffer_size=5, seed=3),
        data_collator=_Recording(seen),
    )  # fmt: skip
    if a.stop is not None:
        trainer.add_callback(StopAt(a.stop))
    trainer.train(resume_from_checkpoint="latest" if a.resume else None)
    tag = "resumed" if a.resume else "first" if a.stop else "straight"
    Path(a.output, f"seen-{tag}-{rank()}.json").write_text(json.dumps(seen))
    if rank() == 0:
        torch.save(model.state_dict(), os.path.join(a.output, f"weights-{tag}.pt"))
    # Leave together, as ``finish_run`` does: a process exiting while the group's threads still run aborts.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()
