"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning").

Both views go through the same online encoder (projections ``z1, z2``) and a predictor ``h``;
no negatives, no momentum encoder, only a stop-gradient on the target (paper, eq. 3):

``L = 1/2 D(h(z1), sg(z2)) + 1/2 D(h(z2), sg(z1))``,  ``D(p, z) = -mean_i cos(p_i, z_i)``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..losses import collapse_std, simsiam_loss
from ..models.heads import Predictor
from .base import ContrastiveObjective, ObjectiveOutput, embedding_width, pair_stats


class SimSiam(ContrastiveObjective):
    """SimSiam over views ``query`` and ``key``; the predictor lives here.

    Args:
        embedding_dim: width of the training-time embedding (the predictor's input and output);
            default the encoder's ``train_embedding_dim``.
        predictor_hidden_dim: the predictor's bottleneck (paper: 512 for 2048-d embeddings).
        encoder: the model being trained, only read for its embedding width.
    """

    online_views = ("query", "key")
    augmentation = "mocov2"
    tag = "simsiam"
    predictor: Predictor

    def __init__(
        self, embedding_dim: int | None = None, predictor_hidden_dim: int = 512, *, encoder: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.embedding_dim, self.predictor_hidden_dim = embedding_dim, predictor_hidden_dim
        if encoder is not None or embedding_dim is not None:
            self.bind(encoder)

    def build(self, encoder: nn.Module | None, *, num_rows: int | None = None) -> None:
        """The predictor, as wide as the training-time embedding."""
        self.predictor = Predictor(embedding_width(encoder, self.embedding_dim, "SimSiam"), self.predictor_hidden_dim)

    def forward(self, embeddings: dict[str, Tensor], batch: Mapping[str, Any]) -> ObjectiveOutput:
        z1, z2 = embeddings["query"], embeddings["key"]
        p1, p2 = self.predictor.both(z1, z2)
        loss = 0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))
        stats = pair_stats(z1, z2, None, None)
        stats["collapse_std"] = collapse_std(z1)
        return ObjectiveOutput(loss, stats)
