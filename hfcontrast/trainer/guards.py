"""A diverging run stops: non-finite losses and gradients are caught at the step they appear.

Trainer filters NaN losses out of its logs (``logging_nan_inf_filter``) and steps on, so a run whose
weights turned NaN used to finish "successfully". :class:`NonFiniteGuard` checks every micro-batch's
loss (all processes agree through one all-reduce) and, before each optimizer step, the gradient norm
(identical on every process after DDP's all-reduce). Policy ``stop`` (the default) raises
:class:`NonFiniteError` naming the step and the last finite loss; ``skip`` drops that optimizer step
(the optimizer does not move, its state untouched) up to ``max_skips`` times, then stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..distributed import all_reduce_sum, is_distributed

logger = logging.getLogger(__name__)
NAN_POLICIES = ("stop", "skip")


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient norm."""


class NonFiniteGuard(TrainerCallback):
    """Watches losses (:meth:`check_loss`) and gradients (``on_pre_optimizer_step``); see the module doc."""

    def __init__(self, policy: str = "stop", max_skips: int = 0, parameters: Callable[[], Any] | None = None) -> None:
        if policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {policy!r}")
        if max_skips < 0:
            raise ValueError(f"max_nan_skips must be >= 0, got {max_skips}")
        self.policy, self.max_skips = policy, max_skips
        self.parameters = parameters
        self.skipped = 0
        self.skip_next_step = False
        self._last_finite: tuple[int, Tensor] | None = None
        self._step = 0

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._step = state.global_step + 1

    def check_loss(self, loss: Tensor) -> None:
        """After a micro-batch: stop (or mark the step skipped) if any process's loss is not finite."""
        bad = (~torch.isfinite(loss.detach())).float().sum()
        if is_distributed():
            bad = all_reduce_sum(bad)
        if bool(bad > 0):
            self._trip(f"the loss is {float(loss.detach())}" + (" on some process" if is_distributed() else ""))
        else:
            self._last_finite = (self._step, loss.detach())

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.skip_next_step or self.parameters is None:
            return
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        if not bool(torch.isfinite(norm)):
            self._trip(f"the gradient norm is {float(norm)}")

    def _trip(self, what: str) -> None:
        last = (
            f"the last finite loss was {float(self._last_finite[1]):.6g} at step {self._last_finite[0]}"
            if self._last_finite is not None
            else "no step had a finite loss"
        )
        if self.policy == "skip" and self.skipped < self.max_skips:
            if not self.skip_next_step:
                self.skipped += 1
                logger.warning("step %d: %s; skipping the step (%d of max_nan_skips=%d)",
                               self._step, what, self.skipped, self.max_skips)  # fmt: skip
            self.skip_next_step = True
            return
        hint = (
            f"max_nan_skips={self.max_skips} steps were skipped already"
            if self.policy == "skip"
            else "lower learning_rate, check the data, or pass nan_policy='skip' with max_nan_skips=N"
        )
        raise NonFiniteError(f"training diverged at step {self._step}: {what}; {last}. Stopped: {hint}")

    def guard_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``optimizer.step`` a no-op (gradients dropped) for steps marked skipped."""
        step = optimizer.step

        def guarded_step(*args: Any, **kwargs: Any) -> Any:
            if self.skip_next_step:
                self.skip_next_step = False
                optimizer.zero_grad(set_to_none=True)
                return None
            return step(*args, **kwargs)

        optimizer.step = guarded_step  # type: ignore[method-assign]


def non_finite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``module`` that hold a NaN or an infinity."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_finite_model(module: torch.nn.Module) -> None:
    """Refuse to export a model with non-finite weights."""
    bad = non_finite_parameters(module)
    if bad:
        raise NonFiniteError(
            f"the model has non-finite values in {len(bad)} tensors ({', '.join(bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}); it is not exported"
        )

