"""Pooling of backbone outputs into one vector per input (copied into checkpoints: no hfcontrast imports)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

#: Text poolings (SimCSE's names): ``cls`` / ``cls_before_pooler`` the first token, ``mean``, ``first_last_avg``, ``max``.
TEXT_POOLERS = ("cls", "cls_before_pooler", "mean", "first_last_avg", "max")
#: Image poolings: ``auto`` (``pooler_output`` when the backbone returns one, else the first token),
#: ``pooler_output`` (required), ``cls`` (first token) and ``mean`` (tokens, or a feature map's positions).
IMAGE_POOLERS = ("auto", "pooler_output", "cls", "mean")


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens whose mask is 1: sum_t m_t h_t / sum_t m_t."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def pool_tokens(
    pooler: str,
    last_hidden_state: torch.Tensor,
    attention_mask: torch.Tensor,
    hidden_states: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """Pool token states into one vector per sequence, as in SimCSE (Gao et al. 2021).

    ``cls``/``cls_before_pooler``: the first token; ``mean``: masked mean of the last layer;
    ``first_last_avg``: masked mean of (first layer + last layer) / 2; ``max``: masked max.
    """
    if pooler in ("cls", "cls_before_pooler"):
        return last_hidden_state[:, 0]
    if pooler == "mean":
        return masked_mean(last_hidden_state, attention_mask)
    if pooler == "first_last_avg":
        if hidden_states is None:
            raise ValueError("pooler 'first_last_avg' needs the backbone's hidden_states")
        # hidden_states[0] are the embeddings; [1] is the first transformer layer (SimCSE's convention).
        return masked_mean((hidden_states[1] + hidden_states[-1]) / 2.0, attention_mask)
    if pooler == "max":
        mask = attention_mask.unsqueeze(-1).bool()
        return last_hidden_state.masked_fill(~mask, torch.finfo(last_hidden_state.dtype).min).amax(dim=1)
    raise ValueError(f"unknown pooler {pooler!r}; choose one of {TEXT_POOLERS}")


def without_prompt_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: Iterable[Sequence[int]]
) -> torch.Tensor:
    """``attention_mask`` with the prompt tokens zeroed: a row whose tokens after the first (the CLS / BOS
    token) start with one of ``prompts`` (token ids, longest match first) pools without them."""
    mask = attention_mask.clone()
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for ids in sorted((list(p) for p in prompts), key=len, reverse=True):
        if not ids or len(ids) + 1 > input_ids.shape[1]:
            continue
        # Compared with Python ints and masked without boolean indexing: no host<->device round trip.
        match = torch.stack([input_ids[:, 1 + k] == token for k, token in enumerate(ids)], dim=1).all(dim=1) & ~done
        mask[:, 1 : 1 + len(ids)].masked_fill_(match[:, None], 0)
        done |= match
    return mask


#: Bidirectional encoders whose attention takes a prepared 4-D mask as it is (transformers'
#: ``create_bidirectional_mask``), with no causal or windowed part of their own that a given mask would replace.
BIDIRECTIONAL_ENCODERS = frozenset({
    "albert", "bert", "camembert", "distilbert", "electra", "ernie", "megatron-bert", "mpnet", "roberta",
    "roberta-prelayernorm", "roformer", "xlm-roberta", "xlm-roberta-xl",
})  # fmt: skip


def prepared_attention_mask(backbone: Any, mask: torch.Tensor) -> torch.Tensor:
    """For an SDPA encoder of :data:`BIDIRECTIONAL_ENCODERS`, the boolean ``[B, 1, 1, L]`` mask transformers would
    build from ``mask``, built here. transformers first asks whether the mask can be dropped (``mask.all()``), a
    host read of the device at every forward; a prepared mask skips that question, and the result is the same.
    Other backbones and attention implementations get ``mask`` as it is."""
    config = getattr(backbone, "config", None)
    if (
        mask.dim() == 2
        and getattr(config, "model_type", None) in BIDIRECTIONAL_ENCODERS
        and getattr(config, "_attn_implementation", None) == "sdpa"
    ):
        return mask[:, None, None, :].bool()
    return mask


def pool_text(
    pooler: str, backbone: Any, inputs: dict[str, Any], pool_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a text ``backbone`` on ``inputs`` and pool: :data:`TEXT_POOLERS`, or ``pooler_output`` (the
    backbone's own: CLIP's EOS token, BERT's tanh pooler). ``pool_mask`` (default: the attention mask)
    says which tokens the pooling averages. Returns ``(pooled, last_hidden_state)``."""
    if inputs.get("attention_mask") is None:
        inputs = {**inputs, "attention_mask": torch.ones_like(inputs["input_ids"])}
    need_layers = pooler == "first_last_avg"
    attention = prepared_attention_mask(backbone, inputs["attention_mask"])
    outputs = backbone(**{**inputs, "attention_mask": attention}, output_hidden_states=need_layers, return_dict=True)
    if pooler == "pooler_output":
        if outputs.pooler_output is None:
            raise ValueError(f"{type(backbone).__name__} returns no pooler_output; pick another pooler")
        return outputs.pooler_output, outputs.last_hidden_state
    layers = outputs.hidden_states if need_layers else None
    mask = inputs["attention_mask"] if pool_mask is None else pool_mask
    return pool_tokens(pooler, outputs.last_hidden_state, mask, layers), outputs.last_hidden_state


def pool_packed(
    pooler: str,
    hidden: torch.Tensor,
    cu_seq_lens: torch.Tensor,
    hidden_states: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """:func:`pool_tokens` for packed sequences: ``hidden [T, H]`` holds the sequences one after another, sequence
    ``r`` at tokens ``cu_seq_lens[r] .. cu_seq_lens[r + 1] - 1``. No padding, and no host read: the segment of
    each token comes from ``cu_seq_lens`` on the device (``repeat_interleave`` told its output size)."""
    rows, tokens = cu_seq_lens.shape[0] - 1, hidden.shape[0]
    starts = cu_seq_lens[:-1].long()
    if pooler in ("cls", "cls_before_pooler"):
        return hidden[starts]
    lengths = cu_seq_lens.diff().long()
    segment = torch.repeat_interleave(torch.arange(rows, device=hidden.device), lengths, output_size=tokens)
    if pooler == "max":
        out = hidden.new_full((rows, hidden.shape[1]), torch.finfo(hidden.dtype).min)
        return out.scatter_reduce(0, segment[:, None].expand_as(hidden), hidden, reduce="amax")
    if pooler == "first_last_avg":
        if hidden_states is None:
            raise ValueError("pooler 'first_last_avg' needs the backbone's hidden_states")
        hidden = ((hidden_states[1] + hidden_states[-1]) / 2.0)[0]
    elif pooler != "mean":
        raise ValueError(f"unknown pooler {pooler!r}; choose one of {TEXT_POOLERS}")
    sums = hidden.new_zeros((rows, hidden.shape[1])).index_add(0, segment, hidden)
    return sums / lengths.clamp(min=1).to(hidden.dtype)[:, None]


def packed_text(
    pooler: str, backbone: Any, inputs: dict[str, Any], cu_seq_lens: torch.Tensor, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a text ``backbone`` on packed sequences (``input_ids [1, T]``, ``position_ids`` restarting at 0 for each
    sequence, no attention mask) and pool each sequence: ``(pooled [R, H], last_hidden_state [1, T, H])``. The
    attention keeps the sequences apart: flash attention from ``cu_seq_lens`` (varlen kernels), flex and SDPA
    from the position ids."""
    need_layers = pooler == "first_last_avg"
    varlen = {"cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens, "max_length_q": max_length,
              "max_length_k": max_length}  # fmt: skip
    outputs = backbone(**inputs, **varlen, output_hidden_states=need_layers, return_dict=True)
    layers = outputs.hidden_states if need_layers else None
    return pool_packed(pooler, outputs.last_hidden_state[0], cu_seq_lens, layers), outputs.last_hidden_state


def pool_image(pooler: str, last_hidden_state: torch.Tensor, pooler_output: torch.Tensor | None) -> torch.Tensor:
    """One vector per image from a backbone output (see :data:`IMAGE_POOLERS`): ``pooler_output`` flattened
    to ``[B, C]``; ``cls``: the first token ``h[:, 0]`` of ``[B, T, C]``; ``mean``: ``mean_t h[:, t]``, or the
    global average pool ``mean_{y,x} h[:, :, y, x]`` of a ``[B, C, H, W]`` feature map."""
    if pooler in ("auto", "pooler_output") and pooler_output is not None:
        return pooler_output.flatten(1)
    if pooler == "pooler_output":
        raise ValueError("this backbone returns no pooler_output; pick another pooler")
    if last_hidden_state.dim() == 4:
        if pooler == "cls":
            raise ValueError("pooler 'cls' needs a token sequence [B, T, C]; this backbone returns a [B, C, H, W] map")
        return last_hidden_state.mean(dim=(2, 3))
    if last_hidden_state.dim() != 3:
        raise ValueError(f"unsupported backbone output of shape {tuple(last_hidden_state.shape)}")
    if pooler in ("auto", "cls"):
        return last_hidden_state[:, 0]
    if pooler == "mean":
        return last_hidden_state.mean(dim=1)
    raise ValueError(f"unknown pooler {pooler!r}; choose one of {IMAGE_POOLERS}")
