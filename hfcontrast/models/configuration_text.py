"""Configuration of :class:`ContrastiveTextModel` (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .configuration_common import CONFIG_FORMAT_VERSION, check_config_version, sub_config
from .pooling import TEXT_POOLERS


class ContrastiveTextConfig(PreTrainedConfig):
    r"""A text encoder: any ``AutoModel`` backbone, a pooler, an optional SimCSE MLP head.

    Args:
        backbone_config: config of the backbone (``BertConfig``, ``RobertaConfig``, ... or a dict).
        pooler: ``cls`` / ``cls_before_pooler`` (the CLS token), ``mean``, ``first_last_avg`` (mean of
            first and last layer) or ``max``.
        mlp_head: a ``Linear -> Tanh`` head on the pooled vector (SimCSE's MLP, Gao et al. 2021).
            Before config version 2, ``pooler="cls"`` implied it; such configs are converted on load.
        mlp_only_train: apply the MLP head in training only (unsupervised SimCSE); the exported embedding
            is then the pooled vector. Needs ``mlp_head``.
        projection_dim: output size of the MLP head (defaults to the backbone's hidden size).
        normalize: L2-normalise the output embeddings.
        prompts: the instructions trained with, per view (``{"anchor": "query: ", "positive": "passage: "}``,
            E5 / BGE style); exported as sentence-transformers ``prompts``.
        prompt_token_ids: each prompt's token ids (without special tokens); with
            ``pool_prompt_tokens=False`` a row that starts with one of them pools without those tokens.
        pool_prompt_tokens: whether prompt tokens count in mean / max pooling.
        matryoshka_dims: the nested widths trained with Matryoshka (Kusupati et al. 2022), for the record.
        truncate_dim: the exported embedding keeps only its first ``truncate_dim`` values (re-normalised
            when ``normalize``): a Matryoshka model shipped small.

    Widths: ``train_embedding_dim`` is what the loss sees (queues, predictors); ``embedding_dim`` is the
    exported embedding's, which ``hidden_size`` repeats for sentence-transformers.
    """

    model_type = "hfcontrast-text"
    sub_configs = {"backbone_config": AutoConfig}  # type: ignore[assignment]

    def __init__(
        self,
        backbone_config: PreTrainedConfig | dict[str, Any] | None = None,
        pooler: str = "cls",
        mlp_head: bool | None = None,
        mlp_only_train: bool = False,
        projection_dim: int | None = None,
        normalize: bool = False,
        prompts: dict[str, str] | None = None,
        prompt_token_ids: dict[str, list[int]] | None = None,
        pool_prompt_tokens: bool = True,
        matryoshka_dims: list[int] | None = None,
        truncate_dim: int | None = None,
        hfcontrast_config_version: int = CONFIG_FORMAT_VERSION,
        **kwargs: Any,
    ) -> None:
        check_config_version(hfcontrast_config_version, type(self).__name__)
        if pooler not in TEXT_POOLERS:
            raise ValueError(f"unknown pooler {pooler!r}; choose one of {TEXT_POOLERS}")
        if mlp_head is None:  # version 1: "cls" meant CLS + MLP
            mlp_head = pooler == "cls" and int(hfcontrast_config_version) < 2
        if mlp_only_train and not mlp_head:
            raise ValueError("mlp_only_train needs mlp_head=True (it says when the MLP head is used)")
        self.backbone_config = sub_config(backbone_config, "bert", "backbone_config")
        self.pooler = pooler
        self.mlp_head = bool(mlp_head)
        self.mlp_only_train = mlp_only_train
        self.projection_dim = projection_dim
        self.normalize = normalize
        self.prompts = dict(prompts) if prompts else None
        self.prompt_token_ids = {k: list(v) for k, v in prompt_token_ids.items()} if prompt_token_ids else None
        self.pool_prompt_tokens = pool_prompt_tokens
        self.matryoshka_dims = [int(d) for d in matryoshka_dims] if matryoshka_dims else None
        if truncate_dim is not None and truncate_dim < 1:
            raise ValueError(f"truncate_dim must be >= 1, got {truncate_dim}")
        self.truncate_dim = truncate_dim
        self.hfcontrast_config_version = CONFIG_FORMAT_VERSION
        super().__init__(**kwargs)

    def to_diff_dict(self) -> dict[str, Any]:
        """Always records the format version and the head, which decide how the checkpoint loads."""
        return {**super().to_diff_dict(), "hfcontrast_config_version": CONFIG_FORMAT_VERSION, "mlp_head": self.mlp_head}

    @property
    def train_embedding_dim(self) -> int:
        """Width of the embedding the loss sees (with the MLP head when there is one)."""
        if self.mlp_head and self.projection_dim:
            return int(self.projection_dim)
        return int(self.backbone_config.hidden_size)

    @property
    def embedding_dim(self) -> int:
        """Width of the exported embedding (eval mode)."""
        if self.mlp_head and not self.mlp_only_train and self.projection_dim:
            width = int(self.projection_dim)
        else:
            width = int(self.backbone_config.hidden_size)
        return min(width, self.truncate_dim) if self.truncate_dim else width

    @property
    def hidden_size(self) -> int:
        """:attr:`embedding_dim`, under the name sentence-transformers reads as the embedding size."""
        return self.embedding_dim
