"""ContrastiveTextModel: an ``AutoModel`` text backbone + pooling (+ SimCSE MLP head) -> embeddings.

Copied into checkpoints for ``trust_remote_code``: only single-dot relative imports here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_text import ContrastiveTextConfig
from .pooling import MLPHead, pool_tokens


@dataclass
class ContrastiveEncoderOutput(ModelOutput):
    """``embeddings``: the contrastive embedding ``[batch, dim]``; ``pooled``: before any head."""

    embeddings: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


def _backbone_without_pooler(config: Any) -> PreTrainedModel:
    """``AutoModel`` backbone without its own pooler (BERT-style ``add_pooling_layer``): the
    contrastive poolers never use it, and unused parameters would break DDP without
    ``find_unused_parameters``."""
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


class ContrastiveTextModel(PreTrainedModel):
    """Sentence encoder for SimCSE-style training (Gao et al. 2021), loadable with ``AutoModel``."""

    config_class = ContrastiveTextConfig
    base_model_prefix = "hfcontrast_text"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: ContrastiveTextConfig) -> None:
        super().__init__(config)
        self.backbone = _backbone_without_pooler(config.backbone_config)
        hidden = config.backbone_config.hidden_size  # type: ignore[union-attr]
        self.mlp = (
            MLPHead(hidden, config.projection_dim or hidden, kind="simcse") if config.uses_mlp_head else None
        )
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        if isinstance(module, torch.nn.Linear) and self.mlp is not None and module in self.mlp.modules():
            std = getattr(self.config.backbone_config, "initializer_range", 0.02)
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)

    @classmethod
    def from_backbone_pretrained(
        cls, backbone_name_or_path: str, **config_kwargs: Any
    ) -> ContrastiveTextModel:
        """Wrap a pretrained ``AutoModel`` checkpoint (BERT, RoBERTa, MiniLM, ...) with fresh heads."""
        backbone = AutoModel.from_pretrained(backbone_name_or_path)
        config = cls.config_class(backbone_config=backbone.config.to_dict(), **config_kwargs)
        model = cls(config)
        missing, unexpected = model.backbone.load_state_dict(backbone.state_dict(), strict=False)
        unexpected = [key for key in unexpected if not key.startswith("pooler.")]  # its pooler is not used
        if missing or unexpected:
            raise ValueError(
                f"{backbone_name_or_path}: backbone weights do not match (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )
        return model

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_head: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> ContrastiveEncoderOutput | tuple[torch.Tensor, ...]:
        """Embed a tokenised batch. ``use_head`` (the MLP head) defaults to SimCSE's rule:
        apply it unless ``mlp_only_train`` is set and the model is in eval mode. Losses pass
        ``use_head=True`` so that an evaluation loss is computed on the training embedding."""
        if attention_mask is None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]  # type: ignore[index]
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        backbone_kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        if token_type_ids is not None:
            backbone_kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            backbone_kwargs["position_ids"] = position_ids
        need_layers = self.config.pooler == "first_last_avg"
        outputs = self.backbone(**backbone_kwargs, output_hidden_states=need_layers, return_dict=True)
        pooled = pool_tokens(
            self.config.pooler, outputs.last_hidden_state, attention_mask, outputs.hidden_states if need_layers else None
        )
        if use_head is None:
            use_head = self.training or not self.config.mlp_only_train
        embeddings = self.mlp(pooled) if (self.mlp is not None and use_head) else pooled
        if self.config.normalize:
            embeddings = F.normalize(embeddings, dim=-1)
        output = ContrastiveEncoderOutput(
            embeddings=embeddings, pooled=pooled, last_hidden_state=outputs.last_hidden_state
        )
        return output if return_dict is not False else output.to_tuple()
