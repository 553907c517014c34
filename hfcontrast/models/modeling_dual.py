"""ContrastiveDualEncoder: CLIP-style image and text towers projected into one embedding space.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision" (CLIP);
the optional ``logit_bias`` is SigLIP's (Zhai et al. 2023, "Sigmoid Loss for Language Image
Pre-Training"). Copied into checkpoints for ``trust_remote_code``: only single-dot relative imports.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init

from .configuration_common import feature_width
from .configuration_dual import ContrastiveDualEncoderConfig
from .outputs import ContrastiveEncoderOutput, DualEncoderOutput
from .pooling import pool_image, pool_text
from .towers import build_backbone, copy_backbone


class ContrastiveDualEncoder(PreTrainedModel):
    """Image tower + text tower + bias-free projections + learnable temperature (and SigLIP bias).

    ``get_image_features(pixel_values)`` / ``get_text_features(input_ids, ...)`` return the projected,
    unnormalised ``[B, D]`` features, like ``CLIPModel`` did before transformers 5. ``forward`` with
    one modality returns :class:`ContrastiveEncoderOutput` (``embeddings`` = those features), so the
    trainer embeds the ``image`` and ``text`` views with one forward each; with both it returns
    :class:`DualEncoderOutput`. ``logit_scale = log(1 / tau)`` is log-parametrised and clamped to
    ``max_logit_scale`` (``ln 100``) by :meth:`clamp_logit_scale_` after every optimizer step.
    """

    config_class = ContrastiveDualEncoderConfig
    base_model_prefix = "hfcontrast_dual"
    main_input_name = "input_ids"
    input_modalities = ["image", "text"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: ContrastiveDualEncoderConfig) -> None:
        super().__init__(config)
        self.vision_model = build_backbone(config.vision_config, keep_pooler=config.vision_pooler == "pooler_output")
        self.text_model = build_backbone(config.text_config, keep_pooler=config.text_pooler == "pooler_output")
        self.vision_embed_dim = feature_width(config.vision_config)
        self.text_embed_dim = feature_width(config.text_config)
        self.visual_projection = nn.Linear(self.vision_embed_dim, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_embed_dim, config.projection_dim, bias=False)
        # A frozen temperature is a (persistent) buffer: same checkpoint key, never given to an optimizer,
        # and it stays frozen through from_pretrained (which rebuilds parameters as trainable).
        scale = torch.tensor(float(config.logit_scale_init_value))
        self.logit_scale: torch.Tensor
        if config.learnable_logit_scale:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)
        self.logit_bias: nn.Parameter | None
        if config.uses_logit_bias:
            self.logit_bias = nn.Parameter(torch.tensor(float(config.logit_bias_init_value)))  # type: ignore[arg-type]
        else:
            self.register_parameter("logit_bias", None)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # CLIP's init: projections N(0, width^-1/2); logit_scale / logit_bias from the config.
        if module is self.visual_projection:
            init.normal_(module.weight, mean=0.0, std=self.vision_embed_dim**-0.5)
        elif module is self.text_projection:
            init.normal_(module.weight, mean=0.0, std=self.text_embed_dim**-0.5)
        elif module is self:
            init.constant_(self.logit_scale, float(self.config.logit_scale_init_value))
            if self.logit_bias is not None:
                init.constant_(self.logit_bias, float(self.config.logit_bias_init_value))

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_vision_text_pretrained(
        cls, vision_name_or_path: str, text_name_or_path: str, **config_kwargs: Any
    ) -> ContrastiveDualEncoder:
        """Pretrained ``AutoModel`` towers (e.g. a ViT and a BERT/MiniLM) with fresh projections."""
        vision = AutoModel.from_pretrained(vision_name_or_path)
        text = AutoModel.from_pretrained(text_name_or_path)
        config = cls.config_class(
            vision_config=vision.config.to_dict(), text_config=text.config.to_dict(), **config_kwargs
        )
        model = cls(config)
        model.load_pretrained_tower("vision", vision)
        model.load_pretrained_tower("text", text)
        model.name_or_path = model.config._name_or_path = str(text_name_or_path)  # where the tokenizer is; not exported
        return model

    @classmethod
    def from_text_pretrained(
        cls, text_name_or_path: str, vision_config: Any, **config_kwargs: Any
    ) -> ContrastiveDualEncoder:
        """A pretrained text tower beside a new image tower built from ``vision_config`` (LiT-style,
        Zhai et al. 2022, when the text tower is then locked with :meth:`lock_tower`)."""
        text = AutoModel.from_pretrained(text_name_or_path)
        model = cls(cls.config_class(vision_config=vision_config, text_config=text.config.to_dict(), **config_kwargs))
        model.load_pretrained_tower("text", text)
        model.name_or_path = model.config._name_or_path = str(text_name_or_path)  # where the tokenizer is; not exported
        return model

    def lock_tower(self, tower: str, trainable_layers: int = 0) -> None:
        """Freeze the ``"vision"`` or ``"text"`` tower except its top ``trainable_layers`` layers (``-1``:
        leave it all trainable). Its projection stays trainable."""
        if tower not in ("vision", "text"):
            raise ValueError(f"tower must be 'vision' or 'text', got {tower!r}")
        if trainable_layers < 0:
            return
        module: nn.Module = getattr(self, f"{tower}_model")
        module.requires_grad_(False)
        stacks = [m for n, m in module.named_modules() if isinstance(m, nn.ModuleList) and n.endswith(("layer", "layers"))]
        if trainable_layers > 0:
            if not stacks:
                raise ValueError(f"cannot find the layers of {type(module).__name__} to unfreeze")
            for layer in list(stacks[0])[-trainable_layers:]:
                layer.requires_grad_(True)

    def load_pretrained_tower(self, tower: str, source: nn.Module) -> None:
        """Copy a pretrained ``AutoModel``'s weights into the ``"vision"`` or ``"text"`` tower, e.g. a
        pretrained text encoder beside a randomly initialised image tower (LiT-style)."""
        if tower not in ("vision", "text"):
            raise ValueError(f"tower must be 'vision' or 'text', got {tower!r}")
        copy_backbone(getattr(self, f"{tower}_model"), source, f"{tower} tower")

    @classmethod
    def from_clip_pretrained(cls, clip_name_or_path: str, **config_kwargs: Any) -> ContrastiveDualEncoder:
        """Convert a ``CLIPModel`` checkpoint: towers, projections and ``logit_scale`` are copied, and
        both poolings are the towers' ``pooler_output`` (EOS token; post-layernorm CLS), so
        ``get_*_features`` equal ``CLIPModel.get_*_features(...).pooler_output``."""
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained(clip_name_or_path)
        clip_config: Any = clip.config
        settings: dict[str, Any] = {
            "projection_dim": clip_config.projection_dim,
            "text_pooler": "pooler_output",
            "vision_pooler": "pooler_output",
            "logit_scale_init_value": float(clip.logit_scale.detach()),
            **config_kwargs,
        }
        config = cls.config_class(
            vision_config=clip_config.vision_config.to_dict(),
            text_config=clip_config.text_config.to_dict(),
            **settings,
        )
        model = cls(config)
        state = {k: v for k, v in clip.state_dict().items() if k != "logit_scale"}
        result = model.load_state_dict(state, strict=False)
        expected_missing = {"logit_scale"} | ({"logit_bias"} if model.logit_bias is not None else set())
        if set(result.missing_keys) - expected_missing or result.unexpected_keys:
            raise ValueError(
                f"{clip_name_or_path} does not match a CLIP layout: missing {result.missing_keys[:10]}, "
                f"unexpected {result.unexpected_keys[:10]}"
            )
        return model

    @property
    def train_embedding_dim(self) -> int:
        """Width of the shared space (the :class:`~hfcontrast.objectives.Encoder` protocol)."""
        return self.config.train_embedding_dim

    # ----------------------------------------------------------------- temperature
    @property
    def temperature(self) -> float:
        """``tau = 1 / exp(logit_scale)``."""
        return float(torch.exp(-self.logit_scale.detach()))

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """In place: ``logit_scale <- min(logit_scale, max_logit_scale)`` (CLIP clips ``1/tau`` at 100)."""
        self.logit_scale.clamp_(max=float(self.config.max_logit_scale))

    # ----------------------------------------------------------------- towers
    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def _text_pooled(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        inputs.update({k: v for k, v in (("token_type_ids", token_type_ids), ("position_ids", position_ids)) if v is not None})
        return pool_text(self.config.text_pooler, self.text_model, inputs)

    def _image_pooled(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.vision_model(pixel_values=pixel_values, return_dict=True)
        pooled = pool_image(self.config.vision_pooler, outputs.last_hidden_state, getattr(outputs, "pooler_output", None))
        return pooled, outputs.last_hidden_state

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Projected, unnormalised text features ``W_t pool_t(text(t))`` ``[B, D]``."""
        pooled, _ = self._text_pooled(input_ids, attention_mask, token_type_ids, position_ids)
        return self.text_projection(pooled)

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Projected, unnormalised image features ``W_v pool_v(vision(x))`` ``[B, D]``."""
        pooled, _ = self._image_pooled(pixel_values)
        return self.visual_projection(pooled)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_dict: bool | None = None,
        use_head: bool | None = None,
        **kwargs: Any,
    ) -> ContrastiveEncoderOutput | DualEncoderOutput | tuple[torch.Tensor, ...]:
        """One modality -> :class:`ContrastiveEncoderOutput` (``embeddings`` = projected features);
        both -> :class:`DualEncoderOutput` (normalised embeddings, scaled logits). ``use_head`` belongs
        to the :class:`~hfcontrast.objectives.Encoder` protocol: a dual encoder has no training-only
        head (its projections are the embedding at inference too), so it changes nothing."""
        output: ContrastiveEncoderOutput | DualEncoderOutput
        if input_ids is None and pixel_values is None:
            raise ValueError("pass pixel_values (image view), input_ids (text view) or both")
        if input_ids is None or pixel_values is None:
            if pixel_values is not None:
                pooled, hidden = self._image_pooled(pixel_values)
                embeddings = self.visual_projection(pooled)
            else:
                assert input_ids is not None
                pooled, hidden = self._text_pooled(input_ids, attention_mask, token_type_ids, position_ids)
                embeddings = self.text_projection(pooled)
            output = ContrastiveEncoderOutput(embeddings=embeddings, pooled=pooled, last_hidden_state=hidden)
        else:
            image = F.normalize(self.get_image_features(pixel_values), dim=-1)
            text = F.normalize(
                self.get_text_features(input_ids, attention_mask, token_type_ids, position_ids), dim=-1
            )
            logits_per_text = self.logit_scale.exp() * (text @ image.t())
            if self.logit_bias is not None:
                logits_per_text = logits_per_text + self.logit_bias
            output = DualEncoderOutput(
                logits_per_image=logits_per_text.t(),
                logits_per_text=logits_per_text,
                text_embeds=text,
                image_embeds=image,
            )
        return output if return_dict is not False else output.to_tuple()
