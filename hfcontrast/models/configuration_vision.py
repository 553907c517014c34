"""Configuration of :class:`ContrastiveVisionModel` (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .subconfigs import sub_config
from .versioning import CONFIG_FORMAT_VERSION, check_config_version

VISION_POOLERS = ("auto", "cls", "mean")
VISION_PROJECTIONS = ("mlp", "linear", "none")


def backbone_feature_dim(backbone_config: PreTrainedConfig, pooler: str) -> int:
    """Width of the pooled backbone feature for ``pooler``, read from the backbone config.

    ``pooler_output_size`` (ViT's pooler, used by ``auto``), then ``hidden_size`` (ViT, Swin, DINOv2,
    CLIP vision), then ``hidden_sizes[-1]`` (ResNet, ConvNeXt, RegNet: the last stage's channels).
    """
    candidates = ["hidden_size", "hidden_sizes"]
    if pooler == "auto":
        candidates.insert(0, "pooler_output_size")
    for name in candidates:
        value = getattr(backbone_config, name, None)
        if isinstance(value, list | tuple) and value:
            return int(value[-1])
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return int(value)
    raise ValueError(
        f"cannot tell the feature width of backbone {type(backbone_config).__name__}: it has none of "
        f"{candidates}"
    )


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

    Dimensions: ``pooled_dim`` is the backbone feature width, ``train_embedding_dim`` the width of the
    embedding in training mode (what objectives see: size queues and predictors with it), and
    ``hidden_size`` the width of the exported (eval-mode) embedding.
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
        self.hfcontrast_config_version = hfcontrast_config_version
        super().__init__(**kwargs)

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled backbone feature (the exported embedding without projection)."""
        return backbone_feature_dim(self.backbone_config, self.pooler)

    @property
    def train_embedding_dim(self) -> int:
        """Width of the training-time embedding: ``projection_dim`` with a head, else ``pooled_dim``."""
        return self.pooled_dim if self.projection == "none" else int(self.projection_dim)

    @property
    def hidden_size(self) -> int:
        """Width of the exported (eval-mode) embedding."""
        return self.train_embedding_dim if self.use_projection_at_inference else self.pooled_dim
