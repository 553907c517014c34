"""Non-contrastive predictive losses (no negatives): BYOL and SimSiam.

Both compare an online prediction ``p`` with a stop-gradient target ``z``; each function computes
one direction, the caller symmetrises over the two views (``0.5 * (L(p1, z2) + L(p2, z1))``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._checks import check_embeddings, upcast
from .compiled import compilable


def _cosine(prediction: Tensor, target: Tensor) -> Tensor:
    check_embeddings("prediction", prediction)
    check_embeddings("target", target, prediction.shape[1])
    if target.shape[0] != prediction.shape[0]:
        raise ValueError(
            f"prediction and target need the same batch size, got {prediction.shape[0]} and {target.shape[0]}"
        )
    p, z = upcast(prediction, target.detach())
    return F.cosine_similarity(p, z, dim=-1)


@compilable
def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL regression loss ``mean_i (2 - 2 cos(p_i, sg(z_i)))`` (Grill et al. 2020, eq. 2).

    Equals the mean squared distance of the L2-normalised vectors. ``target`` is detached here.
    """
    return (2.0 - 2.0 * _cosine(prediction, target)).mean()


@compilable
def simsiam_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """SimSiam loss ``-mean_i cos(p_i, sg(z_i))`` (Chen & He 2021, eq. 1 with stop-gradient, eq. 3).

    ``target`` is detached here.
    """
    return -_cosine(prediction, target).mean()
