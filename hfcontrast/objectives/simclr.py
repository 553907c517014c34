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
from ..losses import ColumnRoles, LossOutput, Similarity, info_nce
from .base import ContrastiveObjective, ObjectiveOutput, pair_stats, scalar_stat
from .options import NegativeOptions, column_values, gathered


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
        options: :class:`NegativeOptions` (false-negative masking by ``batch["ids"]``, FNCL, debiased,
            hard-negative ``beta``, SupCon by ``batch["labels"]``, DCL, chunked loss; no queue, so no MoCHi).
    """

    online_views = ("query", "key")

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        similarity: Similarity = "cosine",
        gather: bool = True,
        options: NegativeOptions | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.similarity, self.gather = temperature, similarity, gather
        self.options = options or NegativeOptions()
        self.options.check("SimCLR", has_queue=False, similarity=similarity)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        query, key = embeddings["query"], embeddings["key"]
        if self.gather:
            query_all, offset = gather_with_grad(query)
            key_all, _ = gather_with_grad(key)
        else:
            query_all, key_all, offset = query, key, 0
        if self.options.active:
            out = self._options_loss(query, key, query_all, key_all, offset, batch)
        else:
            out = nt_xent(query, key, query_all, key_all, offset, self.temperature, self.similarity)
        stats = pair_stats(query, key, out.logits, out.labels)
        stats["temperature"] = scalar_stat(self.temperature, query)
        stats["negatives"] = scalar_stat(2 * query_all.shape[0] - 2, query)
        if out.logits is None:
            stats["top1"], stats["negatives"] = out.stats["top1"], out.stats["negatives"]
        return ObjectiveOutput(out.loss, stats)

    def _options_loss(
        self, query: Tensor, key: Tensor, query_all: Tensor, key_all: Tensor, offset: int, batch: Mapping[str, Any]
    ) -> LossOutput:
        """The NT-Xent layout of :func:`nt_xent` (self masked) under :class:`NegativeOptions`."""
        n, total, device = query.shape[0], query_all.shape[0], query.device
        options = self.options
        ids, classes = options.example_ids(batch, n, device), options.example_labels(batch, n, device)
        all_ids, all_classes = gathered(ids, self.gather), gathered(classes, self.gather)
        rows = torch.arange(n, device=device) + offset
        roles = ColumnRoles(
            positive_index=torch.cat([rows + total, rows]),
            self_index=torch.cat([rows, rows + total]),
            query_ids=column_values(ids, ids, device=device),
            candidate_ids=column_values(all_ids, all_ids, device=device),
            query_labels=column_values(classes, classes, device=device),
            candidate_labels=column_values(all_classes, all_classes, device=device),
        )
        return options.contrast(
            torch.cat([query, key]),
            torch.cat([query_all, key_all]),
            roles,
            temperature=self.temperature,
            similarity=self.similarity,
        )
