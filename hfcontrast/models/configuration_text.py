"""Configuration of :class:`ContrastiveTextModel` (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .pooling import TEXT_POOLERS
from .subconfigs import sub_config
from .versioning import CONFIG_FORMAT_VERSION, check_config_version


class ContrastiveTextConfig(PreTrainedConfig):
    r"""A text encoder: any ``AutoModel`` backbone, a pooler, an optional SimCSE MLP head.

    Args:
        backbone_config: config of the backbone (``BertConfig``, ``RobertaConfig``, ... or a dict).
        pooler: ``cls`` (CLS token + MLP head, SimCSE), ``cls_before_pooler`` (raw CLS), ``mean``,
            ``first_last_avg`` (mean of first and last layer) or ``max``.
        mlp_only_train: with ``pooler="cls"``, apply the MLP head in training only (unsupervised
            SimCSE); the exported embedding is then the raw CLS vector.
        projection_dim: output size of the MLP head (defaults to the backbone's hidden size).
        normalize: L2-normalise the output embeddings.
    """

    model_type = "hfcontrast-text"
    sub_configs = {"backbone_config": AutoConfig}  # type: ignore[assignment]

    def __init__(
        self,
        backbone_config: PreTrainedConfig | dict[str, Any] | None = None,
        pooler: str = "cls",
        mlp_only_train: bool = False,
        projection_dim: int | None = None,
        normalize: bool = False,
        hfcontrast_config_version: int = CONFIG_FORMAT_VERSION,
        **kwargs: Any,
    ) -> None:
        check_config_version(hfcontrast_config_version, type(self).__name__)
        if pooler not in TEXT_POOLERS:
            raise ValueError(f"unknown pooler {pooler!r}; choose one of {TEXT_POOLERS}")
        self.backbone_config = sub_config(backbone_config, "bert", "backbone_config")
        self.pooler = pooler
        self.mlp_only_train = mlp_only_train
        self.projection_dim = projection_dim
        self.normalize = normalize
        self.hfcontrast_config_version = hfcontrast_config_version
        super().__init__(**kwargs)

    @property
    def uses_mlp_head(self) -> bool:
        return self.pooler == "cls"

    @property
    def train_embedding_dim(self) -> int:
        """Width of the embedding the loss sees (with the MLP head when there is one)."""
        if self.uses_mlp_head and self.projection_dim:
            return int(self.projection_dim)
        return int(self.backbone_config.hidden_size)

    @property
    def hidden_size(self) -> int:
        """Size of the exported embedding (what sentence-transformers reports as its dimension)."""
        if self.uses_mlp_head and not self.mlp_only_train and self.projection_dim:
            return int(self.projection_dim)
        return int(self.backbone_config.hidden_size)
