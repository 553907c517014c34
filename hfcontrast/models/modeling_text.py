"""ContrastiveTextModel: an ``AutoModel`` text backbone + pooling (+ SimCSE MLP head) -> embeddings.

Copied into checkpoints for ``trust_remote_code``: only single-dot relative imports here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, PreTrainedModel

from .configuration_text import ContrastiveTextConfig
from .heads import MLPHead
from .outputs import ContrastiveEncoderOutput
from .pooling import packed_text, pool_text, without_prompt_tokens
from .towers import build_backbone, copy_backbone


def is_sentence_transformers_folder(folder: str) -> bool:
    """A local folder with ``modules.json`` whose ``config.json`` is not an hfcontrast text config."""
    import json
    import os

    if not os.path.isfile(os.path.join(folder, "modules.json")):
        return False
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            return json.load(handle).get("model_type") != "hfcontrast-text"
    except (OSError, ValueError):
        return False


def sentence_transformers_settings(folder: str) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """``(config keywords + "transformer_path", MLP head weights or None)`` of a sentence-transformers folder."""
    import json
    import os

    from safetensors.torch import load_file

    def read(path: str) -> Any:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    modes = {"cls": "cls", "mean": "mean", "max": "max"}
    legacy = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}
    view_of_prompt = {"query": "anchor", "document": "positive"}

    modules = read(os.path.join(folder, "modules.json"))
    kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or len(kinds) < 2 or kinds[1] != "Pooling":
        raise ValueError(f"{folder}: a text encoder folder starts with Transformer and Pooling modules, got {kinds}")
    pooling = read(os.path.join(folder, modules[1]["path"], "config.json"))
    mode = pooling.get("pooling_mode") or next((m for k, m in legacy.items() if pooling.get(k)), "mean")
    if mode not in modes:
        raise ValueError(f"{folder}: pooling mode {mode!r} has no counterpart here (cls, mean, max)")
    settings: dict[str, Any] = {"transformer_path": modules[0]["path"], "pooler": modes[mode],
                                "pool_prompt_tokens": bool(pooling.get("include_prompt", True))}  # fmt: skip
    head: dict[str, torch.Tensor] | None = None
    for module, kind in zip(modules[2:], kinds[2:], strict=True):
        path = os.path.join(folder, module["path"])
        if kind == "Normalize":
            settings["normalize"] = True
        elif kind == "Dense" and head is None and read(os.path.join(path, "config.json"))["activation_function"].endswith("Tanh"):
            weights = load_file(os.path.join(path, "model.safetensors"))
            head = {"layers.0.weight": weights["linear.weight"], "layers.0.bias": weights["linear.bias"]}
            settings.update(mlp_head=True, projection_dim=int(weights["linear.weight"].shape[0]))
        elif not (kind == "Dense" and read(os.path.join(path, "config.json"))["activation_function"].endswith("Identity")):
            raise ValueError(f"{folder}: module {module['path'] or kind} ({kind}) has no counterpart here")
    st_config_path = os.path.join(folder, "config_sentence_transformers.json")
    st_config = read(st_config_path) if os.path.isfile(st_config_path) else {}
    prompts = {view_of_prompt.get(name, name): text for name, text in (st_config.get("prompts") or {}).items() if text}
    settings.update(prompts=prompts or None, truncate_dim=st_config.get("truncate_dim"))
    ours = os.path.join(folder, "hfcontrast.json")
    if os.path.isfile(ours):  # written by hfcontrast: its own record wins (training-only settings included)
        saved = read(ours)
        keep = ("pooler", "mlp_head", "mlp_only_train", "projection_dim", "normalize", "prompts", "prompt_token_ids",
                "pool_prompt_tokens", "matryoshka_dims", "truncate_dim")  # fmt: skip
        settings.update({key: saved[key] for key in keep if key in saved})
        training_head = os.path.join(folder, "hfcontrast_head.safetensors")
        if os.path.isfile(training_head):
            head = load_file(training_head)
    return settings, head


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
        # The backbone's own pooler is never used: unused parameters would break DDP.
        self.backbone = build_backbone(config.backbone_config, keep_pooler=False)
        hidden = config.backbone_config.hidden_size
        self.mlp = MLPHead(hidden, config.projection_dim or hidden, kind="simcse") if config.mlp_head else None
        self.post_init()

    @property
    def train_embedding_dim(self) -> int:
        """Width of the embedding the loss sees (the :class:`~hfcontrast.objectives.Encoder` protocol)."""
        return self.config.train_embedding_dim

    def _init_weights(self, module: torch.nn.Module) -> None:
        if isinstance(module, torch.nn.Linear) and self.mlp is not None and module in self.mlp.modules():
            std = getattr(self.config.backbone_config, "initializer_range", 0.02)
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)

    @classmethod
    def from_backbone_pretrained(
        cls, backbone_name_or_path: str, backbone_overrides: str | None = None, **config_kwargs: Any
    ) -> ContrastiveTextModel:
        """Wrap a pretrained ``AutoModel`` checkpoint (BERT, RoBERTa, MiniLM, ...) with fresh heads.
        ``backbone_overrides`` (e.g. ``"num_hidden_layers=2"``) changes its config first: a smaller student
        keeps the first layers' weights. ``name_or_path`` is the backbone's (where its tokenizer is); it is
        not written into the exported config."""
        config = AutoConfig.from_pretrained(backbone_name_or_path)
        if backbone_overrides:
            config.update_from_string(backbone_overrides)
        backbone = AutoModel.from_pretrained(backbone_name_or_path, config=config)
        model = cls(cls.config_class(backbone_config=backbone.config.to_dict(), **config_kwargs))
        copy_backbone(model.backbone, backbone, f"backbone {backbone_name_or_path}")
        model.name_or_path = model.config._name_or_path = str(backbone_name_or_path)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """An hfcontrast checkpoint, or a sentence-transformers folder (one hfcontrast exported, or any other:
        :meth:`from_sentence_transformers`), so training can continue from a standard export."""
        folder = str(pretrained_model_name_or_path)
        if is_sentence_transformers_folder(folder):
            return cls.from_sentence_transformers(folder)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_sentence_transformers(cls, folder: str) -> ContrastiveTextModel:
        """Read a sentence-transformers folder back: its ``Transformer`` as the backbone, ``Pooling`` as the pooler,
        a ``Dense`` with ``Tanh`` as the MLP head, ``Normalize``, the prompts and ``truncate_dim``; a folder hfcontrast
        wrote also restores its ``hfcontrast.json`` (a training-only head included). A module that has no
        counterpart here (another pooling mode, another activation) is an error naming it."""
        import os

        settings, head = sentence_transformers_settings(folder)
        backbone = AutoModel.from_pretrained(os.path.join(folder, settings.pop("transformer_path")))
        model = cls(cls.config_class(backbone_config=backbone.config.to_dict(), **settings))
        copy_backbone(model.backbone, backbone, f"backbone of {folder}")
        if head is not None:
            assert model.mlp is not None
            model.mlp.load_state_dict(head)
        model.name_or_path = model.config._name_or_path = folder
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
        cu_seq_lens: torch.Tensor | None = None,
        max_length: int | None = None,
        **kwargs: object,
    ) -> ContrastiveEncoderOutput | tuple[torch.Tensor, ...]:
        """Embed a tokenised batch. ``use_head`` (the MLP head) defaults to SimCSE's rule:
        apply it unless ``mlp_only_train`` is set and the model is in eval mode. Losses pass
        ``use_head=True`` so that an evaluation loss is computed on the training embedding; the
        exported embedding (eval mode, ``use_head`` unset) is cut to ``config.truncate_dim``.

        Packed sequences (padding-free): ``input_ids [1, T]`` with ``position_ids`` restarting at 0 for each
        sequence, ``cu_seq_lens [R + 1]`` (int32 cumulative lengths) and ``max_length``; no attention mask. One
        embedding per sequence comes back, as for the padded batch."""
        if cu_seq_lens is not None:
            if not self.config.pool_prompt_tokens and self.config.prompt_token_ids:
                raise ValueError("packed sequences pool every token: they cannot leave out prompt tokens (pool_prompt_tokens)")
            packed = {"input_ids": input_ids, "position_ids": position_ids, "inputs_embeds": inputs_embeds}
            packed.update({"token_type_ids": token_type_ids} if token_type_ids is not None else {})
            pooled, last_hidden_state = packed_text(self.config.pooler, self.backbone, packed, cu_seq_lens, int(max_length or 0))
            return self._embed(pooled, last_hidden_state, use_head, return_dict)
        if attention_mask is None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]  # type: ignore[index]
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        inputs.update({k: v for k, v in (("token_type_ids", token_type_ids), ("position_ids", position_ids)) if v is not None})
        pool_mask = None
        if not self.config.pool_prompt_tokens and self.config.prompt_token_ids and input_ids is not None:
            pool_mask = without_prompt_tokens(input_ids, attention_mask, self.config.prompt_token_ids.values())
        pooled, last_hidden_state = pool_text(self.config.pooler, self.backbone, inputs, pool_mask=pool_mask)
        return self._embed(pooled, last_hidden_state, use_head, return_dict)

    def _embed(
        self, pooled: torch.Tensor, last_hidden_state: torch.Tensor, use_head: bool | None, return_dict: bool | None
    ) -> ContrastiveEncoderOutput | tuple[torch.Tensor, ...]:
        """The head, ``truncate_dim`` and normalisation on the pooled vectors."""
        exported = use_head is None and not self.training  # the embedding users get (truncate_dim applies)
        if use_head is None:
            use_head = self.training or not self.config.mlp_only_train
        embeddings = self.mlp(pooled) if (self.mlp is not None and use_head) else pooled
        if exported and self.config.truncate_dim:
            embeddings = embeddings[..., : self.config.truncate_dim]
        if self.config.normalize:
            embeddings = F.normalize(embeddings, dim=-1)
        output = ContrastiveEncoderOutput(embeddings=embeddings, pooled=pooled, last_hidden_state=last_hidden_state)
        return output if return_dict is not False else output.to_tuple()
