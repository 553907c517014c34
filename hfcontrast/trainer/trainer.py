"""``ContrastiveTrainer``: a ``transformers.Trainer`` whose loss is a contrastive objective over named views."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from transformers.trainer_utils import EvalLoopOutput, IntervalStrategy

from ..collators.lengths import LENGTHS_KEY
from ..collators.multi_source import MultiSourceDataset
from ..distributed import all_reduce_mean, equal_batches, is_distributed, world_size
from ..evaluation import Evaluator
from ..losses import compiled_losses, value_checks
from ..objectives.base import ContrastiveObjective, ObjectiveOutput
from .arguments import ContrastiveTrainingArguments
from .callbacks import ObjectiveStepCallback
from .checkpoints import (
    ObjectiveCheckpointCallback,
)
from .defaults import default_collator, default_processing_class
from .gradcache import GradCache
from .guards import NonFiniteGuard
from .levers import channels_last_views, check_padding_free, to_channels_last
from .multi_source import (
    SamplerStateCallback,
    multi_source_dataloader,
)
from .publishing import PublishingTrainer
from .run import CheckedRunTrainer
from .sharding import check_sharding, sync_batchnorm
from .streams import (
    is_stream,
    stream_dataloader,
)
from .views import embed_views, embed_views_chunked, split_views

logger = logging.getLogger(__name__)
_MANY_ROWS = 1 << 30  # GradCache by tokens alone: image views in one chunk


class EvaluatorsOnly(DataLoader):
    """The (empty) evaluation loader of a trainer whose evaluation is its evaluators alone."""


class ContrastiveTrainer(CheckedRunTrainer, PublishingTrainer):
    """Trains an encoder with a :class:`~hfcontrast.objectives.ContrastiveObjective`.

    ``ContrastiveTrainer(model=model, objective=SimCSE(), train_dataset=ds)`` is a whole run: the trainer
    binds the objective to the model (its momentum copy, queue and predictor widths), loads the model's
    tokenizer when no ``processing_class`` is given, builds the collator from the dataset's columns and
    the objective's views when no ``data_collator`` is given (:mod:`hfcontrast.trainer.defaults`), and adds
    the callbacks the collator (``set_epoch``: new views every epoch) and the objective (PCL's cluster
    refresh) need. ``args`` defaults to ``ContrastiveTrainingArguments(output_dir="hfcontrast_output")``.

    ``compute_loss`` embeds the views with the model (views with the same inputs in one forward), hands
    the embeddings to the objective (which gathers across processes and adds queued negatives) and
    returns its loss. ``evaluators`` (e.g. ``STSEvaluator``) run on every evaluation and log
    ``eval_<name>_<metric>``, usable as ``metric_for_best_model``; given evaluators and no
    ``eval_strategy``, they run at the end of every epoch.

    The step is Trainer's ``training_step`` (input preparation, loss scaling, backward); with
    ``gradcache_chunk_size`` the embeddings come from a :class:`~hfcontrast.trainer.gradcache.GradCache`
    whose replay follows that backward. On a step's last micro-batch the objective's own gradients are
    averaged over processes (DDP wraps the model only), and clipping (``max_grad_norm``) takes one global
    norm over the model's and the objective's trainable parameters.

    What a run never does silently (see ``docs/reliability.md``): the objective's state is saved in every
    checkpoint (``objective.safetensors``) and restored on resume (``resume_from_checkpoint``: a path, or
    ``"latest"``); a non-finite loss or gradient norm stops training (``nan_policy``) and a model with
    non-finite weights is never exported; the output folder is locked while the run writes; every training
    row is checked before step 1 (``bad_rows``), and a dataset smaller than one global batch is refused.

    ``device_views`` (e.g. :class:`~hfcontrast.augment.device_views.DeviceViews`) turns a batch of raw
    images into its views on the training device before the model sees it.

    Trainer members that are not public hooks, each pinned by ``tests/test_trainer_hooks.py``:
    ``_prepare_inputs`` (``prediction_step``), ``_clip_grad_norm`` (overridden), ``_finish_current_push``,
    ``init_hf_repo`` and ``callback_handler.on_push_begin`` (``push_to_hub``, which hands ``private=`` to
    ``init_hf_repo`` through ``args.hub_private_repo``: older releases' ``init_hf_repo`` takes no ``private``),
    the attributes ``loss_is_scaled_for_ga`` / ``model_accepts_loss_kwargs`` (set), and ``__init__``'s refusal
    of an ``eval_strategy`` without ``eval_dataset`` (side-stepped when evaluators are given).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: ContrastiveTrainingArguments | None = None,
        *,
        objective: ContrastiveObjective,
        evaluators: Sequence[Evaluator] = (),
        train_source: str | None = None,
        device_views: Callable[..., dict[str, Any]] | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        args = args if args is not None else ContrastiveTrainingArguments(output_dir="hfcontrast_output")
        if model is not None:  # before Trainer seeds: the same draws as an objective built beside the model
            objective.bind(model, num_rows=len(train_dataset) if hasattr(train_dataset, "__len__") else None)
        if processing_class is None and data_collator is None:
            processing_class = default_processing_class(model, objective)
        if data_collator is None and train_dataset is not None and model is not None:
            train_dataset, data_collator = default_collator(train_dataset, objective, model, processing_class, args.seed)
        self.objective: ContrastiveObjective = objective
        self.evaluators: list[Evaluator] = list(evaluators)
        self.train_source, self.device_views = train_source, device_views
        self._view_counts: dict[tuple[bool, int], int] = {}
        self.args: ContrastiveTrainingArguments
        self._init_trainer(model, args, data_collator, train_dataset, processing_class, kwargs)
        if model is None:  # model_init: the model exists now
            assert self.model is not None
            objective.bind(self.model)
        check_sharding(self.accelerator, self.objective, gradcache=self.args.gradcache)
        if self.args.sync_batchnorm:
            assert self.model is not None
            converted = sync_batchnorm(
                [self.model, objective], processes=world_size(), device=self.args.device
            )
            logger.info("sync_batchnorm: %d BatchNorm layers normalise over the global batch", converted)
        if self.args.padding_free:
            check_padding_free(self.accelerator.unwrap_model(self.model), gradcache=self.args.gradcache, device=self.args.device)
        if self.args.channels_last:
            assert self.model is not None
            logger.info("channels_last: %d convolutions in NHWC", to_channels_last(self.model, objective))
        self.objective.to(self.args.device)
        # The objective returns a per-batch mean: Trainer divides it by the accumulation steps
        # (transformers >= 5.5 reads loss_is_scaled_for_ga, earlier releases model_accepts_loss_kwargs).
        self.loss_is_scaled_for_ga = False
        self.model_accepts_loss_kwargs = False
        self._stats: dict[str, list[Tensor]] = defaultdict(list)
        self._gradcache: GradCache | None = None
        self._output_dir_claimed = self._rows_checked = False
        self._loaded_checkpoint: str | None = None
        self._stream_resumes = False  # a streamed run's checkpoint holds its position (unless ignore_data_skip)
        self._checked_step: int | None = None
        self.rejected_rows = 0
        sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
        self.nan_guard = NonFiniteGuard(
            self.args.nan_policy,
            self.args.max_nan_skips,
            # fp16's GradScaler skips inf gradients itself; sharded gradients differ per process.
            parameters=None if (self.args.fp16 or sharded) else self._all_trainable_parameters,
        )
        self.sampler_state = SamplerStateCallback()
        for callback in (ObjectiveStepCallback(self.objective), ObjectiveCheckpointCallback(self.objective),
                         self.nan_guard, self.sampler_state):  # fmt: skip
            self.add_callback(callback)
        self._add_data_callbacks()

    def _init_trainer(
        self, model: Any, args: ContrastiveTrainingArguments, collator: Any, train: Any, processing: Any, kwargs: Any
    ) -> None:
        """``Trainer.__init__``. Evaluators are an evaluation too: with them and no ``eval_dataset`` the
        strategy is hidden from Trainer's check, which asks for an ``eval_dataset``."""
        if self.evaluators and args.eval_strategy == IntervalStrategy.NO:
            args.eval_strategy = IntervalStrategy.EPOCH
            logger.info("evaluators given without an eval_strategy: they run at the end of every epoch")
        strategy = args.eval_strategy
        hide = bool(self.evaluators) and kwargs.get("eval_dataset") is None and strategy != "no"
        if hide:
            args.eval_strategy = IntervalStrategy.NO
        try:
            super().__init__(
                model=model, args=args, data_collator=collator, train_dataset=train, processing_class=processing, **kwargs
            )
        finally:
            if hide:
                args.eval_strategy = strategy

    def _all_trainable_parameters(self) -> list[nn.Parameter]:
        assert self.model is not None
        model_params = [p for p in self.model.parameters() if p.requires_grad]
        return model_params + self.objective.trainable_parameters()

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
        self.nan_guard.guard_optimizer(optimizer)
        return optimizer

    def _clip_grad_norm(self, model: nn.Module) -> Any:
        """Private Trainer hook (pinned): clip to ``max_grad_norm`` over one global norm of the model's
        and the objective's gradients (Trainer's own clips the model's alone). Returns that norm."""
        extra = [p for p in self.objective.trainable_parameters() if p.grad is not None]
        if not extra or self.is_deepspeed_enabled:  # DeepSpeed clips inside its engine
            total = super()._clip_grad_norm(model)
        else:
            model_norm = self.accelerator.clip_grad_norm_(model.parameters(), float("inf"))  # unscales AMP grads
            extra_norm = torch.nn.utils.get_total_norm([p.grad for p in extra if p.grad is not None])
            total = torch.linalg.vector_norm(torch.stack([model_norm.float(), extra_norm.float().to(model_norm.device)]))
            torch.nn.utils.clip_grads_with_norm_([*model.parameters(), *extra], self.args.max_grad_norm, total)
        self.nan_guard.use_grad_norm(total)  # the guard checks this norm instead of computing its own
        return total

    def get_train_dataloader(self) -> Any:
        """Trainer's dataloader; for a :class:`~hfcontrast.collators.MultiSourceDataset`, single-source
        batches (:mod:`hfcontrast.trainer.multi_source`), whose sampler state goes into checkpoints."""
        if is_stream(self.train_dataset):
            return stream_dataloader(self.train_dataset, self.data_collator, self.args)
        if isinstance(self.train_dataset, MultiSourceDataset):
            loader, self.sampler_state.sampler = multi_source_dataloader(
                self.train_dataset, self.data_collator, self.args, self.accelerator
            )
            return loader
        return super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        """Trainer's, or an empty loader when the evaluation is the evaluators alone."""
        if eval_dataset is None and self.eval_dataset is None and self.evaluators:
            return EvaluatorsOnly([])  # type: ignore[arg-type]
        return super().get_eval_dataloader(eval_dataset)

    # ----------------------------------------------------------------- the step
    def build_views(self, inputs: dict[str, Any], training: bool) -> dict[str, Any]:
        """Draw the views on the device (``device_views``, e.g. kornia from raw images), seeded by the
        step and the micro-batch's position in it, so a resumed run draws the same views."""
        if self.device_views is None:
            return inputs
        key = (training, self.state.global_step)
        micro = self._view_counts.get(key, -1) + 1
        self._view_counts = {key: micro}
        return self.device_views(inputs, step=self.state.global_step, micro=micro if training else -1 - micro)

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
        """Trainer's step; under GradCache, ``compute_loss`` embeds through a :class:`GradCache` and its replay
        follows Trainer's backward. On a step's last micro-batch the objective's own gradients are averaged
        over processes; the loss goes past the non-finite guard."""
        if self._checked_step is None:
            self._checked_step = self.state.global_step
        # The losses check tensor values (host syncs) on the run's first step only: the set-up is validated once.
        with value_checks(self.state.global_step == self._checked_step):
            if not self.args.gradcache:
                loss = super().training_step(model, inputs, num_items_in_batch)
            else:
                rows = self.args.gradcache_chunk_size or _MANY_ROWS
                self._gradcache = GradCache(rows, self.compute_loss_context_manager, tokens=self.args.gradcache_tokens)
                try:
                    with equal_batches(self.accelerator.even_batches):  # every process replays as many chunks
                        loss = super().training_step(model, inputs, num_items_in_batch)
                        self._gradcache.replay(model)
                finally:
                    self._gradcache = None
        if self.accelerator.sync_gradients and is_distributed():
            for param in self.objective.trainable_parameters():
                # Every rank joins the all-reduce, also one whose loss did not reach this parameter.
                param.grad = all_reduce_mean(param.grad if param.grad is not None else torch.zeros_like(param))
        self.nan_guard.check_loss(loss)
        return loss

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The objective's loss over the embedded views. ``num_items_in_batch`` is not used, on purpose: the loss
        is a mean over the batch's rows (every row is a query), so Trainer divides it by the accumulation steps
        (``loss_is_scaled_for_ga = False``) and a step's gradient is the mean of its micro-batches'."""
        inputs = self.build_views(inputs, model.training)
        if self.args.channels_last:
            inputs = channels_last_views(inputs)
        views = self.online_views(inputs)
        self.objective.train(model.training)
        chunk = self.args.gradcache_chunk_size
        lengths = inputs.get(LENGTHS_KEY)
        if self._gradcache is not None and torch.is_grad_enabled():
            embeddings = self._gradcache.embed(model, views, lengths)
        elif chunk is not None and not torch.is_grad_enabled():  # evaluation: no graph, chunked forwards
            embeddings = embed_views_chunked(model, views, chunk, lengths)
        else:
            embeddings = embed_views(model, views, lengths, self.args.view_forwards, packed=self.args.padding_free)
        with equal_batches(self.accelerator.even_batches), self._loss_compilation():
            output = self.objective(embeddings, inputs)
        if model.training:
            self.record_stats(output)
        return (output.loss, embeddings) if return_outputs else output.loss

    def _loss_compilation(self) -> contextlib.AbstractContextManager[Any]:
        """With ``torch_compile``, the objective's pure losses run compiled like the model
        (:func:`~hfcontrast.losses.compiled_losses`: the same backend and mode)."""
        if not self.args.torch_compile:
            return contextlib.nullcontext()
        return compiled_losses(self.args.torch_compile_backend or "inductor", self.args.torch_compile_mode)

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        # Private, and kept on purpose: Trainer's own move of a (nested) batch to the device, with its
        # DeepSpeed/FSDP dtype rules. tests/test_trainer_hooks.py fails loudly if transformers changes it.
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

    def evaluation_loop(
        self,
        dataloader: Any,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        """Trainer's loop over ``eval_dataset`` (if any), then every evaluator: ``<prefix>_<name>_<metric>``.

        The evaluators alone skip Trainer's loop: it would prepare the model for evaluation, and accelerate
        then leaves a model prepared so before ``train`` out of DDP (each process would train its own copy)."""
        if isinstance(dataloader, EvaluatorsOnly):
            output = EvalLoopOutput(predictions=None, label_ids=None, metrics={}, num_samples=0)  # type: ignore[arg-type]
        else:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        model = self.accelerator.unwrap_model(self.model)
        for evaluator in self.evaluators:
            for key, value in evaluator(model).items():
                output.metrics[f"{metric_key_prefix}_{key}"] = float(value)  # type: ignore[index]
        return output
