"""ContrastiveVisionModel: an ``AutoModel`` vision backbone + pooling (+ projection head) -> embeddings.

Copied into checkpoints for ``trust_remote_code``: only single-dot relative imports here.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init

from .configuration_vision import ContrastiveVisionConfig
from .heads import MLPHead
from .outputs import ContrastiveEncoderOutput
from .pooling import pool_image
from .towers import build_backbone, copy_backbone


class ContrastiveVisionModel(PreTrainedModel):
    """Image encoder for SimCLR / MoCo / BYOL / SimSiam training, loadable with ``AutoModel``.

    ``embeddings = normalize?(head(pool(backbone(x))))`` in training mode (Chen et al. 2020, SimCLR:
    the loss is computed on the projection ``z = g(h)``) and ``normalize?(pool(backbone(x)))`` in eval
    mode unless ``config.use_projection_at_inference`` (downstream tasks use ``h``).
    """

    config_class = ContrastiveVisionConfig
    base_model_prefix = "hfcontrast_vision"
    main_input_name = "pixel_values"
    input_modalities = ["image"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: ContrastiveVisionConfig) -> None:
        super().__init__(config)
        # ViT's own pooler has parameters: built only when the ``auto`` pooling uses it.
        self.backbone = build_backbone(config.backbone_config, keep_pooler=config.pooler == "auto")
        self.projection: MLPHead | None = None
        if config.projection == "mlp":
            self.projection = MLPHead(
                config.pooled_dim,
                config.projection_dim,
                kind="simclr",
                hidden_dim=config.projection_hidden_dim,
            )
        elif config.projection == "linear":
            self.projection = MLPHead(config.pooled_dim, config.projection_dim, kind="linear")
        size = getattr(config.backbone_config, "image_size", None)
        self._native_size = (size, size) if isinstance(size, int) else tuple(size or ())
        self._interpolates = "interpolate_pos_encoding" in inspect.signature(self.backbone.forward).parameters
        self.post_init()

    @property
    def train_embedding_dim(self) -> int:
        """Width of the embedding the loss sees (the :class:`~hfcontrast.objectives.Encoder` protocol)."""
        return self.config.train_embedding_dim

    @property
    def embedding_dim(self) -> int:
        """:attr:`train_embedding_dim` (its earlier name)."""
        return self.train_embedding_dim

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Head layers get PyTorch's default init (as in the SimCLR / MoCo reference code)."""
        if self.projection is None or not any(module is m for m in self.projection.modules()):
            return
        if isinstance(module, torch.nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1.0 / math.sqrt(module.in_features) if module.in_features > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, torch.nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if module.running_mean is not None and module.running_var is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
            if module.num_batches_tracked is not None:
                init.zeros_(module.num_batches_tracked)

    @classmethod
    def from_backbone_pretrained(
        cls, backbone_name_or_path: str, **config_kwargs: Any
    ) -> ContrastiveVisionModel:
        """Wrap a pretrained ``AutoModel`` checkpoint (ResNet, ViT, ConvNeXt, ...) with a fresh head."""
        backbone = AutoModel.from_pretrained(backbone_name_or_path)
        config = cls.config_class(backbone_config=backbone.config.to_dict(), **config_kwargs)
        model = cls(config)
        copy_backbone(model.backbone, backbone, f"backbone {backbone_name_or_path}")
        model.name_or_path = model.config._name_or_path = str(backbone_name_or_path)  # where its image processor is; not exported
        return model

    def forward(
        self,
        pixel_values: torch.Tensor,
        use_head: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> ContrastiveEncoderOutput | tuple[torch.Tensor, ...]:
        """Embed ``pixel_values [B, C, H, W]``. ``use_head`` (the projection head) defaults to
        ``self.training or config.use_projection_at_inference``; extra kwargs (e.g.
        ``interpolate_pos_encoding``) go to the backbone."""
        if self._interpolates and "interpolate_pos_encoding" not in kwargs:
            # multi-crop's local crops (and any other size) through a ViT: interpolated position embeddings
            kwargs["interpolate_pos_encoding"] = tuple(pixel_values.shape[-2:]) != self._native_size
        outputs = self.backbone(pixel_values=pixel_values, return_dict=True, **kwargs)
        pooled = pool_image(self.config.pooler, outputs.last_hidden_state, getattr(outputs, "pooler_output", None))
        if use_head is None:
            use_head = self.training or self.config.use_projection_at_inference
        embeddings = self.projection(pooled) if (self.projection is not None and use_head) else pooled
        if self.config.normalize:
            embeddings = F.normalize(embeddings, dim=-1)
        output = ContrastiveEncoderOutput(
            embeddings=embeddings, pooled=pooled, last_hidden_state=outputs.last_hidden_state
        )
        return output if return_dict is not False else output.to_tuple()
