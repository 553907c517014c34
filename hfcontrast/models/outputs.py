"""The outputs every hfcontrast encoder returns (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class ContrastiveEncoderOutput(ModelOutput):
    """``embeddings``: the contrastive embedding ``[batch, dim]``; ``pooled``: before any head."""

    embeddings: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


@dataclass
class DualEncoderOutput(ModelOutput):
    """Both modalities at once, as ``CLIPOutput``: L2-normalised ``image_embeds`` / ``text_embeds``
    ``[B, D]`` and ``logits_per_image = s * I T^T (+ b)`` ``[B_img, B_txt]``, ``logits_per_text`` its transpose,
    with ``s = exp(logit_scale)`` and ``b`` the SigLIP bias (when the model has one)."""

    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
