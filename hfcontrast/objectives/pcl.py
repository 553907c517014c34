"""PCL (Li, Zhou, Xiong, Hoi 2021, "Prototypical Contrastive Learning of Unsupervised Representations").

ProtoNCE = MoCo v2's InfoNCE plus a prototype term over ``M`` clusterings of the training set:

``L = L_InfoNCE - 1/M sum_m log exp(v . c_s^m / phi_s^m) / sum_j exp(v . c_j^m / phi_j^m)``

with ``v`` the query embedding, ``c^m`` the ``K_m`` centroids of clustering ``m`` (spherical k-means over
momentum-encoder features of every training row), ``s`` the row's cluster and ``phi`` the per-cluster
concentration (:func:`~hfcontrast.losses.clustering.concentration`). The clusterings are refreshed by
:class:`~hfcontrast.objectives.clusters.ClusterRefreshCallback` (each epoch or every N steps); k-means runs
on the first process and is broadcast. Centroids, concentrations, every row's assignment and the step
they were computed at are buffers: saved in checkpoints, so a resumed run uses the same clusters.
Rows are looked up by ``batch["ids"]`` (the dataset row index: the collator's ``id_column``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import broadcast_tensor, rank
from ..losses import concentration, kmeans, proto_nce_term
from ..memory import host_scalar, register_host_scalar, set_host_scalar
from .base import ObjectiveOutput, embedding_width, scalar_stat
from .clusters import ClusterRefreshCallback
from .config import ChunkingConfig, MatryoshkaConfig, NegativeConfig
from .moco import MoCo


class PCL(MoCo):
    """ProtoNCE over views ``query`` (trained model) and ``key`` (momentum encoder), a queue of keys and
    ``len(num_clusters)`` clusterings of ``num_rows`` training rows.

    Args:
        encoder: the model being trained (its momentum copy embeds the keys and the clustered features).
        num_rows: training rows (``batch["ids"]`` is in ``[0, num_rows)``).
        num_clusters: ``K_m`` of each clustering (paper, ImageNet: 25000, 50000, 100000).
        prototype_weight: weight of the prototype term (paper: 1).
        kmeans_iterations / concentration_alpha / seed: k-means iterations, ``alpha`` of ``phi`` (10), k-means seed.
        every_n_steps / start_step: the clusters are refreshed every N optimizer steps (``None``: at each
            epoch's start) from ``start_step`` on; before it the loss is MoCo v2's InfoNCE alone.
        temperature / queue_size / momentum / negatives: as :class:`MoCo` v2 (paper: 0.2, 16384, 0.999).
        matryoshka / chunking: :class:`MatryoshkaConfig` (nested widths) and :class:`ChunkingConfig`
            (the loss a slice of rows at a time), as for every :class:`InfoNCEObjective`.
    """

    needs_row_ids = True

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        num_rows: int | None = None,
        num_clusters: Sequence[int] = (250, 500, 1000),
        prototype_weight: float = 1.0,
        kmeans_iterations: int = 20,
        concentration_alpha: float = 10.0,
        seed: int = 0,
        every_n_steps: int | None = None,
        start_step: int = 0,
        temperature: float = 0.2,
        queue_size: int | None = 16384,
        momentum: float | None = 0.999,
        final_momentum: float | None = None,
        embedding_dim: int | None = None,
        negatives: NegativeConfig | None = None,
        matryoshka: MatryoshkaConfig | None = None,
        chunking: ChunkingConfig | None = None,
    ) -> None:
        super().__init__(
            None, version="v2", temperature=temperature, queue_size=queue_size, momentum=momentum,
            final_momentum=final_momentum, embedding_dim=embedding_dim, negatives=negatives, matryoshka=matryoshka, chunking=chunking,
        )  # fmt: skip
        self.tag = "pcl"
        self.num_clusters = [int(k) for k in num_clusters]
        if not self.num_clusters or min(self.num_clusters) < 2:
            raise ValueError(f"num_clusters must be non-empty, each >= 2, got {list(num_clusters)}")
        self.prototype_weight, self.kmeans_iterations = prototype_weight, kmeans_iterations
        self.concentration_alpha, self.seed, self.rows = concentration_alpha, seed, num_rows
        self.every_n_steps, self.start_step = every_n_steps, start_step
        self.assignments: Tensor
        if encoder is not None:
            self.bind(encoder, num_rows=num_rows)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """MoCo v2's state, then one clustering buffer set per ``K_m`` over the ``num_rows`` training rows."""
        super().build(encoder)
        rows = self.rows if self.rows is not None else num_rows
        if rows is None:
            raise ValueError("PCL clusters the training rows: pass num_rows= (ContrastiveTrainer passes the dataset's size)")
        if max(self.num_clusters) > rows:
            raise ValueError(f"num_clusters must each be in [2, num_rows={rows}], got {self.num_clusters}")
        dim = embedding_width(encoder, self.embedding_dim, "PCL")
        self.register_buffer("assignments", torch.full((len(self.num_clusters), rows), -1, dtype=torch.long))
        register_host_scalar(self, "clustered_at", -1)  # read every step: a Python int, checkpointed
        for m, k in enumerate(self.num_clusters):
            self.register_buffer(f"centroids_{m}", torch.zeros(k, dim))
            self.register_buffer(f"concentration_{m}", torch.ones(k))

    def training_callbacks(self, dataset: Any, collator: Any, present: Sequence[Any] = ()) -> list[Any]:
        """The cluster refresh (:class:`~hfcontrast.objectives.clusters.ClusterRefreshCallback`): every row of
        ``dataset`` embedded by the momentum encoder in the collator's deterministic view (``eval_collator``);
        none when ``present`` holds a refresh of this objective already. The collator's id column must hold row
        indices in ``[0, num_rows)``: checked here, once, on the host (the training step does not look)."""
        column = getattr(collator, "id_column", None)
        if column is not None and column in getattr(dataset, "column_names", ()):
            ids = dataset[column]
            if ids and (min(ids) < 0 or max(ids) >= self.num_rows):
                raise ValueError(f"column {column!r} must hold row indices in [0, {self.num_rows}), got [{min(ids)}, {max(ids)}]")
        if any(isinstance(callback, ClusterRefreshCallback) and callback.objective is self for callback in present):
            return []
        features = getattr(collator, "eval_collator", None)
        if not callable(features):
            raise ValueError(f"PCL clusters momentum features of every row: {type(collator).__name__} has no eval_collator()")
        return [ClusterRefreshCallback(self, dataset, features(), every_n_steps=self.every_n_steps, start_step=self.start_step)]

    @property
    def clustered_step(self) -> int:
        """The step of the clusters in use (``-1``: none yet), the host's copy of ``clustered_at``."""
        return int(host_scalar(self, "clustered_at"))

    @property
    def num_rows(self) -> int:
        return int(self.assignments.shape[1])

    def centroids(self) -> list[Tensor]:
        return [getattr(self, f"centroids_{m}") for m in range(len(self.num_clusters))]

    def concentrations(self) -> list[Tensor]:
        return [getattr(self, f"concentration_{m}") for m in range(len(self.num_clusters))]

    @torch.no_grad()
    def set_clusters(self, features: Tensor, step: int) -> None:
        """Cluster ``features [num_rows, D]`` (the same on every process) at each ``K_m``: k-means on the
        first process (seeded by ``seed`` and ``step``), broadcast to the others."""
        if features.shape[0] != self.num_rows:
            raise ValueError(f"PCL clusters {self.num_rows} rows, got features of {features.shape[0]}")
        if rank() == 0:
            for m, k in enumerate(self.num_clusters):
                centroids, assigned = kmeans(features, k, iterations=self.kmeans_iterations, seed=self.seed + step)
                phi = concentration(features, centroids, assigned, alpha=self.concentration_alpha)
                self.centroids()[m].copy_(centroids)
                self.concentrations()[m].copy_(phi)
                self.assignments[m].copy_(assigned)
        for buffer in (self.assignments, *self.centroids(), *self.concentrations()):
            buffer.copy_(broadcast_tensor(buffer))
        set_host_scalar(self, "clustered_at", step)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        out = super().forward(embeddings, batch)
        if self.clustered_step < 0:
            out.stats["proto_loss"] = scalar_stat(0.0, out.loss)
            return out
        ids = batch.get("ids")
        if not isinstance(ids, Tensor):
            raise ValueError("PCL needs batch['ids'], each row's dataset index: set the collator's id_column")
        ids = ids.to(self.assignments.device)  # their range [0, num_rows) is checked once, before training
        assigned = [a[ids] for a in self.assignments]
        proto = proto_nce_term(embeddings["query"], self.centroids(), assigned, self.concentrations())
        out.stats["proto_loss"] = proto.loss.detach().float()
        return ObjectiveOutput(out.loss + self.prototype_weight * proto.loss, out.stats)
