"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations").

NT-Xent over the ``2N`` augmented views of a (global) batch of ``N`` images: with ``z_1..z_2N`` the
query views followed by the key views and ``pos(i)`` the other view of image ``i``,

``l_i = -log exp(sim(z_i, z_pos(i))/tau) / sum_{j != i} exp(sim(z_i, z_j)/tau)``,  ``L = mean_i l_i``

i.e. every view has one positive and ``2N - 2`` negatives; the self-similarity is masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..distributed import gather_with_grad
from ..losses import LossOutput, Similarity, info_nce
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats


def nt_xent(
    query: Tensor,
    key: Tensor,
    query_all: Tensor,
    key_all: Tensor,
    offset: int,
    temperature: float,
    similarity: Similarity = "cosine",
) -> LossOutput:
    """NT-Xent of this process's rows ``[query; key]`` (``2n``) against the gathered ``[query_all; key_all]``.

    Column layout: global query ``j`` is column ``j``, global key ``j`` is column ``N + j``. Local query
    ``i`` is global row ``offset + i``: its positive is column ``N + offset + i`` and column ``offset + i``
    (itself) is masked; symmetrically for keys. The mean over every process's rows equals the
    single-process loss over the concatenated batch.
    """
    n, total = query.shape[0], query_all.shape[0]
    if key.shape[0] != n or key_all.shape[0] != total:
        raise ValueError(f"query and key views need the same batch size, got {n} and {key.shape[0]}")
    if total < 2:
        raise ValueError("SimCLR needs at least 2 images in the (global) batch to have negatives")
    device = query.device
    rows = torch.arange(n, device=device) + offset
    self_index = torch.cat([rows, rows + total])
    positive_index = torch.cat([rows + total, rows])
    mask = torch.zeros(2 * n, 2 * total, dtype=torch.bool, device=device)
    mask[torch.arange(2 * n, device=device), self_index] = True
    return info_nce(
        torch.cat([query, key]),
        torch.cat([query_all, key_all]),
        positive_index,
        temperature=temperature,
        similarity=similarity,
        candidate_mask=mask,
    )


class SimCLR(ContrastiveObjective):
    """NT-Xent over views ``query`` and ``key``, negatives gathered from every process.

    Args:
        temperature: ``tau > 0`` (SimCLR: 0.1 with large batches; 0.5 in its CIFAR-10 setting).
        similarity: ``"cosine"`` (the paper's) or ``"dot"``.
        gather: use the views of every process as negatives (with gradient), as SimCLR's global batch.
    """

    online_views = ("query", "key")

    def __init__(
        self, temperature: float = 0.1, *, similarity: Similarity = "cosine", gather: bool = True
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.similarity, self.gather = temperature, similarity, gather

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        query, key = embeddings["query"], embeddings["key"]
        if self.gather:
            query_all, offset = gather_with_grad(query)
            key_all, _ = gather_with_grad(key)
        else:
            query_all, key_all, offset = query, key, 0
        out = nt_xent(query, key, query_all, key_all, offset, self.temperature, self.similarity)
        stats = pair_stats(query, key, out.logits, out.labels)
        stats["temperature"] = torch.tensor(self.temperature)
        stats["negatives"] = torch.tensor(float(2 * query_all.shape[0] - 2))
        return ObjectiveOutput(out.loss, stats)
