"""Image-text objectives over the views ``image`` and ``text``: CLIP (softmax) and SigLIP (sigmoid).

**CLIP** (Radford et al. 2021), :func:`~hfcontrast.losses.clip_loss` with each direction on the engine (the
negative handling of :class:`NegativeConfig`), ``s = exp(logit_scale)`` read from the dual encoder:

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
reads them through a :class:`ModelRef`, a plain reference that is not a submodule, so they are neither
saved in the objective's state nor registered twice, and under DDP the reference is the same
``Parameter`` the wrapper updates. ``after_optimizer_step`` clamps ``logit_scale`` to ``ln 100`` (CLIP)
after every step.

DDP: train with ``ddp_find_unused_parameters=False``. The scale is used outside the model's ``forward``
and the trainer runs one forward per view group; with ``find_unused_parameters=True`` (transformers'
default for a ``PreTrainedModel``) DDP marks ``logit_scale`` unused at the forward and then fails when
its gradient arrives ("marked as ready twice").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import gather
from ..losses import LossOutput, clip_loss, siglip_loss, top1_accuracy, uniformity
from ..losses.clip import Direction
from .base import ContrastiveObjective, ModelRef, ObjectiveOutput, embedding_width, pair_stats, scalar_stat
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .contrast import InfoNCEObjective
from .guide import Guide
from .state import KeyQueue, MomentumEncoder, check_momentum


def _image_text_stats(image: Tensor, text: Tensor, scale: Tensor) -> dict[str, Tensor]:
    """Alignment, uniformity of each modality (Wang & Isola 2020), and the scale ``s = 1 / tau``."""
    stats = pair_stats(image, text, None, None)
    if text.shape[0] > 1:
        stats["uniformity_text"] = uniformity(text.detach())
    scale = scale.detach().float().to(image.device)
    stats["logit_scale"], stats["temperature"] = scale, 1.0 / scale
    return stats


class CLIP(InfoNCEObjective):
    """CLIP's symmetric InfoNCE over gathered (and optionally queued) image-text pairs.

    Args:
        encoder: the :class:`~hfcontrast.models.ContrastiveDualEncoder` being trained (unwrapped). Its
            ``logit_scale`` gives ``s = exp(logit_scale)``; it is the model the momentum copy is made of
            and gives the queue width (``train_embedding_dim``).
        gather: use the embeddings of every process as negatives (with gradient).
        queue_size: ``K`` past image and ``K`` past text embeddings kept as extra negatives (0: none).
        momentum / final_momentum: encode the queued keys with an EMA copy of the dual encoder, with
            BYOL's cosine schedule from ``momentum`` to ``final_momentum`` (needs ``queue_size > 0``).
        temperature: a fixed ``tau`` instead of the model's ``logit_scale`` (only for an encoder
            without one, e.g. two separate towers, or ``encoder=None`` for a bare objective).
        embedding_dim: queue width, if the encoder does not give it.
        negatives: :class:`NegativeConfig`, applied in both directions (image->text and text->image):
            false-negative masking by ``batch["ids"]`` (the image id: rows sharing an image, or a
            caption, are not negatives of each other), FNCL, debiased, hard-negative ``beta``, MoCHi on
            the queues, SupCon by ``batch["labels"]``, DCL, chunked loss. The queues store the ids/labels.
        matryoshka / chunking: :class:`MatryoshkaConfig` (nested widths) and :class:`ChunkingConfig`
            (the loss a slice of rows at a time), as for every :class:`InfoNCEObjective`.
        guide: a :class:`~hfcontrast.objectives.Guide` (GISTEmbed) embedding both views (a frozen dual
            encoder, or ``batch["guide_image"]`` / ``batch["guide_text"]``); the queues store its embeddings.
    """

    modality = "image_text"
    tag = "clip"
    key_encoder: MomentumEncoder | None
    image_queue: KeyQueue | None
    text_queue: KeyQueue | None

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
        negatives: NegativeConfig | None = None,
        matryoshka: MatryoshkaConfig | None = None,
        chunking: ChunkingConfig | None = None,
        guide: Guide | None = None,
    ) -> None:
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        super().__init__(
            "CLIP", temperature, gather=gather, negatives=negatives, matryoshka=matryoshka, chunking=chunking,
            guide=guide, has_queue=queue_size > 0,
        )  # fmt: skip
        if momentum is not None:
            if queue_size == 0:
                raise ValueError("momentum encodes the queued keys: it needs queue_size > 0")
            check_momentum(momentum, final_momentum)
        self.queue_size, self.embedding_dim = queue_size, embedding_dim
        self.momentum, self.final_momentum = momentum, final_momentum
        self.model_ref = ModelRef(None)
        self.key_encoder, self.image_queue, self.text_queue = None, None, None
        bare = temperature is not None and momentum is None and (queue_size == 0 or embedding_dim is not None)
        if encoder is not None or bare:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """Read the scale from ``encoder``'s ``logit_scale`` (unless ``temperature`` is fixed); the momentum
        copy of ``encoder`` and the two queues, as wide as its embedding."""
        self.model_ref = ModelRef(encoder)
        has_scale = isinstance(getattr(encoder, "logit_scale", None), Tensor)
        if self.temperature is None and not has_scale:
            raise ValueError("CLIP needs encoder=<a dual encoder with logit_scale> or a fixed temperature=")
        if self.temperature is not None and has_scale:
            raise ValueError("the encoder has a logit_scale; set learnable_logit_scale=False in its config "
                             "instead of passing temperature= (an unused parameter breaks DDP)")
        if self.momentum is not None:
            if encoder is None:
                raise ValueError("momentum encodes the queued keys with a copy of the model: it needs encoder=")
            self.key_encoder = MomentumEncoder(encoder, self.momentum, self.final_momentum)
        if self.queue_size > 0:
            dim = embedding_width(encoder, self.embedding_dim, "CLIP with queue_size > 0")
            store = self.negatives.queue_stores is not None
            self.image_queue = KeyQueue(self.queue_size, dim, store_ids=store, guide_dim=self.guide_width)
            self.text_queue = KeyQueue(self.queue_size, dim, store_ids=store, guide_dim=self.guide_width)

    @property
    def encoder(self) -> nn.Module | None:
        """The model this objective reads its temperature from (not a submodule)."""
        return self.model_ref.model

    def logit_scale(self, like: Tensor) -> Tensor:
        """``s = exp(logit_scale)`` in fp32 on ``like``'s device (differentiable when the model's scale is learnable)."""
        if self.temperature is not None:
            return scalar_stat(1.0 / self.temperature, like)
        return self.model_ref.scalar("logit_scale", "CLIP").exp().to(like.device)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        image, text = embeddings["image"], embeddings["text"]
        images, texts = gather(image, enabled=self.gather), gather(text, enabled=self.gather)
        scale = self.logit_scale(image)
        mine = self.examples(batch, image.shape[0], image.device)
        theirs = self.gathered(mine)

        queues = {"image_to_text": self.text_queue, "text_to_image": self.image_queue}

        def direction(rows: Tensor, candidates: Tensor, labels: Tensor, queue_start: int | None, name: Direction) -> LossOutput:
            """The engine with this objective's options; the queue's stored ids follow its keys."""
            queue = queues[name] if queue_start is not None else None
            stored = queue.ids() if queue is not None and self.negatives.queue_stores else None
            views = ("image", "text") if name == "image_to_text" else ("text", "image")
            guided = self.guided(batch, rows.device, views[:1], views[1:], queue.guide_negatives() if queue is not None else None)
            roles = self.roles(labels, mine, theirs, stored=stored, **guided)
            return self.contrast(rows, candidates, roles, temperature=1.0 / scale, queue_start=queue_start)

        out = clip_loss(
            image, text, images.tensor, texts.tensor, logit_scale=scale, offset=images.offset, contrast=direction,
            extra_image_negatives=self.image_queue.negatives() if self.image_queue is not None else None,
            extra_text_negatives=self.text_queue.negatives() if self.text_queue is not None else None,
        )  # fmt: skip
        if self.training and self.image_queue is not None and self.text_queue is not None:
            if self.key_encoder is not None:
                image_keys, text_keys = self.key_encoder(batch["image"]), self.key_encoder(batch["text"])
            else:
                image_keys, text_keys = image.detach(), text.detach()
            values = self.queue_values(mine)
            guides = self.guide.views(batch, image.device, "image", "text") if self.guide is not None else (None, None)
            self.image_queue.stage(F.normalize(image_keys.float(), dim=-1), values, guides[0])
            self.text_queue.stage(F.normalize(text_keys.float(), dim=-1), values, guides[1])
        stats = _image_text_stats(image, text, scale)
        stats.update((k, v) for k, v in out.stats.items() if k != "logits_per_text")
        if self.key_encoder is not None:
            stats["momentum"] = scalar_stat(self.key_encoder.momentum, image)
        return ObjectiveOutput(out.loss, stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        clamp = getattr(model, "clamp_logit_scale_", None) or getattr(self.model_ref.model, "clamp_logit_scale_", None)
        if clamp is not None:
            clamp()
        if self.key_encoder is not None:
            self.key_encoder.update(model, step, max_steps)
        for queue in (self.image_queue, self.text_queue):
            if queue is not None:
                queue.flush()


class SigLIP(ContrastiveObjective):
    """SigLIP's pairwise sigmoid loss with the model's ``logit_scale`` and ``logit_bias``.

    Each process scores its ``n`` local images against the texts of every process (gathered with
    gradient, positives at ``offset``), so the mean of the per-process losses (DDP's gradient average)
    equals the single-process loss on the concatenated batch. Build the model with
    ``logit_scale_init_value=log(10)`` and ``logit_bias_init_value=-10`` (the paper's initialisation).

    Args:
        encoder: the dual encoder being trained (unwrapped), with ``logit_scale`` and ``logit_bias``.
        gather: score against the texts of every process.
    """

    modality = "image_text"
    tag = "siglip"

    def __init__(self, encoder: nn.Module | None = None, *, gather: bool = True) -> None:
        super().__init__()
        self.model_ref, self.gather = ModelRef(None), gather
        if encoder is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """Read the scale and the bias from ``encoder`` (``logit_scale``, ``logit_bias``)."""
        self.model_ref = ModelRef(encoder)
        self.model_ref.scalar("logit_scale", "SigLIP")
        self.model_ref.scalar("logit_bias", "SigLIP")

    @property
    def encoder(self) -> nn.Module | None:
        """The model this objective reads its scale and bias from (not a submodule)."""
        return self.model_ref.model

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        image, text = embeddings["image"], embeddings["text"]
        texts = gather(text, enabled=self.gather)
        scale = self.model_ref.scalar("logit_scale", "SigLIP").exp()
        bias = self.model_ref.scalar("logit_bias", "SigLIP")
        out = siglip_loss(image, text, None, texts.tensor, logit_scale=scale, logit_bias=bias, offset=texts.offset)
        stats = _image_text_stats(image, text, scale)
        stats["top1_image_to_text"] = top1_accuracy(out.logits.detach(), out.labels)  # type: ignore[union-attr,arg-type]
        stats["logit_bias"] = bias.detach()
        return ObjectiveOutput(out.loss, stats)

    def after_optimizer_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        clamp = getattr(model, "clamp_logit_scale_", None) or getattr(self.model_ref.model, "clamp_logit_scale_", None)
        if clamp is not None:
            clamp()
