"""The objective contract: embeddings of named views in, loss and statistics out; and what a model must be.

An objective is an ``nn.Module`` so that everything a run needs besides the encoder (queues,
momentum encoders, predictor heads, learnable loss parameters) is one ``state_dict`` that the
trainer saves in every checkpoint and never exports with the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..losses import alignment, top1_accuracy, uniformity


@runtime_checkable
class Encoder(Protocol):
    """What objectives, evaluators and the trainer need of a model (every hfcontrast encoder is one).

    * ``model(**inputs, use_head=True)`` returns an output whose ``embeddings`` field is ``[batch, dim]``:
      the training-time embedding (projection heads on), in eval mode too;
    * ``train_embedding_dim`` is that embedding's width (queues and predictors are sized with it).
    """

    @property
    def train_embedding_dim(self) -> int: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def encode(model: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """The embedding a loss sees: ``model(**inputs, use_head=True).embeddings`` (:class:`Encoder`). A DDP
    wrapper forwards the call to its module; a tuple output's first item counts as the embedding."""
    output = model(**inputs, use_head=True)
    return output.embeddings if hasattr(output, "embeddings") else output[0]


def embedding_width(encoder: nn.Module | None, embedding_dim: int | None, owner: str) -> int:
    """``embedding_dim`` if given, else the :class:`Encoder`'s ``train_embedding_dim``."""
    if embedding_dim is not None:
        return int(embedding_dim)
    if isinstance(encoder, Encoder):
        return int(encoder.train_embedding_dim)
    raise ValueError(
        f"{owner} needs the width of the training-time embedding: pass embedding_dim=<int>, or an encoder "
        "with train_embedding_dim (every hfcontrast model has it)"
    )


@dataclass
class ObjectiveOutput:
    """``loss``: scalar to backpropagate; ``stats``: detached scalars to log (``top1``, ``alignment``...)."""

    loss: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)


#: What an objective's views are: text (``anchor`` / ``positive`` / ``negative``), images (``query`` /
#: ``key`` / ``local_*``) or image-text pairs (``image`` / ``text``). The trainer's default collator follows it.
Modality = Literal["text", "image", "image_text"]


class ContrastiveObjective(nn.Module):
    """Base class. Subclasses implement :meth:`forward` and, when they hold state that depends on the
    trained model (a momentum copy, a queue or predictor sized by its embedding, its ``logit_scale``),
    :meth:`build`.

    What an objective declares, for the trainer and its default collator:

    * ``online_views``: names of the views the trainer embeds with the trained model, when present in
      the batch (``None``: every view). Views not listed are left to the objective (e.g. MoCo's key
      view, which goes through the momentum encoder);
    * ``modality``: which views it reads (:data:`Modality`); ``multi_crop``: it also takes multi-crop's
      ``local_*`` views; ``augmentation``: its paper's view pipeline (``simclr``, ``mocov2``, ``byol``);
    * ``needs_row_ids``: ``batch["ids"]`` must be each row's dataset index (PCL looks its clusters up by row);
    * ``tag``: the method's model-card tag and citation key (``simcse``, ``moco-v2``, ...);
    * :meth:`training_callbacks`: callbacks its state needs during training (PCL's cluster refresh).

    **Binding.** Built with ``encoder=`` (or, where only the width matters, ``embedding_dim=``), an
    objective builds its state at once. Without them it is built by :meth:`bind`, which
    :class:`~hfcontrast.trainer.ContrastiveTrainer` calls with the model it trains, so
    ``ContrastiveTrainer(model=model, objective=MoCo())`` needs the model once.
    """

    online_views: tuple[str, ...] | None = None
    multi_crop: bool = False
    modality: ClassVar[Modality] = "image"
    augmentation: str | None = None
    needs_row_ids: bool = False
    tag: str = "contrastive"

    def __init__(self) -> None:
        super().__init__()
        self._built = False
        self.register_forward_pre_hook(_require_built)

    @property
    def is_built(self) -> bool:
        """True once the model-dependent state exists (:meth:`bind`)."""
        return self._built

    def bind(self, model: nn.Module | None = None, *, num_rows: int | None = None) -> ContrastiveObjective:
        """Build the state that depends on ``model`` (the unwrapped model being trained), once; an objective
        already built (with ``encoder=``) stays as it is. ``num_rows`` is the training set's size, for
        objectives with per-row state (PCL). Returns the objective."""
        if not self._built:
            self.build(model, num_rows=num_rows)
            self._built = True
        return self

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """Create the model-dependent state (see :meth:`bind`); nothing by default."""

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        raise NotImplementedError

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        """Called once per optimizer step with the unwrapped model: momentum updates, queue flushes."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer must update (predictors, learnable loss parameters)."""
        return [p for p in self.parameters() if p.requires_grad]

    def training_callbacks(self, dataset: Any, collator: Any, present: Sequence[Any] = ()) -> list[Any]:
        """``TrainerCallback``s the objective needs, given the training rows, their collator and the callbacks
        the trainer has already (``present``: one the caller added with its own settings stands)."""
        return []


def _require_built(objective: ContrastiveObjective, args: Any) -> None:
    if not objective.is_built:
        raise RuntimeError(
            f"{type(objective).__name__} is not bound to a model yet: pass encoder=<the model being trained>, "
            "or train it with ContrastiveTrainer, which binds it"
        )


def scalar_stat(value: float, like: Tensor) -> Tensor:
    """A logged number as a float32 scalar on ``like``'s device (NCCL all-reduces only device tensors)."""
    return torch.full((), float(value), dtype=torch.float32, device=like.device)  # a fill kernel: no host copy


@torch.no_grad()
def pair_stats(query: Tensor, positive: Tensor, logits: Tensor | None, labels: Tensor | None) -> dict[str, Tensor]:
    """Top-1 accuracy of the positive, alignment and uniformity (Wang & Isola 2020) of a batch."""
    stats = {"alignment": alignment(query.detach(), positive.detach())}
    if query.shape[0] > 1:
        stats["uniformity"] = uniformity(query.detach())
    if logits is not None and labels is not None:
        stats["top1"] = top1_accuracy(logits.detach(), labels)
    return stats


@dataclass(frozen=True)
class ModelRef:
    """A reference to the trained model that is not a submodule: its parameters belong to the model
    (and its optimizer group), not to the objective's state."""

    model: nn.Module | None

    def scalar(self, name: str, owner: str) -> Tensor:
        value = getattr(self.model, name, None)
        if not isinstance(value, Tensor):
            raise ValueError(f"{owner} needs encoder=<a dual encoder with a {name!r}>")
        return value.to(torch.promote_types(value.dtype, torch.float32))  # never in half precision
