"""The InfoNCE-family objectives' loss settings, each validated once, where it is built:
:class:`NegativeConfig` (how negatives are treated), :class:`MatryoshkaConfig` (nested widths) and
:class:`ChunkingConfig` (the loss computed a slice of rows at a time).

Which dataset columns hold the ids and the labels is the collators' business (``id_column``,
``label_column``: they emit ``batch["ids"]`` and ``batch["labels"]``); the command-line flags and their
help live in :mod:`hfcontrast.cli.flags`, which names flags where these errors name fields. Papers and
formulas: ``docs/objectives.md`` and :mod:`hfcontrast.losses.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..losses import Similarity, check_matryoshka
from ..losses._checks import check_positive


@dataclass(frozen=True)
class NegativeConfig:
    """Composable negative handling; every field off by default (plain InfoNCE).

    Args:
        mask_duplicates: candidates with the row's ``batch["ids"]`` (the same example: id column,
            normalised text, image id) are ignored, in the batch and in the queue (which stores ids).
        supervised: SupCon (Khosla et al. 2020): every candidate with the row's ``batch["labels"]``
            (batch, gathered, queue) is a positive.
        fncl / fncl_top_k: FNCL (Huynh et al. 2022): the top-k negatives most similar to the anchor's
            support views are eliminated or attracted as positives.
        debiased_tau_plus: class prior of the debiased loss (Chuang et al. 2020); 0 = off.
        hard_negative_beta: hard-negative importance weighting (Robinson et al. 2021); 0 = off.
        mochi_n / mochi_s / mochi_s_prime: MoCHi (Kalantidis et al. 2020): mix the top-n queue
            negatives into s negative-negative and s' query-negative synthetic negatives.
        decoupled: DCL (Yeh et al. 2022): the positive leaves the denominator.
    """

    mask_duplicates: bool = False
    supervised: bool = False
    fncl: Literal["none", "eliminate", "attract"] = "none"
    fncl_top_k: int = 1
    debiased_tau_plus: float = 0.0
    hard_negative_beta: float = 0.0
    mochi_n: int = 0
    mochi_s: int = 0
    mochi_s_prime: int = 0
    decoupled: bool = False

    def __post_init__(self) -> None:
        if self.fncl not in ("none", "eliminate", "attract"):
            raise ValueError(f"fncl must be 'none', 'eliminate' or 'attract', got {self.fncl!r}")
        if self.fncl_top_k < 1:
            raise ValueError(f"fncl_top_k must be >= 1, got {self.fncl_top_k}")
        if not 0.0 <= self.debiased_tau_plus < 1.0:
            raise ValueError(f"debiased_tau_plus must lie in [0, 1), got {self.debiased_tau_plus}")
        if self.hard_negative_beta < 0:
            raise ValueError(f"hard_negative_beta must be >= 0, got {self.hard_negative_beta}")
        if min(self.mochi_n, self.mochi_s, self.mochi_s_prime) < 0:
            raise ValueError("mochi_n, mochi_s and mochi_s_prime must be >= 0")
        if (self.mochi_n > 0) != (self.mochi_s + self.mochi_s_prime > 0):
            raise ValueError("MoCHi needs mochi_n >= 1 and mochi_s + mochi_s_prime >= 1 together (or all 0)")
        if self.debiased_tau_plus > 0:
            if self.decoupled:
                raise ValueError(
                    "debiased_tau_plus and decoupled exclude each other: the debiased estimator "
                    "subtracts tau+ e^{positive} inside a denominator that DCL removes the positive from"
                )
            if self.supervised or self.fncl == "attract":
                raise ValueError(
                    "debiased_tau_plus corrects for unknown same-class negatives with one positive "
                    "per anchor; with supervised (SupCon labels) or fncl='attract' use no debiasing"
                )
        if self.supervised and self.mask_duplicates:
            raise ValueError(
                "with supervised (SupCon labels) every duplicate shares its label and is already a positive; "
                "drop mask_duplicates (the queue stores labels, not ids)"
            )

    @property
    def mochi(self) -> bool:
        return self.mochi_n > 0

    @property
    def active(self) -> bool:
        """True when anything differs from plain InfoNCE."""
        return self != NegativeConfig()

    @property
    def queue_stores(self) -> Literal["labels", "ids"] | None:
        """What a queue must store next to its keys: SupCon labels, duplicate ids, or nothing."""
        if self.supervised:
            return "labels"
        return "ids" if self.mask_duplicates else None

    def check(self, owner: str, *, temperature: float | None, has_queue: bool, similarity: Similarity = "cosine") -> None:
        """The objective-dependent checks, once at construction: a temperature > 0 (when the objective
        has a fixed one), a queue for MoCHi, cosine similarity for MoCHi and the debiased loss."""
        if temperature is not None:
            check_positive("temperature", temperature)
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
        if self.mochi and not has_queue:
            raise ValueError(f"MoCHi mixes queued negatives: {owner} needs a queue (queue_size > 0) for mochi_n")
        if similarity != "cosine" and (self.mochi or self.debiased_tau_plus > 0):
            raise ValueError(f"{owner}: MoCHi and the debiased loss need similarity='cosine'")


@dataclass(frozen=True)
class MatryoshkaConfig:
    """Matryoshka representation learning (Kusupati et al. 2022): the loss is ``sum_m w_m L(prefix d_m)``
    over the strictly decreasing widths ``dims`` (weights ``w_m``, default 1 each)."""

    dims: tuple[int, ...]
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        check_matryoshka(self.dims, self.weights)


@dataclass(frozen=True)
class ChunkingConfig:
    """The loss computed ``rows`` query rows at a time, each slice recomputed in backward: memory linear
    in the batch, the same value and gradients."""

    rows: int

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise ValueError(f"ChunkingConfig.rows must be >= 1, got {self.rows}")
