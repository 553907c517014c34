"""Negative-handling options shared by the InfoNCE-family objectives (SimCSE, SimCLR, MoCo, CLIP).

:class:`NegativeOptions` is a plain dataclass, so recipes add it to their ``HfArgumentParser`` and get
one ``--flag`` per option; objectives take it as ``options=`` and pass it to the one general loss,
:func:`hfcontrast.losses.contrastive_loss`. Which columns are positives / ignored is described per
objective with a :class:`~hfcontrast.losses.ColumnRoles`; the options decide what the loss does with
them. Papers and formulas: ``docs/objectives.md`` and :mod:`hfcontrast.losses.contrastive`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from ..distributed import gather_detached
from ..losses import ColumnRoles, LossOutput, Similarity, contrastive_loss, draw_mochi


@dataclass
class NegativeOptions:
    """Composable negative handling; every field off by default (plain InfoNCE)."""

    false_negative_masking: bool = field(
        default=False,
        metadata={
            "help": "Ignore candidates that are known duplicates of the query's example (same batch['ids']: "
            "id column, normalised text or image id), in the batch and in the queue (which stores ids)."
        },
    )
    duplicate_id_column: str | None = field(
        default=None,
        metadata={
            "help": "Recipes: column with an id per row for --false_negative_masking (text default: "
            "ids from the normalised positive text)."
        },
    )
    fncl: Literal["none", "eliminate", "attract"] = field(
        default="none",
        metadata={
            "help": "FNCL (Huynh et al. 2022): eliminate the top-k most similar negatives per anchor "
            "or attract them as extra positives."
        },
    )
    fncl_top_k: int = field(default=1, metadata={"help": "FNCL: negatives flagged per anchor."})
    debiased_tau_plus: float = field(
        default=0.0,
        metadata={"help": "Debiased contrastive loss (Chuang et al. 2020) class prior tau+; 0 = off."},
    )
    hard_negative_beta: float = field(
        default=0.0,
        metadata={"help": "Hard-negative importance weighting beta (Robinson et al. 2021); 0 = off."},
    )
    mochi_n: int = field(
        default=0, metadata={"help": "MoCHi (Kalantidis et al. 2020): mix the top-N queue negatives."}
    )
    mochi_s: int = field(default=0, metadata={"help": "MoCHi: synthetic negatives mixed from two negatives."})
    mochi_s_prime: int = field(
        default=0, metadata={"help": "MoCHi: synthetic negatives mixed from the query and a negative."}
    )
    decoupled: bool = field(
        default=False, metadata={"help": "DCL (Yeh et al. 2022): remove the positive from the denominator."}
    )
    supcon_label_column: str | None = field(
        default=None,
        metadata={
            "help": "SupCon (Khosla et al. 2020): label column; every same-label example (batch, gathered, "
            "queue) is a positive."
        },
    )
    loss_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "Compute the loss in chunks of this many rows (memory linear in the batch; same result)."
        },
    )

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
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise ValueError(f"loss_chunk_size must be >= 1, got {self.loss_chunk_size}")
        if self.debiased_tau_plus > 0:
            if self.decoupled:
                raise ValueError(
                    "--debiased_tau_plus and --decoupled exclude each other: the debiased estimator "
                    "subtracts tau+ e^{positive} inside a denominator that DCL removes the positive from"
                )
            if self.supcon or self.fncl == "attract":
                raise ValueError(
                    "--debiased_tau_plus corrects for unknown same-class negatives with one positive "
                    "per anchor; with labels (SupCon) or --fncl attract use no debiasing"
                )
        if self.supcon and self.false_negative_masking:
            raise ValueError(
                "with --supcon_label_column every duplicate shares its label and is already a "
                "positive; drop --false_negative_masking (the queue stores labels, not ids)"
            )

    @property
    def supcon(self) -> bool:
        return self.supcon_label_column is not None

    @property
    def mochi(self) -> bool:
        return self.mochi_n > 0

    @property
    def active(self) -> bool:
        """True when any option differs from plain InfoNCE (the objective then uses the general loss)."""
        return self != NegativeOptions(duplicate_id_column=self.duplicate_id_column)

    @property
    def queue_stores(self) -> Literal["labels", "ids"] | None:
        """What a queue must store next to its keys: SupCon labels, duplicate ids, or nothing."""
        if self.supcon:
            return "labels"
        return "ids" if self.false_negative_masking else None

    def check(self, owner: str, *, has_queue: bool, similarity: Similarity = "cosine") -> None:
        """Objective-dependent checks: MoCHi needs a queue; debiasing and MoCHi need cosine similarity."""
        if self.mochi and not has_queue:
            raise ValueError(
                f"MoCHi mixes queued negatives: {owner} needs a queue (queue_size > 0) for --mochi_n"
            )
        if similarity != "cosine" and (self.mochi or self.debiased_tau_plus > 0):
            raise ValueError(f"{owner}: MoCHi and the debiased loss need similarity='cosine'")

    def example_ids(self, batch: Mapping[str, Any], rows: int, device: torch.device) -> Tensor | None:
        """``batch['ids']`` (duplicate masking) as int64 ``[rows]``, or ``None`` when masking is off."""
        return (
            _batch_column(batch, "ids", rows, device, "--false_negative_masking")
            if self.false_negative_masking
            else None
        )

    def example_labels(self, batch: Mapping[str, Any], rows: int, device: torch.device) -> Tensor | None:
        """``batch['labels']`` (SupCon) as int64 ``[rows]``, or ``None`` when SupCon is off."""
        return _batch_column(batch, "labels", rows, device, "--supcon_label_column") if self.supcon else None

    def queue_values(self, batch: Mapping[str, Any], rows: int, device: torch.device) -> Tensor | None:
        """The per-example values a queue stores with its keys (see :attr:`queue_stores`)."""
        return (
            self.example_labels(batch, rows, device) if self.supcon else self.example_ids(batch, rows, device)
        )

    def contrast(
        self,
        query: Tensor,
        candidates: Tensor,
        roles: ColumnRoles,
        *,
        temperature: float | Tensor,
        similarity: Similarity = "cosine",
        queue_start: int | None = None,
    ) -> LossOutput:
        """The general loss with these options; MoCHi mixes the columns ``queue_start ..`` (the queue)."""
        mochi = None
        if self.mochi and queue_start is not None and queue_start < candidates.shape[0]:
            mochi = draw_mochi(
                query.shape[0],
                self.mochi_n,
                self.mochi_s,
                self.mochi_s_prime,
                queue_start,
                device=query.device,
            )
        return contrastive_loss(
            query,
            candidates,
            roles,
            temperature=temperature,
            similarity=similarity,
            fncl=self.fncl,
            fncl_top_k=self.fncl_top_k,
            hard_negative_beta=self.hard_negative_beta,
            tau_plus=self.debiased_tau_plus,
            decoupled=self.decoupled,
            mochi=mochi,
            chunk_size=self.loss_chunk_size,
        )


def _batch_column(batch: Mapping[str, Any], key: str, rows: int, device: torch.device, flag: str) -> Tensor:
    value = batch.get(key)
    if not isinstance(value, Tensor) or value.is_floating_point() or value.shape != (rows,):
        raise ValueError(
            f"{flag} needs integer batch[{key!r}] of shape ({rows},) from the collator, got "
            f"{type(value).__name__ if not isinstance(value, Tensor) else tuple(value.shape)}"
        )
    return value.to(device).long()


def column_values(*parts: Tensor | int | None, device: torch.device) -> Tensor | None:
    """Concatenate per-column ids/labels; an ``int`` part is that many ``-1`` (no id). ``None`` if the first
    part is ``None`` (the option is off)."""
    if not parts or parts[0] is None:
        return None
    pieces = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, int):
            pieces.append(torch.full((part,), -1, dtype=torch.long, device=device))
        else:
            pieces.append(part.to(device).long())
    return torch.cat(pieces)


def gathered(values: Tensor | None, gather: bool) -> Tensor | None:
    """Per-example ids/labels of every process (no gradient), aligned with ``gather_with_grad``'s rows."""
    if values is None or not gather:
        return values
    return gather_detached(values)


def example_roles(
    positive_index: Tensor,
    ids: Tensor | None,
    classes: Tensor | None,
    all_ids: Tensor | None,
    all_classes: Tensor | None,
    *between: int,
    stored: Tensor | None = None,
    **fields: Any,
) -> ColumnRoles:
    """Roles of columns ``[all examples; between (-1 each); stored queue values]`` for rows ``ids``/``classes``.

    ``all_ids`` / ``all_classes`` are the per-example values of the candidate examples (gathered
    when the objective gathers), ``stored`` the ids or labels a queue keeps with its keys; ``fields``
    are the other :class:`ColumnRoles` fields (``paired_columns``, ``weighted_index``, ``weight``).
    """
    device = positive_index.device
    return ColumnRoles(
        positive_index=positive_index,
        query_ids=ids,
        candidate_ids=column_values(all_ids, *between, stored, device=device),
        query_labels=classes,
        candidate_labels=column_values(all_classes, *between, stored, device=device),
        **fields,
    )
