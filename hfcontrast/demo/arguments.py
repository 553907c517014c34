"""Command-line arguments the recipes share: negative handling, and when the user set a flag.

Each dataclass is an ``HfArgumentParser`` group; its ``metadata["help"]`` is the ``--help`` text. The
library takes the validated result (:class:`~hfcontrast.objectives.NegativeConfig` for the objective,
column names for the collator), never these dataclasses.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ..objectives import NegativeConfig


@dataclass
class NegativeArguments:
    """``--false_negative_masking``, ``--fncl`` ... as flags of every InfoNCE-family recipe."""

    false_negative_masking: bool = field(
        default=False,
        metadata={
            "help": "Ignore candidates that are known duplicates of the query's example (same id: id column, "
            "normalised text or image id), in the batch and in the queue (which stores ids)."
        },
    )
    duplicate_id_column: str | None = field(
        default=None,
        metadata={
            "help": "Column with an id per row for --false_negative_masking (text default: ids from the "
            "normalised positive text; images: the row index)."
        },
    )
    fncl: Literal["none", "eliminate", "attract"] = field(
        default="none",
        metadata={
            "help": "FNCL (Huynh et al. 2022): eliminate the top-k most similar negatives per anchor or "
            "attract them as extra positives."
        },
    )
    fncl_top_k: int = field(default=1, metadata={"help": "FNCL: negatives flagged per anchor."})
    debiased_tau_plus: float = field(
        default=0.0, metadata={"help": "Debiased contrastive loss (Chuang et al. 2020) class prior tau+; 0 = off."}
    )
    hard_negative_beta: float = field(
        default=0.0, metadata={"help": "Hard-negative importance weighting beta (Robinson et al. 2021); 0 = off."}
    )
    mochi_n: int = field(default=0, metadata={"help": "MoCHi (Kalantidis et al. 2020): mix the top-N queue negatives."})
    mochi_s: int = field(default=0, metadata={"help": "MoCHi: synthetic negatives mixed from two negatives."})
    mochi_s_prime: int = field(default=0, metadata={"help": "MoCHi: synthetic negatives mixed from the query and a negative."})
    decoupled: bool = field(default=False, metadata={"help": "DCL (Yeh et al. 2022): remove the positive from the denominator."})
    supcon_label_column: str | None = field(
        default=None,
        metadata={
            "help": "SupCon (Khosla et al. 2020): label column; every same-label example (batch, gathered, "
            "queue) is a positive."
        },
    )
    loss_chunk_size: int | None = field(
        default=None, metadata={"help": "Compute the loss in chunks of this many rows (memory linear in the batch; same result)."}
    )

    def __post_init__(self) -> None:
        self.config = self.to_config()  # validated once, at parse time

    def to_config(self) -> NegativeConfig:
        """The loss settings: the columns become ``mask_duplicates`` / ``supervised``."""
        values = {k: v for k, v in asdict(self).items() if k not in ("false_negative_masking", "duplicate_id_column", "supcon_label_column")}
        return NegativeConfig(
            mask_duplicates=self.false_negative_masking, supervised=self.supcon_label_column is not None, **values
        )

    def changed(self) -> dict[str, Any]:
        """The flags that differ from their defaults (for the model card)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


def given(flag: str, argv: list[str] | None = None) -> bool:
    """True when ``--flag`` (or ``--flag=value``) is on the command line."""
    argv = sys.argv if argv is None else argv
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def epochs_replace_steps(training_args: Any, argv: list[str] | None = None) -> None:
    """An explicit ``--num_train_epochs`` (without ``--max_steps``) replaces a demo's step budget."""
    if given("--num_train_epochs", argv) and not given("--max_steps", argv):
        training_args.max_steps = -1
