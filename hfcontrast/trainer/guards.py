"""A diverging run stops: non-finite losses and gradients are caught at the optimizer step they appear in.

Trainer filters NaN losses out of its logs (``logging_nan_inf_filter``) and steps on, so a run whose
weights turned NaN used to finish "successfully". :class:`NonFiniteGuard` checks, before each optimizer step,
the losses of the step's micro-batches and the gradient norm together: the flags are summed on the device
(and over processes, one all-reduce), and the host reads them once, the step's only host sync of the guard.
Policy ``stop`` (the default) raises :class:`NonFiniteError` naming the step and the last finite loss; ``skip``
drops that optimizer step (the optimizer does not move, its state untouched) up to ``max_skips`` times, then
stops. Why one read per step is still safe: the optimizer never applies a step whose loss or gradient was not
finite, so weights stay finite, and a model with non-finite weights is never exported
(:func:`check_finite_model`).
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
    """Collects the micro-batches' losses (:meth:`check_loss`, no sync) and checks them with the gradient norm
    (``on_pre_optimizer_step``, one sync); see the module doc. ``grad_norm`` may be handed over by the clipping
    that computed it already (:meth:`use_grad_norm`), else the guard computes it over ``parameters()``."""

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
        self._bad_losses: Tensor | None = None
        self._loss: Tensor | None = None
        self._grad_norm: Tensor | None = None

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._step = state.global_step + 1

    def check_loss(self, loss: Tensor) -> None:
        """After a micro-batch: count a non-finite loss on the device (read at the optimizer step)."""
        bad = (~torch.isfinite(loss.detach())).sum()
        self._bad_losses = bad if self._bad_losses is None else self._bad_losses + bad
        self._loss = loss.detach()

    def use_grad_norm(self, norm: Any) -> None:
        """The global gradient norm of this step, when clipping computed it already (ignored when the guard does
        not check gradients: fp16's scaler handles them)."""
        self._grad_norm = norm if isinstance(norm, Tensor) and self.parameters is not None else None

    def _norm(self) -> Tensor | None:
        if self._grad_norm is not None or self.parameters is None or self.skip_next_step:
            return self._grad_norm
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else None

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        bad_losses, loss, norm = self._bad_losses, self._loss, self._norm()
        self._bad_losses = self._loss = self._grad_norm = None
        if bad_losses is None and norm is None:
            return
        device = (bad_losses if bad_losses is not None else norm).device  # type: ignore[union-attr]
        zero = torch.zeros((), device=device)
        loss_flag = bad_losses.float() if bad_losses is not None else zero
        grad_flag = (~torch.isfinite(norm)).float().to(device) if norm is not None else zero
        stacked = torch.stack([loss_flag, grad_flag])
        if is_distributed():
            stacked = all_reduce_sum(stacked)
        if not bool(stacked.any()):  # the guard's one host sync per optimizer step
            if loss is not None:
                self._last_finite = (self._step, loss)
            return
        if bool(stacked[0] > 0):
            shown = float(loss) if loss is not None else float("nan")
            self._trip(f"the loss is {shown}" + (" on some process" if is_distributed() else ""))
        else:
            self._trip(f"the gradient norm is {float(norm)}")  # type: ignore[arg-type]

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

