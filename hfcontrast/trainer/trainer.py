"""``ContrastiveTrainer``: a ``transformers.Trainer`` whose loss is a contrastive objective over named views."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import EvalLoopOutput, IntervalStrategy

from ..distributed import all_reduce_mean
from ..evaluation import Evaluator
from ..hub.model_card import CARD_NAME, is_hfcontrast_card, write_model_card
from ..hub.push import card_arguments_from_trainer, upload_folder_to_hub
from ..hub.sentence_transformers import write_sentence_transformers_files
from ..objectives.base import ContrastiveObjective, ObjectiveOutput
from .arguments import ContrastiveTrainingArguments
from .callbacks import ObjectiveStepCallback
from .gradcache import gradcache_training_step
from .views import embed_views, embed_views_chunked, split_views

OBJECTIVE_STATE_NAME = "objective.safetensors"


class ContrastiveTrainer(Trainer):
    """Trains an encoder with a :class:`~hfcontrast.objectives.ContrastiveObjective`.

    ``compute_loss`` embeds the collator's named views with the model (views with the same inputs in
    one forward), hands the embeddings to the objective (which gathers across processes and adds
    queued negatives) and returns its loss. The objective's state (queues, momentum encoders,
    predictors) is saved in every checkpoint as ``objective.safetensors`` and restored on resume;
    ``save_model`` exports the encoder only. ``evaluators`` (e.g. ``STSEvaluator``) run on every
    evaluation and log ``eval_<name>_<metric>``, usable as ``metric_for_best_model``.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: ContrastiveTrainingArguments | None = None,
        *,
        objective: ContrastiveObjective,
        evaluators: Sequence[Evaluator] = (),
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = ContrastiveTrainingArguments(output_dir="hfcontrast_output")
        self.objective: ContrastiveObjective = objective
        self.evaluators: list[Evaluator] = list(evaluators)
        self.args: ContrastiveTrainingArguments
        # Trainer refuses eval_strategy without an eval_dataset; evaluators are an evaluation too.
        strategy = args.eval_strategy
        needs_swap = bool(self.evaluators) and kwargs.get("eval_dataset") is None and strategy != "no"
        if needs_swap:
            args.eval_strategy = IntervalStrategy.NO
        try:
            super().__init__(model=model, args=args, **kwargs)
        finally:
            if needs_swap:
                args.eval_strategy = strategy
        self.objective.to(self.args.device)
        self.loss_is_scaled_for_ga = False  # the objective returns a per-batch mean
        self._stats: dict[str, list[Tensor]] = defaultdict(list)
        self.add_callback(ObjectiveStepCallback(self))

    # ----------------------------------------------------------------- optimisation
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Trainer's rule (no decay on biases and norms), and none on the learnable temperature and
        bias of CLIP/SigLIP either: decay would pull ``logit_scale`` towards 0."""
        names = super().get_decay_parameter_names(model)
        return [name for name in names if not name.endswith(("logit_scale", "logit_bias"))]

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        extra = self.objective.trainable_parameters()
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        extra = [p for p in extra if id(p) not in known]
        if extra:
            optimizer.add_param_group({"params": extra, "weight_decay": 0.0})
        return optimizer

    def online_views(self, inputs: dict[str, Any]) -> dict[str, dict[str, Tensor]]:
        """The views the trained model embeds: the objective's ``online_views`` present in the batch."""
        views, _ = split_views(inputs)
        online = self.objective.online_views
        if online is not None:
            # Optional views (e.g. SimCSE's "negative") may be absent; the objective checks what it needs.
            views = {name: views[name] for name in online if name in views}
            if not views:
                raise ValueError(f"the objective embeds views {list(online)}, the batch has {sorted(inputs)}")
        return views

    def record_stats(self, output: ObjectiveOutput) -> None:
        """Keep the objective's statistics of a training batch for the next log."""
        if self.args.log_objective_stats:
            for name, value in output.stats.items():
                self._stats[name].append(value.detach().float())

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Tensor | int | None = None
    ) -> Tensor:
        """Trainer's step, or GradCache (:mod:`hfcontrast.trainer.gradcache`) with ``gradcache_chunk_size``."""
        if self.args.gradcache_chunk_size is None:
            return super().training_step(model, inputs, num_items_in_batch)
        return gradcache_training_step(self, model, inputs)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        views = self.online_views(inputs)
        self.objective.train(model.training)
        chunk = self.args.gradcache_chunk_size
        if chunk is not None and not torch.is_grad_enabled():  # evaluation: no graph, chunked forwards
            embeddings = embed_views_chunked(model, views, chunk)
        else:
            embeddings = embed_views(model, views)
        output = self.objective(embeddings, inputs)
        if model.training:
            self.record_stats(output)
        return (output.loss, embeddings) if return_outputs else output.loss

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        assert isinstance(loss, Tensor)
        return loss.detach(), None, None

    # ----------------------------------------------------------------- logging & evaluation
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._stats:
            for name, values in sorted(self._stats.items()):
                logs[name] = round(float(all_reduce_mean(torch.stack(values).mean())), 4)
            self._stats.clear()
        super().log(logs, start_time)

    def _run_evaluators(self, prefix: str) -> dict[str, float]:
        model = self.accelerator.unwrap_model(self.model)
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators:
            for key, value in evaluator(model).items():
                metrics[f"{prefix}_{key}"] = float(value)
        return metrics

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> EvalLoopOutput:
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
        output.metrics.update(self._run_evaluators(prefix))  # type: ignore[union-attr]
        return output

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        if eval_dataset is not None or self.eval_dataset is not None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if not self.evaluators:
            raise ValueError("nothing to evaluate: pass eval_dataset or evaluators to ContrastiveTrainer")
        metrics = self._run_evaluators(metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ----------------------------------------------------------------- checkpoints & export
    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            save_model(self.objective, os.path.join(folder, OBJECTIVE_STATE_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        _reload_converted_weights(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)
        path = os.path.join(resume_from_checkpoint, OBJECTIVE_STATE_NAME)
        if os.path.isfile(path):
            load_model(self.objective, path, device=str(self.args.device))
        elif any(True for _ in self.objective.state_dict()):
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {OBJECTIVE_STATE_NAME}; the objective's state (queue, "
                "momentum encoder) cannot be restored, so the resumed run would not continue exactly"
            )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save and output_dir is not None:
            write_sentence_transformers_files(self.accelerator.unwrap_model(self.model), output_dir)

    # ----------------------------------------------------------------- publishing
    def create_model_card(self, **kwargs: Any) -> None:  # type: ignore[override]
        """Keep the hfcontrast card already in ``output_dir`` (``hfcontrast.hub.write_model_card``),
        else write one inferred from the trainer; never Trainer's generic draft, which has no
        model-index, loading snippets or citation. Takes ``Trainer.create_model_card``'s keywords."""
        card = os.path.join(str(self.args.output_dir), CARD_NAME)
        if self.is_world_process_zero() and not is_hfcontrast_card(card):
            write_model_card(self, **card_arguments_from_trainer(self, **kwargs))

    def push_to_hub(  # type: ignore[override]
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Like ``Trainer.push_to_hub`` (save, card, upload ``output_dir``), with hfcontrast's card and
        file set (``hfcontrast.hub.upload_folder_to_hub``: no ``training_args.bin`` pickle or
        checkpoints), i.e. the files ``hfcontrast.hub.push_to_hub(model, repo, folder=output_dir)`` sends."""
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        kwargs.pop("model_name", None)
        self.create_model_card(**kwargs)
        self._finish_current_push()
        return upload_folder_to_hub(
            str(self.hub_model_id),
            str(self.args.output_dir),
            commit_message=commit_message or "End of training",
            token=token,
            revision=revision if revision is not None else self.args.hub_revision,
            create_repo=False,
            run_as_future=not blocking,
        )


def _reload_converted_weights(model: nn.Module, checkpoint: str) -> None:
    """Trainer reloads a checkpoint with a plain non-strict ``load_state_dict``, but transformers 5
    saves some backbones (ViT, ...) under legacy parameter names that only ``from_pretrained``
    converts back; those weights would silently stay at their last values. Reload strictly through
    ``from_pretrained`` instead."""
    if not isinstance(model, PreTrainedModel) or not os.path.isfile(os.path.join(checkpoint, "config.json")):
        return
    reloaded = type(model).from_pretrained(checkpoint)
    model.load_state_dict(reloaded.state_dict(), strict=True)
