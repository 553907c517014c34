"""ContrastiveDualEncoder: CLIP-style image and text towers projected into one embedding space.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision" (CLIP);
the optional ``logit_bias`` is SigLIP's (Zhai et al. 2023, "Sigmoid Loss for Language Image
Pre-Training"). Copied into checkpoints for ``trust_remote_code``: only single-dot relative imports.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_dual import ContrastiveDualEncoderConfig, tower_width
from .modeling_text import ContrastiveEncoderOutput
from .pooling import pool_tokens


@dataclass
class DualEncoderOutput(ModelOutput):
    """Both modalities at once, as ``CLIPOutput``: L2-normalised ``image_embeds`` / ``text_embeds``
    ``[B, D]`` and ``logits_per_image = s * I T^T (+ b)`` ``[B_img, B_txt]``, ``logits_per_text`` its transpose,
    with ``s = exp(logit_scale)`` and ``b`` the SigLIP bias (when the model has one)."""

    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None


def _build_tower(config: PreTrainedConfig, keep_pooler: bool) -> PreTrainedModel:
    """``AutoModel.from_config``; a tower whose pooler is not used is built without it (BERT, ViT take
    ``add_pooling_layer``), so every parameter gets a gradient (DDP with ``find_unused_parameters=False``)."""
    kwargs: dict[str, Any] = {}
    if not keep_pooler:
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        model_class: Any
        try:
            model_class = MODEL_MAPPING[type(config)]
        except KeyError:
            model_class = None
        if isinstance(model_class, tuple | list):
            model_class = model_class[0]
        if model_class is not None and "add_pooling_layer" in inspect.signature(model_class).parameters:
            kwargs["add_pooling_layer"] = False
    return AutoModel.from_config(config, **kwargs)


def _copy_tower(target: nn.Module, source: nn.Module, what: str) -> None:
    """Load ``source``'s weights into ``target``; only the pooler the target dropped may be left over."""
    result = target.load_state_dict(source.state_dict(), strict=False)
    unexpected = [key for key in result.unexpected_keys if not key.startswith("pooler.")]
    if result.missing_keys or unexpected:
        raise ValueError(
            f"cannot copy the pretrained {what} tower: missing {result.missing_keys[:10]}, "
            f"unexpected {unexpected[:10]}"
        )


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
        assert isinstance(config.vision_config, PreTrainedConfig)
        assert isinstance(config.text_config, PreTrainedConfig)
        self.vision_model = _build_tower(config.vision_config, config.vision_pooler == "pooler_output")
        self.text_model = _build_tower(config.text_config, config.text_pooler == "pooler_output")
        self.vision_embed_dim = tower_width(config.vision_config)
        self.text_embed_dim = tower_width(config.text_config)
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
        return model

    def load_pretrained_tower(self, tower: str, source: nn.Module) -> None:
        """Copy a pretrained ``AutoModel``'s weights into the ``"vision"`` or ``"text"`` tower, e.g. a
        pretrained text encoder beside a randomly initialised image tower (LiT-style)."""
        if tower not in ("vision", "text"):
            raise ValueError(f"tower must be 'vision' or 'text', got {tower!r}")
        _copy_tower(getattr(self, f"{tower}_model"), source, tower)

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
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        pooler = self.config.text_pooler
        need_layers = pooler == "first_last_avg"
        outputs = self.text_model(**kwargs, output_hidden_states=need_layers, return_dict=True)
        if pooler == "pooler_output":
            if outputs.pooler_output is None:
                raise ValueError(f"{type(self.text_model).__name__} returns no pooler_output; pick another text_pooler")
            return outputs.pooler_output, outputs.last_hidden_state
        layers = outputs.hidden_states if need_layers else None
        return pool_tokens(pooler, outputs.last_hidden_state, attention_mask, layers), outputs.last_hidden_state

    def _image_pooled(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.vision_model(pixel_values=pixel_values, return_dict=True)
        hidden = outputs.last_hidden_state
        pooler = self.config.vision_pooler
        if pooler == "pooler_output":
            if outputs.pooler_output is None:
                raise ValueError(
                    f"{type(self.vision_model).__name__} returns no pooler_output; pick another vision_pooler"
                )
            return outputs.pooler_output.flatten(1), hidden
        if hidden.dim() == 4:  # convolutional [B, C, H, W]: no CLS token
            if pooler == "cls":
                raise ValueError("vision_pooler 'cls' needs a token sequence; use 'mean' or 'pooler_output'")
            return hidden.mean(dim=(2, 3)), hidden
        return (hidden[:, 0] if pooler == "cls" else hidden.mean(dim=1)), hidden

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
        both -> :class:`DualEncoderOutput` (normalised embeddings, scaled logits). ``use_head`` is
        accepted for the common encoder interface; the projections are always applied."""
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
