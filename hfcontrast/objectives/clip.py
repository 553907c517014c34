"""Image-text objectives over the views ``image`` and ``text``: CLIP (softmax) and SigLIP (sigmoid).

**CLIP** (Radford et al. 2021): with ``s = exp(logit_scale)`` read from the dual encoder,

``L = 1/2 [CE(s cos(I, [T_all; Q_T]), y) + CE(s cos(T, [I_all; Q_I]), y)]``,  ``y = arange(n) + offset``

where ``I, T`` are this process's ``n`` image/text embeddings, ``I_all, T_all`` those of every process
(gathered with gradient; this process's rows start at ``offset``), and ``Q_I, Q_T`` optional queues of
past image/text embeddings used as extra negatives in each direction (MoCo-style, He et al. 2020). The
queued keys come from an EMA copy of the whole dual encoder when ``momentum`` is set (consistent keys
over time), else they are the detached online embeddings. The in-batch logits always use the online
embeddings of both towers, as in CLIP, so both towers get gradients from every term.

**SigLIP** (Zhai et al. 2023): ``L = -(1/n) sum_i sum_j log sigmoid(z_ij (s cos(I_i, T_all_j) + b))``,
``z_ij = 1`` iff ``j = i + offset``; ``s = exp(logit_scale)`` and ``b = logit_bias`` from the model.

The temperature (and SigLIP's bias) are parameters of the model (inference needs them); the objective
keeps a plain reference to the unwrapped model, not a submodule, so they are neither saved in the
objective's state nor registered twice, and under DDP the reference is the same ``Parameter`` the
wrapper updates. ``after_optimizer_step`` clamps ``logit_scale`` to ``ln 100`` (CLIP) after every step.

DDP: train with ``ddp_find_unused_parameters=False``. The scale is used outside the model's ``forward``
and the trainer runs one forward per view group; with ``find_unused_parameters=True`` (transformers'
default for a ``PreTrainedModel``) DDP marks ``logit_scale`` unused at the forward and then fails when
its gradient arrives ("marked as ready twice").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import gather_with_grad
from ..losses import LossOutput, clip_loss, siglip_loss, top1_accuracy, uniformity
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats
from .options import NegativeOptions, example_roles, gathered
from .state import KeyQueue, MomentumEncoder


def _local(tensor: Tensor) -> tuple[Tensor, int]:
    return tensor, 0


def _at_least_fp32(value: Tensor) -> Tensor:
    """Temperature arithmetic in fp32 (or fp64 for a fp64 model), never in half precision."""
    return value.to(torch.promote_types(value.dtype, torch.float32))


class _ImageTextObjective(ContrastiveObjective):
    """Shared plumbing: views ``image``/``text``, the model reference, gathering, statistics."""

    def __init__(self, encoder: nn.Module | None, gather: bool) -> None:
        super().__init__()
        # Not a submodule: the model's parameters belong to the model (and its optimizer group).
        object.__setattr__(self, "_encoder", encoder)
        self.gather = gather

    @property
    def encoder(self) -> nn.Module | None:
        return self.__dict__["_encoder"]

    def _model_scalar(self, name: str) -> Tensor:
        value = getattr(self.encoder, name, None)
        if not isinstance(value, Tensor):
            raise ValueError(f"{type(self).__name__} needs encoder=<a dual encoder with a {name!r}>")
        return value

    def _gathered(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor, int]:
        gather = gather_with_grad if self.gather else _local
        all_image, offset = gather(image)
        all_text, text_offset = gather(text)
        if offset != text_offset:
            raise ValueError(f"image and text views have different batch layouts (offsets {offset}, {text_offset})")
        return all_image, all_text, offset

    @staticmethod
    def _stats(image: Tensor, text: Tensor, scale: Tensor, out: LossOutput) -> dict[str, Tensor]:
        """Alignment, uniformity of each modality (Wang & Isola 2020), image->text top-1, and the scale
        ``logit_scale`` (logged exponentiated: ``s = 1 / tau``) and ``temperature`` ``tau``."""
        stats = pair_stats(image, text, out.logits, out.labels)
        top1 = stats.pop("top1", None)
        if top1 is not None:
            stats["top1_image_to_text"] = top1
        if text.shape[0] > 1:
            stats["uniformity_text"] = uniformity(text.detach())
        scale = scale.detach().float().to(image.device)
        stats["logit_scale"] = scale
        stats["temperature"] = 1.0 / scale
        return stats

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        clamp = getattr(model, "clamp_logit_scale_", None) or getattr(self.encoder, "clamp_logit_scale_", None)
        if clamp is not None:
            clamp()


class CLIP(_ImageTextObjective):
    """CLIP's symmetric InfoNCE over gathered (and optionally queued) image-text pairs.

    Args:
        encoder: the :class:`~hfcontrast.models.ContrastiveDualEncoder` being trained (unwrapped). Its
            ``logit_scale`` gives ``s = exp(logit_scale)``; it is the model the momentum copy is made of
            and gives the queue width (``config.projection_dim``).
        gather: use the embeddings of every process as negatives (with gradient).
        queue_size: ``K`` past image and ``K`` past text embeddings kept as extra negatives (0: none).
        momentum / final_momentum: encode the queued keys with an EMA copy of the dual encoder, with
            BYOL's cosine schedule from ``momentum`` to ``final_momentum`` (needs ``queue_size > 0``).
        temperature: a fixed ``tau`` instead of the model's ``logit_scale`` (only for an encoder
            without one, e.g. two separate towers, or ``encoder=None`` for a bare objective).
        embedding_dim: queue width, if the encoder's config does not give it.
        options: :class:`NegativeOptions`, applied in both directions (image->text and text->image):
            false-negative masking by ``batch["ids"]`` (the image id: rows sharing an image, or a
            caption, are not negatives of each other), FNCL, debiased, hard-negative ``beta``, MoCHi on
            the queues, SupCon by ``batch["labels"]``, DCL, chunked loss. The queues store the ids/labels.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        gather: bool = True,
        queue_size: int = 0,
        momentum: float | None = None,
        final_momentum: float | None = None,
        temperature: float | None = None,
        embedding_dim: int | None = None,
        options: NegativeOptions | None = None,
    ) -> None:
        super().__init__(encoder, gather)
        self.options = options or NegativeOptions()
        self.options.check("CLIP", has_queue=queue_size > 0)
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        has_scale = isinstance(getattr(encoder, "logit_scale", None), Tensor)
        if temperature is None and not has_scale:
            raise ValueError("CLIP needs encoder=<a dual encoder with logit_scale> or a fixed temperature=")
        if temperature is not None and has_scale:
            raise ValueError("the encoder has a logit_scale; set learnable_logit_scale=False in its config "
                             "instead of passing temperature= (an unused parameter breaks DDP)")
        self.temperature = temperature
        self.key_encoder: MomentumEncoder | None = None
        if momentum is not None:
            if encoder is None or queue_size == 0:
                raise ValueError("momentum encodes the queued keys: it needs encoder= and queue_size > 0")
            self.key_encoder = MomentumEncoder(encoder, momentum, final_momentum)
        self.image_queue: KeyQueue | None = None
        self.text_queue: KeyQueue | None = None
        if queue_size > 0:
            config = getattr(encoder, "config", None)
            dim = embedding_dim or getattr(config, "projection_dim", None)
            if dim is None:
                raise ValueError("queue_size > 0 needs embedding_dim (or an encoder with config.projection_dim)")
            store = self.options.queue_stores is not None
            self.image_queue = KeyQueue(queue_size, int(dim), store_ids=store)
            self.text_queue = KeyQueue(queue_size, int(dim), store_ids=store)

    def logit_scale(self) -> Tensor:
        """``s = exp(logit_scale)`` in fp32 (differentiable when the model's scale is learnable)."""
        if self.temperature is not None:
            return torch.tensor(1.0 / self.temperature)
        return _at_least_fp32(self._model_scalar("logit_scale")).exp()

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        image, text = embeddings["image"], embeddings["text"]
        all_image, all_text, offset = self._gathered(image, text)
        scale = self.logit_scale().to(image.device)
        queued_image = self.image_queue.negatives() if self.image_queue is not None else None
        queued_text = self.text_queue.negatives() if self.text_queue is not None else None
        if self.options.active:
            out = self._options_loss(image, text, all_image, all_text, offset, scale, queued_image, queued_text, batch)
        else:
            out = clip_loss(
                image,
                text,
                all_image,
                all_text,
                logit_scale=scale,
                offset=offset,
                extra_image_negatives=queued_image,
                extra_text_negatives=queued_text,
            )
        if self.training and self.image_queue is not None and self.text_queue is not None:
            if self.key_encoder is not None:
                image_keys, text_keys = self.key_encoder(batch["image"]), self.key_encoder(batch["text"])
            else:
                image_keys, text_keys = image.detach(), text.detach()
            values = self.options.queue_values(batch, image.shape[0], image.device)
            self.image_queue.stage(F.normalize(image_keys.float(), dim=-1), values)
            self.text_queue.stage(F.normalize(text_keys.float(), dim=-1), values)
        stats = self._stats(image, text, scale, out)
        assert out.labels is not None
        if out.logits is None:
            stats["top1_image_to_text"] = out.stats["top1"]
            stats["top1_text_to_image"] = out.stats["top1_text_to_image"]
            stats["negatives"] = out.stats["negatives"]
        else:
            stats["top1_text_to_image"] = top1_accuracy(out.stats["logits_per_text"].detach(), out.labels)
            stats["negatives"] = torch.tensor(float(out.logits.shape[1] - 1), device=image.device)
        if self.key_encoder is not None:
            stats["momentum"] = self.key_encoder.current_momentum.detach().clone()
        return ObjectiveOutput(out.loss, stats)

    def _options_loss(
        self,
        image: Tensor,
        text: Tensor,
        all_image: Tensor,
        all_text: Tensor,
        offset: int,
        scale: Tensor,
        queued_image: Tensor | None,
        queued_text: Tensor | None,
        batch: Mapping[str, Any],
    ) -> LossOutput:
        """Both directions with :class:`NegativeOptions`: rows ``I`` vs ``[T_all; Q_T]`` and ``T`` vs ``[I_all; Q_I]``."""
        options, n, device = self.options, image.shape[0], image.device
        ids, classes = options.example_ids(batch, n, device), options.example_labels(batch, n, device)
        all_ids, all_classes = gathered(ids, self.gather), gathered(classes, self.gather)
        positive_index = torch.arange(n, device=device) + offset
        total = all_text.shape[0]

        def direction(rows: Tensor, columns: Tensor, queued: Tensor | None, queue: KeyQueue | None) -> LossOutput:
            stored = queue.ids() if queue is not None and queued is not None and options.queue_stores else None
            roles = example_roles(positive_index, ids, classes, all_ids, all_classes, stored=stored)
            candidates = columns if queued is None else torch.cat([columns, queued.to(columns.dtype)])
            return options.contrast(
                rows, candidates, roles, temperature=1.0 / scale, queue_start=total if queued is not None else None
            )

        image_to_text = direction(image, all_text, queued_text, self.text_queue)
        text_to_image = direction(text, all_image, queued_image, self.image_queue)
        stats = dict(image_to_text.stats)
        stats["top1_text_to_image"] = text_to_image.stats["top1"]
        stats["loss_image_to_text"] = image_to_text.loss.detach()
        stats["loss_text_to_image"] = text_to_image.loss.detach()
        loss = 0.5 * (image_to_text.loss + text_to_image.loss)
        return LossOutput(loss=loss, logits=None, labels=positive_index, stats=stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        super().after_optimizer_step(model, step, max_steps)
        if self.key_encoder is not None:
            self.key_encoder.update(model, step, max_steps)
        for queue in (self.image_queue, self.text_queue):
            if queue is not None:
                queue.flush()


class SigLIP(_ImageTextObjective):
    """SigLIP's pairwise sigmoid loss with the model's ``logit_scale`` and ``logit_bias``.

    Each process scores its ``n`` local images against the texts of every process (gathered with
    gradient, positives at ``offset``), so the mean of the per-process losses (DDP's gradient average)
    equals the single-process loss on the concatenated batch. Build the model with
    ``logit_scale_init_value=log(10)`` and ``logit_bias_init_value=-10`` (the paper's initialisation).

    Args:
        encoder: the dual encoder being trained (unwrapped), with ``logit_scale`` and ``logit_bias``.
        gather: score against the texts of every process.
    """

    def __init__(self, encoder: nn.Module, *, gather: bool = True) -> None:
        super().__init__(encoder, gather)
        self._model_scalar("logit_scale")
        self._model_scalar("logit_bias")

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        image, text = embeddings["image"], embeddings["text"]
        gather = gather_with_grad if self.gather else _local
        all_text, offset = gather(text)
        scale = _at_least_fp32(self._model_scalar("logit_scale")).exp()
        bias = _at_least_fp32(self._model_scalar("logit_bias"))
        out = siglip_loss(image, text, None, all_text, logit_scale=scale, logit_bias=bias, offset=offset)
        stats = self._stats(image, text, scale, out)
        stats["logit_bias"] = bias.detach()
        return ObjectiveOutput(out.loss, stats)
