"""Configuration of :class:`ContrastiveVisionModel` (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .configuration_common import CONFIG_FORMAT_VERSION, check_config_version, feature_width, sub_config

VISION_POOLERS = ("auto", "cls", "mean")
VISION_PROJECTIONS = ("mlp", "linear", "none")


class ContrastiveVisionConfig(PreTrainedConfig):
    r"""An image encoder: any ``AutoModel`` vision backbone, a pooler and an optional projection head.

    Args:
        backbone_config: config of the backbone (``ResNetConfig``, ``ViTConfig``, ``ConvNextConfig``, ...
            or a dict with ``model_type``); default: a ResNet-50 ``ResNetConfig``.
        pooler: ``auto``: the backbone's ``pooler_output`` when it returns one (global average pool of
            ResNet/ConvNeXt, ViT's pooler), else the first (CLS) token; ``cls``: first token of
            ``last_hidden_state``; ``mean``: mean over tokens, or over positions of a ``[B, C, H, W]`` map.
        projection: ``mlp`` (``Linear-BN-ReLU-Linear``, SimCLR, Chen et al. 2020), ``linear`` or ``none``.
        projection_dim: output width of the projection head (SimCLR / MoCo v2: 128).
        projection_hidden_dim: hidden width of the ``mlp`` head (default: the backbone feature width).
        use_projection_at_inference: export the projected embedding. False (default, as in SimCLR,
            which evaluates the backbone features) exports the pooled backbone feature in eval mode.
        normalize: L2-normalise the output embeddings.

    Widths: ``pooled_dim`` is the backbone feature's, ``train_embedding_dim`` the training-time embedding's
    (what objectives see: size queues and predictors with it), ``embedding_dim`` the exported (eval-mode)
    embedding's, which ``hidden_size`` repeats for tools that read that name.
    """

    model_type = "hfcontrast-vision"
    sub_configs = {"backbone_config": AutoConfig}  # type: ignore[assignment]

    def __init__(
        self,
        backbone_config: PreTrainedConfig | dict[str, Any] | None = None,
        pooler: str = "auto",
        projection: str = "mlp",
        projection_dim: int = 128,
        projection_hidden_dim: int | None = None,
        use_projection_at_inference: bool = False,
        normalize: bool = False,
        hfcontrast_config_version: int = CONFIG_FORMAT_VERSION,
        **kwargs: Any,
    ) -> None:
        check_config_version(hfcontrast_config_version, type(self).__name__)
        if pooler not in VISION_POOLERS:
            raise ValueError(f"unknown pooler {pooler!r}; choose one of {VISION_POOLERS}")
        if projection not in VISION_PROJECTIONS:
            raise ValueError(f"unknown projection {projection!r}; choose one of {VISION_PROJECTIONS}")
        if projection != "none" and projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        self.backbone_config = sub_config(backbone_config, "resnet", "backbone_config")
        self.pooler = pooler
        self.projection = projection
        self.projection_dim = projection_dim
        self.projection_hidden_dim = projection_hidden_dim
        self.use_projection_at_inference = use_projection_at_inference
        self.normalize = normalize
        self.hfcontrast_config_version = CONFIG_FORMAT_VERSION
        super().__init__(**kwargs)

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled backbone feature (the exported embedding without projection)."""
        return feature_width(self.backbone_config, pooler_output=self.pooler == "auto")

    @property
    def train_embedding_dim(self) -> int:
        """Width of the training-time embedding: ``projection_dim`` with a head, else ``pooled_dim``."""
        return self.pooled_dim if self.projection == "none" else int(self.projection_dim)

    @property
    def embedding_dim(self) -> int:
        """Width of the exported (eval-mode) embedding."""
        return self.train_embedding_dim if self.use_projection_at_inference else self.pooled_dim

    @property
    def hidden_size(self) -> int:
        """:attr:`embedding_dim`, under the name tools read as the embedding size."""
        return self.embedding_dim
