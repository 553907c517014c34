"""Configuration of :class:`ContrastiveDualEncoder` (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

import math
from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .configuration_common import CONFIG_FORMAT_VERSION, check_config_version, sub_config
from .pooling import TEXT_POOLERS

#: Text poolings of the dual encoder: the tower's own ``pooler_output`` (CLIP's EOS token, BERT's
#: tanh pooler) or a token pooling of ``last_hidden_state`` (:func:`.pooling.pool_tokens`).
DUAL_TEXT_POOLERS = ("pooler_output", *TEXT_POOLERS)
#: Image poolings: the tower's ``pooler_output`` (CLIP: post-layernorm CLS), the first token of
#: ``last_hidden_state`` (``cls``) or the mean over all tokens / spatial positions (``mean``).
DUAL_VISION_POOLERS = ("pooler_output", "cls", "mean")


class ContrastiveDualEncoderConfig(PreTrainedConfig):
    r"""A CLIP-style image-text dual encoder (Radford et al. 2021; SigLIP: Zhai et al. 2023).

    ``f_img(x) = W_v pool_v(vision(x))``, ``f_txt(t) = W_t pool_t(text(t))`` with bias-free linear
    projections ``W_v, W_t`` to ``projection_dim``; the similarity of a pair is
    ``exp(logit_scale) * cos(f_img(x), f_txt(t)) (+ logit_bias)``.

    Args:
        vision_config: config of the image tower (``ViTConfig``, ``CLIPVisionConfig``, ... or a dict).
        text_config: config of the text tower (``BertConfig``, ``CLIPTextConfig``, ... or a dict).
        projection_dim: size ``D`` of the shared embedding space.
        text_pooler: one of :data:`DUAL_TEXT_POOLERS` (``pooler_output`` reproduces CLIP's EOS pooling).
        vision_pooler: one of :data:`DUAL_VISION_POOLERS` (``pooler_output`` reproduces CLIP).
        logit_scale_init_value: initial ``logit_scale = log(1 / tau)``; CLIP: ``log(1/0.07)``, SigLIP ``log(10)``.
        learnable_logit_scale: train ``logit_scale``; else it is a frozen (persistent) buffer.
        max_logit_scale: upper bound applied by ``clamp_logit_scale_`` (CLIP: ``ln 100``).
        logit_bias_init_value: SigLIP's learnable bias ``b`` (e.g. ``-10``); ``None``: no bias parameter.
    """

    model_type = "hfcontrast-dual-encoder"
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}  # type: ignore[assignment]

    def __init__(
        self,
        vision_config: PreTrainedConfig | dict[str, Any] | None = None,
        text_config: PreTrainedConfig | dict[str, Any] | None = None,
        projection_dim: int = 512,
        text_pooler: str = "mean",
        vision_pooler: str = "cls",
        logit_scale_init_value: float = math.log(1 / 0.07),
        learnable_logit_scale: bool = True,
        max_logit_scale: float = math.log(100.0),
        logit_bias_init_value: float | None = None,
        hfcontrast_config_version: int = CONFIG_FORMAT_VERSION,
        **kwargs: Any,
    ) -> None:
        check_config_version(hfcontrast_config_version, type(self).__name__)
        if text_pooler not in DUAL_TEXT_POOLERS:
            raise ValueError(f"unknown text_pooler {text_pooler!r}; choose one of {DUAL_TEXT_POOLERS}")
        if vision_pooler not in DUAL_VISION_POOLERS:
            raise ValueError(f"unknown vision_pooler {vision_pooler!r}; choose one of {DUAL_VISION_POOLERS}")
        if int(projection_dim) < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        if not max_logit_scale > 0:
            raise ValueError(f"max_logit_scale must be > 0, got {max_logit_scale}")
        self.vision_config = sub_config(vision_config, "vit", "vision_config")
        self.text_config = sub_config(text_config, "bert", "text_config")
        self.projection_dim = projection_dim
        self.text_pooler = text_pooler
        self.vision_pooler = vision_pooler
        self.logit_scale_init_value = logit_scale_init_value
        self.learnable_logit_scale = learnable_logit_scale
        self.max_logit_scale = max_logit_scale
        self.logit_bias_init_value = logit_bias_init_value
        self.hfcontrast_config_version = CONFIG_FORMAT_VERSION
        super().__init__(**kwargs)

    @property
    def train_embedding_dim(self) -> int:
        """Width of the shared embedding space (what the loss and the queues see)."""
        return int(self.projection_dim)

    @property
    def embedding_dim(self) -> int:
        """Width of the exported embeddings: the shared projection space."""
        return int(self.projection_dim)

    @property
    def hidden_size(self) -> int:
        """:attr:`embedding_dim`, under the name tools read as the embedding size."""
        return self.embedding_dim

    @property
    def uses_logit_bias(self) -> bool:
        return self.logit_bias_init_value is not None
