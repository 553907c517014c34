"""A long-tailed version of a balanced demo set, as the long-tail papers build theirs (Cao et al. 2019, *Learning
Imbalanced Datasets with Label-Distribution-Aware Margin Loss*; the KCL and BCL papers' CIFAR-LT): class ``c`` of
``C`` keeps ``n_c = floor(n_max r^(-c / (C - 1)))`` of its rows, an exponential profile from ``n_max`` (class 0) down
to ``n_max / r`` (class ``C - 1``), ``r`` the imbalance ratio. The rows kept are a seeded draw within each class."""

from __future__ import annotations

import numpy as np


def long_tail_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """``n_c = floor(n_max r^(-c / (C - 1)))`` for ``c = 0 .. C - 1``."""
    if imbalance_ratio < 1:
        raise ValueError(f"the imbalance ratio must be >= 1, got {imbalance_ratio}")
    if num_classes < 2:
        raise ValueError(f"a long tail needs two or more classes, got {num_classes}")
    return [int(n_max * imbalance_ratio ** (-c / (num_classes - 1))) for c in range(num_classes)]


def long_tailed_indices(labels: np.ndarray, imbalance_ratio: float = 100.0, seed: int = 0) -> np.ndarray:
    """The rows of a long-tailed subset of ``labels`` (classes ``0 .. C - 1``, ``n_max`` the smallest class's size,
    so that every class can give its share), in their original order."""
    labels = np.asarray(labels)
    classes = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=classes)
    if (sizes == 0).any():
        raise ValueError(f"classes {np.flatnonzero(sizes == 0).tolist()} have no rows: a long tail needs every class")
    counts = long_tail_counts(int(sizes.min()), classes, imbalance_ratio)
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in enumerate(counts)]
    return np.sort(np.concatenate(kept))
