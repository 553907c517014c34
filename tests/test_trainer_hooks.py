"""Every Trainer member ContrastiveTrainer uses that is not a public hook, pinned: if transformers renames,
reshapes or drops one, a test here fails instead of a run going quietly wrong. The list (also in the
``ContrastiveTrainer`` docstring):

* ``_prepare_inputs`` (``prediction_step``): moves nested views to the device;
* ``_clip_grad_norm`` (overridden): called with the model before ``on_pre_optimizer_step`` when
  ``max_grad_norm > 0``; ours clips the model's and the objective's gradients to one global norm;
* ``loss_is_scaled_for_ga`` / ``model_accepts_loss_kwargs`` (set False): Trainer then divides the objective's
  per-batch mean by the accumulation steps, also when ``labels`` make it count ``num_items_in_batch``;
* ``__init__``'s refusal of an ``eval_strategy`` without ``eval_dataset``, which evaluators side-step;
* ``init_hf_repo``, ``callback_handler.on_push_begin`` and ``_finish_current_push`` (``push_to_hub``), with
  ``private=`` handed to ``init_hf_repo`` through the ``hub_private_repo`` argument it reads.

Everything else goes through public hooks: callbacks, ``compute_loss``, ``training_step``,
``get_train_dataloader``, ``get_eval_dataloader``, ``evaluation_loop``, ``save_model``, ``create_model_card``,
``create_optimizer``, ``train``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments

from hfcontrast.collators import TextPairCollator
from hfcontrast.evaluation import STSEvaluator
from hfcontrast.objectives import ContrastiveObjective, ObjectiveOutput, SimCSE
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from hfcontrast.trainer.views import embed_views
from tests.test_gradcache import sentences
from tests.tiny import text_model, tokenizer


def _params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_prepare_inputs_moves_nested_views_to_the_device() -> None:
    """Private; used by ``prediction_step`` to move a batch of named views like Trainer does."""
    assert _params(Trainer._prepare_inputs) == ["self", "inputs"]
    trainer = object.__new__(ContrastiveTrainer)
    trainer.args = type("Args", (), {"device": torch.device("cpu"), "past_index": -1})()  # type: ignore[assignment]
    trainer.is_deepspeed_enabled = False
    batch = {"anchor": {"input_ids": torch.ones(2, 3, dtype=torch.long)}, "ids": torch.arange(2)}
    moved = trainer._prepare_inputs(batch)
    assert torch.equal(moved["anchor"]["input_ids"], batch["anchor"]["input_ids"]) and torch.equal(moved["ids"], batch["ids"])


def test_push_members_keep_their_signatures() -> None:
    """Private or internal; ``push_to_hub`` announces the push, creates the repo, and waits with
    ``_finish_current_push`` for the checkpoint uploads of ``hub_strategy="every_save"``."""
    assert _params(Trainer._finish_current_push) == ["self"]
    assert _params(Trainer.init_hf_repo)[:2] == ["self", "token"]  # private= only on newer transformers
    assert "hub_private_repo" in _params(TrainingArguments)  # which init_hf_repo reads when private= is absent
    from transformers.trainer_callback import CallbackHandler

    assert _params(CallbackHandler.on_push_begin)[:4] == ["self", "args", "state", "control"]


def test_public_hooks_have_the_signatures_we_override() -> None:
    assert _params(Trainer.evaluation_loop)[1:] == [
        "dataloader", "description", "prediction_loss_only", "ignore_keys", "metric_key_prefix",
    ]  # fmt: skip
    assert _params(Trainer.compute_loss)[1:5] == ["model", "inputs", "return_outputs", "num_items_in_batch"]
    assert _params(Trainer.training_step)[1:4] == ["model", "inputs", "num_items_in_batch"]
    assert _params(Trainer.save_model)[1:] == ["output_dir", "_internal_call"]
    assert _params(Trainer.get_eval_dataloader)[1:] == ["eval_dataset"]
    assert _params(Trainer._clip_grad_norm) == ["self", "model"]
    assert _params(Trainer.compute_loss_context_manager) == ["self"]  # GradCache's forwards run inside it


def test_the_sharding_flags_we_read_are_set_by_trainer(tmp_path: Path) -> None:
    """``is_fsdp_enabled`` / ``is_deepspeed_enabled``: set in ``Trainer.__init__``, read by our ``__init__``, export and
    clipping (DeepSpeed clips inside its engine)."""
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    assert trainer.is_fsdp_enabled is False and trainer.is_deepspeed_enabled is False


def test_trainer_still_refuses_an_eval_strategy_without_eval_dataset(tmp_path: Path) -> None:
    """Trainer's own check, which ContrastiveTrainer side-steps for evaluators (and restores the strategy)."""
    args = ContrastiveTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], eval_strategy="steps")
    with pytest.raises(ValueError, match="eval_dataset"):
        Trainer(model=nn.Linear(2, 2), args=args)
    evaluator = STSEvaluator(["a red cat", "a blue sky", "an old car"], ["a red cat", "a dog", "a new car"], [5.0, 0.0, 3.0],
                             tokenizer(), name="sts")  # fmt: skip
    model = text_model(pooler="mean")
    trainer = ContrastiveTrainer(model=model, args=args, objective=SimCSE(), evaluators=[evaluator])
    assert trainer.args.eval_strategy == "steps"
    metrics = trainer.evaluate()  # the evaluators alone: no eval_dataset, no eval loss
    assert "eval_sts_spearman" in metrics and "eval_loss" not in metrics


class Recorder(TrainerCallback):
    """The gradients the optimizer steps with (after clipping)."""

    def __init__(self, objective: nn.Module) -> None:
        self.objective, self.grads = objective, []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        named = [*model.named_parameters(), *(("objective." + n, p) for n, p in self.objective.named_parameters())]
        self.grads.append({name: p.grad.detach().clone() for name, p in named if p.grad is not None})


class HeadObjective(ContrastiveObjective):
    """SimCSE plus a head of its own whose gradient dwarfs the model's (x 1e3)."""

    modality = "text"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.simcse, self.head = SimCSE(0.05), nn.Linear(dim, 1)
        self.bind()

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        out = self.simcse(embeddings, batch)
        return ObjectiveOutput(out.loss + 1e3 * self.head(embeddings["anchor"].detach()).square().mean(), {})


class Sequential(ContrastiveTrainer):
    def _get_train_sampler(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return SequentialSampler(self.train_dataset)


def one_step(tmp_path: Path, make: Callable[[], ContrastiveObjective], **overrides: Any) -> list[dict[str, Tensor]]:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0)
    objective = make()
    values: dict[str, Any] = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, learning_rate=0.1, optim="sgd",
        report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True, dataloader_drop_last=True,
    )  # fmt: skip
    values.update(overrides)
    rows = 4 * values.get("gradient_accumulation_steps", 1)
    train = datasets.Dataset.from_dict({"sent0": sentences(rows, 0), "sent1": sentences(rows, 1), "label": [0, 1] * (rows // 2)})
    recorder = Recorder(objective)
    collator = TextPairCollator(tokenizer(), "sent0", "sent1", max_length=16, label_column=values.pop("labels", None))
    Sequential(model=model, args=ContrastiveTrainingArguments(**values), objective=objective, train_dataset=train,
               data_collator=collator, callbacks=[recorder]).train()  # fmt: skip
    return recorder.grads


def test_clipping_covers_model_and_objective_to_one_global_norm(tmp_path: Path) -> None:
    """``_clip_grad_norm`` (private): with ``max_grad_norm=1`` every gradient, the model's and the
    objective's head alike, is the unclipped one times ``1 / ||all gradients||`` (torch's global-norm rule)."""
    free = one_step(tmp_path / "free", lambda: HeadObjective(32), max_grad_norm=0.0)[0]
    clipped = one_step(tmp_path / "clipped", lambda: HeadObjective(32), max_grad_norm=1.0)[0]
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in free.values()]))
    head = torch.linalg.vector_norm(torch.stack([g.norm() for n, g in free.items() if n.startswith("objective.")]))
    assert total > 100 and head / total > 0.99  # the head's gradient dominates
    assert clipped.keys() == free.keys()
    for name, grad in free.items():
        torch.testing.assert_close(clipped[name], grad / total, rtol=1e-4, atol=1e-9, msg=name)


def test_accumulated_loss_is_the_mean_of_micro_batches_even_with_labels(tmp_path: Path) -> None:
    """``model_accepts_loss_kwargs`` / ``loss_is_scaled_for_ga``: with ``labels`` in the batch Trainer counts
    ``num_items_in_batch``; the step's gradient is still the mean of the two micro-batches' gradients."""
    accumulated = one_step(tmp_path / "ga", SimCSE, gradient_accumulation_steps=2, labels="label", max_grad_norm=0)[0]
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0)
    objective = SimCSE(0.05)
    collator = TextPairCollator(tokenizer(), "sent0", "sent1", max_length=16, label_column="label")
    rows = [{"sent0": a, "sent1": b, "label": i % 2} for i, (a, b) in enumerate(zip(sentences(8, 0), sentences(8, 1)))]
    for half in (rows[:4], rows[4:]):
        batch = collator(half)
        embeddings = embed_views(model, {v: batch[v] for v in ("anchor", "positive")})  # the trainer's forwards
        (objective(embeddings, batch).loss / 2).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(accumulated[name], param.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_args_type_is_contrastive() -> None:
    assert issubclass(ContrastiveTrainingArguments, TrainingArguments)
