"""Nothing silent, nothing lost, in one process: resume resolution, queue-size mismatch, the non-finite
guard, protected output folders and the row check before step 1 (recipes, killed runs: test_recipe_reliability.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch

from hfcontrast.collators import TextPairCollator, UnsupervisedSimCSECollator
from hfcontrast.collators.checks import BadRowsError, RowSpec
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer
from hfcontrast.trainer.checkpoints import OBJECTIVE_STATE_NAME, resolve_resume
from hfcontrast.trainer.guards import NonFiniteError
from hfcontrast.trainer.outputs import LOCK_NAME, OutputDirError, claim_output_dir, release_output_dir
from tests.test_trainer_text import args, sentences
from tests.tiny import text_model, tokenizer


def _trainer(output: Path, *, rows: list[str] | None = None, queue: int = 0, **overrides: object) -> ContrastiveTrainer:
    torch.manual_seed(0)
    model = text_model(pooler="mean")
    objective = SimCSE(0.05, queue_size=queue, encoder=model) if queue else SimCSE(0.05)
    values: dict = dict(max_steps=4, per_device_train_batch_size=8)
    values.update(overrides)
    return ContrastiveTrainer(
        model=model, args=args(output, **values), objective=objective,
        train_dataset=datasets.Dataset.from_dict({"text": rows if rows is not None else sentences(64)}),
        data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16),
    )


# ----------------------------------------------------------------------------- resume
def _checkpoint(folder: Path, *, objective: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    if objective:
        (folder / OBJECTIVE_STATE_NAME).write_bytes(b"")
    return folder


def test_resume_latest_picks_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "checkpoint-2")
    newest_complete = _checkpoint(tmp_path / "checkpoint-10")
    _checkpoint(tmp_path / "checkpoint-12", objective=False)  # killed while saving the objective's state
    for value in ("latest", True, "True"):
        assert resolve_resume(value, str(tmp_path), needs_objective_state=True) == str(newest_complete)
    assert resolve_resume("latest", str(tmp_path), needs_objective_state=False) == str(tmp_path / "checkpoint-12")
    assert resolve_resume(None, str(tmp_path), True) is None and resolve_resume("", str(tmp_path), True) is None


def test_resume_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"/nonexistent/checkpoint-99: no such checkpoint folder"):
        resolve_resume("/nonexistent/checkpoint-99", str(tmp_path), True)
    with pytest.raises(FileNotFoundError, match=r"latest: no complete checkpoint in"):
        resolve_resume("latest", str(tmp_path), True)
    folder = _checkpoint(tmp_path / "checkpoint-3", objective=False)
    with pytest.raises(FileNotFoundError, match=r"has no objective\.safetensors; the objective's state"):
        resolve_resume(str(folder), str(tmp_path), True)


def test_changed_queue_size_names_both_sizes(tmp_path: Path) -> None:
    _trainer(tmp_path, queue=16, save_strategy="steps", save_steps=2, max_steps=2).train()
    with pytest.raises(ValueError, match=r"holds 16 keys in the checkpoint but 32 in this run \(queue_size 16 then, 32 now\)"):
        _trainer(tmp_path, queue=32, max_steps=4).train(resume_from_checkpoint="latest")


# ----------------------------------------------------------------------------- non-finite guard
def test_diverging_run_stops_and_names_the_step(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, learning_rate=1e6, max_steps=20, max_grad_norm=0.0)
    with pytest.raises(NonFiniteError, match=r"training diverged at step (\d+): the (loss|gradient norm) is (nan|inf)") as info:
        trainer.train()
    assert "last finite loss was" in str(info.value) and "nan_policy='skip'" in str(info.value)
    assert trainer.state.global_step < 20


def test_a_model_with_non_finite_weights_is_never_exported(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    with torch.no_grad():
        trainer.model.backbone.embeddings.word_embeddings.weight[3, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"non-finite values in 1 tensors \(backbone\.embeddings\.word_embeddings\.weight\); it is not exported"):
        trainer.save_model(str(tmp_path / "export"))
    assert not (tmp_path / "export" / "model.safetensors").exists()


class _NanAt:
    """Collator wrapper whose batches at the given calls make the loss NaN (a bad batch, not divergence)."""

    def __init__(self, collator: UnsupervisedSimCSECollator, bad_calls: set[int]) -> None:
        self.collator, self.bad_calls, self.calls = collator, bad_calls, 0

    def __call__(self, rows: list[dict]) -> dict:  # type: ignore[type-arg]
        batch = self.collator(rows)
        self.calls += 1
        if self.calls in self.bad_calls:
            batch["poison"] = True
        return batch

    def row_spec(self) -> RowSpec:
        return self.collator.row_spec()


def test_skip_policy_skips_bad_steps_without_moving_the_weights(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, nan_policy="skip", max_nan_skips=2, max_steps=4)
    trainer.data_collator = _NanAt(trainer.data_collator, {2})
    original = trainer.objective.forward

    def forward(embeddings, batch):  # type: ignore[no-untyped-def]
        out = original(embeddings, batch)
        if batch.get("poison"):
            out.loss = out.loss * float("nan")
        return out

    trainer.objective.forward = forward  # type: ignore[method-assign]
    weights: list[torch.Tensor] = []

    class Snapshot(__import__("transformers").TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
            weights.append(model.backbone.embeddings.word_embeddings.weight.detach().clone())

    trainer.add_callback(Snapshot())
    trainer.train()
    assert trainer.nan_guard.skipped == 1 and trainer.state.global_step == 4
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert all(torch.isfinite(w).all() for w in weights)


def test_skip_policy_stops_after_max_skips(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, learning_rate=1e6, max_steps=20, max_grad_norm=0.0, nan_policy="skip", max_nan_skips=2)
    with pytest.raises(NonFiniteError, match="max_nan_skips=2 steps were skipped already"):
        trainer.train()


# ----------------------------------------------------------------------------- output folders
def test_non_empty_output_dir_is_refused_unless_overwritten_or_resumed(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "modeling_vision.py").write_text("# another run's code")
    with pytest.raises(OutputDirError, match=r"is not empty \(2 entries: checkpoint-5, modeling_vision\.py\)"):
        _trainer(tmp_path).train()
    assert not (tmp_path / LOCK_NAME).exists()  # a refused run leaves no lock behind
    trainer = _trainer(tmp_path, overwrite_output_dir=True, save_strategy="steps", save_steps=4)
    trainer.train()
    assert sorted(os.listdir(tmp_path)) == [LOCK_NAME, "checkpoint-4"]  # the previous run's files are gone
    release_output_dir(str(tmp_path))
    _trainer(tmp_path, max_steps=6).train(resume_from_checkpoint="latest")  # resuming into it is fine


def test_a_folder_locked_by_a_live_process_is_refused_naming_it(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "started": "x"}))
        with pytest.raises(OutputDirError, match=rf"in use by another run: PID {holder.pid}"):
            claim_output_dir(str(tmp_path), overwrite=True, resuming=False, is_main_process=True)
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone now: the lock is stale and is taken over.
    claim_output_dir(str(tmp_path), overwrite=False, resuming=False, is_main_process=True)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    release_output_dir(str(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()


# ----------------------------------------------------------------------------- rows checked before step 1
def test_bad_text_rows_fail_before_step_one_naming_row_and_column(tmp_path: Path) -> None:
    rows = [{"sent0": a, "sent1": b, "hard_neg": c} for a, b, c in zip(sentences(20, 1), sentences(20, 2), sentences(20, 3))]
    rows[4]["hard_neg"] = None
    rows[11]["sent1"] = "   "
    trainer = _trainer(tmp_path)
    trainer.train_dataset = datasets.Dataset.from_list(rows)
    trainer.data_collator = TextPairCollator(tokenizer(), "sent0", "sent1", ("hard_neg",), max_length=16)
    trainer.train_source = "triplets.csv"
    with pytest.raises(BadRowsError) as info:
        trainer.train()
    message = str(info.value)
    assert message.startswith("triplets.csv: 2 of 20 rows cannot be used")
    assert "row 4, column 'hard_neg': text is None" in message and "row 11, column 'sent1': text is empty" in message
    assert trainer.state.global_step == 0


def test_skip_drops_bad_rows_and_writes_them(tmp_path: Path) -> None:
    texts = sentences(24, 4)
    texts[3], texts[17] = "", None  # type: ignore[call-overload]
    trainer = _trainer(tmp_path, rows=texts, bad_rows="skip")
    trainer.train()
    assert trainer.rejected_rows == 2 and len(trainer.train_dataset) == 22
    rejected = [json.loads(line) for line in (tmp_path / "rejected_rows.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejected] == [3, 17]
    assert rejected[0]["problems"] == [{"column": "text", "problem": "text is empty"}]
    assert rejected[1]["values"] == {"text": None}


def test_fewer_rows_than_one_global_batch_is_an_error(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, rows=sentences(1))
    trainer.train_source = "one_row.txt"
    with pytest.raises(ValueError, match=r"one_row\.txt has 1 usable rows, fewer than one global batch \(8 per device"):
        trainer.train()


def test_missing_column_is_named(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    trainer.train_dataset = datasets.Dataset.from_dict({"sentence": sentences(16)})
    with pytest.raises(BadRowsError, match=r"no column 'text' \(columns: \['sentence'\]\)"):
        trainer.train()


def test_sharded_training_refuses_what_cannot_work() -> None:
    from hfcontrast import ContrastiveVisionModel
    from hfcontrast.objectives import CLIP, MoCo, SimCLR
    from hfcontrast.trainer.sharding import sharding_problems
    from tests.test_objectives_clip import tiny_dual
    from tests.tiny import vision_config

    model = ContrastiveVisionModel(vision_config())
    assert sharding_problems("MULTI_GPU", MoCo(model, queue_size=8), gradcache=True) == []
    assert sharding_problems("FSDP", SimCLR()) == []
    assert sharding_problems("DEEPSPEED", MoCo(model, queue_size=8), zero_stage=2) == []  # full parameters on each rank
    (momentum,) = sharding_problems("FSDP", MoCo(model, queue_size=8))
    assert "momentum encoder" in momentum and "shard" in momentum
    assert any("ZeRO-3" in p for p in sharding_problems("DEEPSPEED", MoCo(model, queue_size=8), zero_stage=3))
    assert any("predictor" in p for p in sharding_problems("DEEPSPEED", MoCo(model, version="v3", predictor_hidden_dim=8), zero_stage=2))
    assert any("logit_scale" in p for p in sharding_problems("FSDP", CLIP(tiny_dual())))
    assert sharding_problems("FSDP", CLIP(temperature=0.1)) == []  # a fixed temperature reads nothing
    assert any("GradCache" in p for p in sharding_problems("FSDP", SimCLR(), gradcache=True))
