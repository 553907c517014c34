"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations").

NT-Xent over the ``2N`` augmented views of a (global) batch of ``N`` images: with ``z_1..z_2N`` the
query views followed by the key views and ``pos(i)`` the other view of image ``i``,

``l_i = -log exp(sim(z_i, z_pos(i))/tau) / sum_{j != i} exp(sim(z_i, z_j)/tau)``,  ``L = mean_i l_i``

i.e. every view has one positive and ``2N - 2`` negatives; the self-similarity is ignored
(:func:`~hfcontrast.losses.nt_xent_roles`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..distributed import gather
from ..losses import LossOutput, Similarity, mixed_positive_loss, nt_xent_roles
from .base import ObjectiveOutput
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .contrast import Examples, InfoNCEObjective
from .guide import Guide


def _twice(examples: Examples) -> Examples:
    """Per-view values of ``[query; key]``: each image's ids / labels, twice."""
    return Examples(*(None if v is None else torch.cat([v, v]) for v in (examples.ids, examples.labels)))


class SimCLR(InfoNCEObjective):
    """NT-Xent over views ``query`` and ``key``, negatives gathered from every process.

    Args:
        temperature: ``tau > 0`` (SimCLR: 0.1 with large batches; 0.5 in its CIFAR-10 setting).
        similarity: ``"cosine"`` (the paper's) or ``"dot"``.
        gather: use the views of every process as negatives (with gradient), as SimCLR's global batch.
        negatives: :class:`NegativeConfig` (false-negative masking by ``batch["ids"]``, FNCL, debiased,
            hard-negative ``beta``, SupCon by ``batch["labels"]``, DCL, chunked loss; no queue, so no MoCHi).
        matryoshka / chunking: :class:`MatryoshkaConfig` (nested widths) and :class:`ChunkingConfig`
            (the loss a slice of rows at a time), as for every :class:`InfoNCEObjective`.
        guide: a :class:`~hfcontrast.objectives.Guide` (GISTEmbed) run on both views.
        mix_weight / mix_temperature: MixCo (Kim et al. 2020), when the batch has a ``mixed`` view
            (:class:`~hfcontrast.collators.mixing.MixingCollator`): ``L + w L_mix`` with
            :func:`~hfcontrast.losses.mixed_positive_loss` at ``mix_temperature`` (default: ``temperature``).
        direct_dims: DirectCLR (Jing et al. 2022, "Understanding Dimensional Collapse in Contrastive
            Self-supervised Learning"): the loss sees only the first ``d`` dimensions of each embedding, which is
            the backbone's representation itself (a model without a projector, ``projection="none"``); the
            gradient reaches the rest of the representation through the backbone alone.
    """

    online_views = ("query", "key", "mixed")  # "mixed": MixCo's view, when the collator mixes (MixingCollator)
    augmentation = "simclr"
    tag = "simclr"

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        similarity: Similarity = "cosine",
        gather: bool = True,
        negatives: NegativeConfig | None = None,
        matryoshka: MatryoshkaConfig | None = None,
        chunking: ChunkingConfig | None = None,
        guide: Guide | None = None,
        direct_dims: int | None = None,
        mix_weight: float = 1.0,
        mix_temperature: float | None = None,
    ) -> None:
        if direct_dims is not None and direct_dims < 1:
            raise ValueError(f"direct_dims must be a positive number of dimensions, got {direct_dims}")
        super().__init__(
            "SimCLR", temperature, similarity=similarity, gather=gather, negatives=negatives, matryoshka=matryoshka,
            chunking=chunking, guide=guide,
        )  # fmt: skip
        self.direct_dims, self.mix_weight, self.mix_temperature = direct_dims, mix_weight, mix_temperature
        if direct_dims is not None:
            self.tag = "directclr"
        self.bind()  # nothing depends on the model

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        query, key = embeddings["query"], embeddings["key"]
        if self.direct_dims is not None:
            if self.direct_dims > query.shape[1]:
                raise ValueError(f"direct_dims={self.direct_dims} exceeds the embedding's {query.shape[1]} dimensions")
            query, key = query[:, : self.direct_dims], key[:, : self.direct_dims]
        out = nt_xent(self, query, key, batch)
        stats = self.loss_stats(query, key, out)
        if "mixed" not in embeddings:
            return ObjectiveOutput(out.loss, stats)
        mixed = embeddings["mixed"][:, : self.direct_dims] if self.direct_dims is not None else embeddings["mixed"]
        mix = mix_loss(self, mixed, key, batch, self.mix_temperature)
        stats["mix_loss"] = mix.detach()
        return ObjectiveOutput(out.loss + self.mix_weight * mix, stats)


def mix_loss(objective: InfoNCEObjective, mixed: Tensor, key: Tensor, batch: Mapping[str, Any], temperature: float | None) -> Tensor:
    """MixCo's term (:func:`~hfcontrast.losses.mixed_positive_loss`): each mixed row against every process's keys,
    its two sources' keys its positives in proportion ``λ``, ``1 - λ`` (the batch's ``mix_lambda``, ``mix_partner``)."""
    keys = gather(key, enabled=objective.gather)
    partner = batch["mix_partner"].to(mixed.device) + keys.offset
    tau = temperature if temperature is not None else float(objective.temperature or 0.1)
    return mixed_positive_loss(mixed, keys.tensor, keys.labels(), partner.to(keys.tensor.device),
                               batch["mix_lambda"].to(keys.tensor.device), tau)  # fmt: skip


def nt_xent(
    objective: InfoNCEObjective,
    query: Tensor,
    key: Tensor,
    batch: Mapping[str, Any],
    views: tuple[str, str] = ("query", "key"),
) -> LossOutput:
    """NT-Xent of ``objective``'s engine over ``[query; key]``, both views gathered from every process;
    ``views`` name the batch's views the two stand for (the guide embeds them)."""
    queries, keys = gather(query, enabled=objective.gather), gather(key, enabled=objective.gather)
    total = queries.tensor.shape[0]
    if key.shape[0] != query.shape[0] or keys.tensor.shape[0] != total:
        raise ValueError(f"query and key views need the same batch size, got {query.shape[0]} and {key.shape[0]}")
    if total < 2:
        raise ValueError(f"{type(objective).__name__} needs at least 2 images in the (global) batch to have negatives")
    mine = objective.examples(batch, query.shape[0], query.device)
    layout = nt_xent_roles(query.shape[0], total, queries.offset, query.device)
    guided = objective.guided(batch, query.device, views, views)
    roles = objective.roles(layout.positive_index, _twice(mine), _twice(objective.gathered(mine)), **guided)
    roles = replace(roles, self_index=layout.self_index)
    return objective.contrast(torch.cat([query, key]), torch.cat([queries.tensor, keys.tensor]), roles)
