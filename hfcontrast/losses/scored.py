"""Losses for pairs with a similarity score (STS-B's 0-5 ratings, a cross-encoder's scores).

For pairs ``(u_k, v_k)`` with gold scores ``y_k`` and a predicted similarity ``s_k = s(u_k, v_k)``:

* **CoSENT** (Su 2022, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT"): every pair
  of pairs ranked by its gold scores is ranked by the predictions,
  ``L = log(1 + sum_{(k, l): y_k > y_l} exp(lambda (s_l - s_k)))`` with ``s`` the cosine and ``lambda = 20``.
  Only the order of the scores matters, so they need no normalisation.
* **AnglE** (Li & Li 2023, "AnglE-optimized Text Embeddings", the angle objective): the same ranking over
  an angle score that does not saturate where the cosine does. The embedding ``x = [a; b]`` is the complex
  vector ``z = a + ib`` (``y = [c; d]``: ``w = c + id``), and with ``<z, w> = sum_j z_j conj(w_j)``,
  ``s(x, y) = |Re<z, w> + Im<z, w>| / (|z| |w|)`` (the normalised quotient ``z / w`` of the paper's code,
  its real and imaginary parts summed).
* **Cosine MSE** (Reimers & Gurevych 2019, SBERT's regression objective): ``L = mean_k (cos(u_k, v_k) - y_k)^2``,
  with ``y`` in ``[0, 1]`` (or the similarity's range).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, check_positive, upcast
from .compiled import compilable
from .types import LossOutput


def _check_pairs(u: Tensor, v: Tensor, scores: Tensor) -> None:
    check_embeddings("u", u)
    check_embeddings("v", v, u.shape[1])
    if u.shape[0] != v.shape[0] or scores.shape != (u.shape[0],):
        raise ValueError(
            f"{u.shape[0]} and {v.shape[0]} embeddings with {tuple(scores.shape)} scores: expected one score per pair"
        )


def cosine_pair_similarity(u: Tensor, v: Tensor) -> Tensor:
    """Row-wise ``cos(u_k, v_k)`` in at least fp32."""
    u, v = upcast(u, v)
    return F.cosine_similarity(u, v, dim=-1)


def angle_pair_similarity(u: Tensor, v: Tensor) -> Tensor:
    """Row-wise AnglE score ``|Re<z, w> + Im<z, w>| / (|z| |w|)`` of the halves as complex vectors (even width)."""
    if u.shape[-1] % 2:
        raise ValueError(f"the AnglE score splits each embedding into real and imaginary halves: width {u.shape[-1]} is odd")
    u, v = upcast(u, v)
    a, b = u.chunk(2, dim=-1)
    c, d = v.chunk(2, dim=-1)
    real = (a * c + b * d).sum(-1)
    imaginary = (b * c - a * d).sum(-1)
    norms = u.norm(dim=-1) * v.norm(dim=-1)
    return (real + imaginary).abs() / norms.clamp_min(torch.finfo(norms.dtype).tiny)


@compilable
def ranked_pairs_loss(predicted: Tensor, scores: Tensor, scale: float = 20.0) -> LossOutput:
    """CoSENT's ranking loss on given similarities: ``log(1 + sum_{y_k > y_l} exp(scale (s_l - s_k)))``."""
    check_positive("scale", scale)
    if predicted.shape != scores.shape or predicted.dim() != 1:
        raise ValueError(f"predicted {tuple(predicted.shape)} and gold {tuple(scores.shape)} scores: expected [pairs] each")
    predicted, scores = upcast(predicted, scores.detach())
    differences = scale * (predicted[None, :] - predicted[:, None])  # [k, l] = scale (s_l - s_k)
    ordered = scores[:, None] > scores[None, :]  # y_k > y_l
    terms = differences.masked_fill(~ordered, float("-inf")).flatten()
    loss = torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)
    with torch.no_grad():  # the share of ordered pairs of pairs the predictions order the same way
        agree = ((differences < 0) & ordered).sum() / ordered.sum().clamp_min(1)
    return LossOutput(loss, stats={"pair_order_accuracy": agree})


def cosent_loss(u: Tensor, v: Tensor, scores: Tensor, scale: float = 20.0) -> LossOutput:
    """CoSENT (Su 2022) on the cosine of each pair ``(u_k, v_k)`` against gold ``scores``."""
    _check_pairs(u, v, scores)
    return ranked_pairs_loss(cosine_pair_similarity(u, v), scores, scale)


def angle_loss(u: Tensor, v: Tensor, scores: Tensor, scale: float = 20.0) -> LossOutput:
    """AnglE's angle objective (Li & Li 2023): CoSENT's ranking on :func:`angle_pair_similarity`."""
    _check_pairs(u, v, scores)
    return ranked_pairs_loss(angle_pair_similarity(u, v), scores, scale)


def cosine_mse_loss(u: Tensor, v: Tensor, scores: Tensor) -> LossOutput:
    """SBERT's regression objective: ``mean_k (cos(u_k, v_k) - y_k)^2``."""
    _check_pairs(u, v, scores)
    predicted = cosine_pair_similarity(u, v)
    return LossOutput(F.mse_loss(predicted, upcast(scores.detach(), predicted)[0]))
