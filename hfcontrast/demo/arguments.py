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
    matryoshka_dims: str | None = field(
        default=None,
        metadata={
            "help": "Matryoshka (Kusupati et al. 2022): nested widths, e.g. 384,256,128,64,32; the loss sums "
            "over these prefixes of the embedding, and each prefix is a usable embedding."
        },
    )
    matryoshka_weights: str | None = field(
        default=None, metadata={"help": "Matryoshka: one weight per width, e.g. 1,1,1,1,1 (default: all 1)."}
    )

    def __post_init__(self) -> None:
        self.config = self.to_config()  # validated once, at parse time

    def to_config(self) -> NegativeConfig:
        """The loss settings: the columns become ``mask_duplicates`` / ``supervised``."""
        skip = ("false_negative_masking", "duplicate_id_column", "supcon_label_column", "matryoshka_dims", "matryoshka_weights")
        values = {k: v for k, v in asdict(self).items() if k not in skip}
        return NegativeConfig(
            mask_duplicates=self.false_negative_masking, supervised=self.supcon_label_column is not None,
            matryoshka_dims=tuple(int(d) for d in _numbers(self.matryoshka_dims, "--matryoshka_dims")),
            matryoshka_weights=_numbers(self.matryoshka_weights, "--matryoshka_weights") or None, **values,
        )  # fmt: skip

    def changed(self) -> dict[str, Any]:
        """The flags that differ from their defaults (for the model card)."""
        return changed_flags(self)


def record_matryoshka(model: Any, config: NegativeConfig) -> None:
    """The Matryoshka widths go into the exported model config (``matryoshka_dims``)."""
    if config.matryoshka_dims:
        model.config.matryoshka_dims = list(config.matryoshka_dims)


def changed_flags(arguments: Any) -> dict[str, Any]:
    """The fields of an argument dataclass that differ from their defaults."""
    return {f.name: getattr(arguments, f.name) for f in fields(arguments) if getattr(arguments, f.name) != f.default}


def _numbers(text: str | None, flag: str) -> tuple[float, ...]:
    """``"384,256,128"`` -> ``(384.0, 256.0, 128.0)``; ``None`` -> ``()``."""
    if not text:
        return ()
    try:
        return tuple(float(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as error:
        raise ValueError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 384,256,128") from error


def given(flag: str, argv: list[str] | None = None) -> bool:
    """True when ``--flag`` (or ``--flag=value``) is on the command line."""
    argv = sys.argv if argv is None else argv
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def epochs_replace_steps(training_args: Any, argv: list[str] | None = None) -> None:
    """An explicit ``--num_train_epochs`` (without ``--max_steps``) replaces a demo's step budget."""
    if given("--num_train_epochs", argv) and not given("--max_steps", argv):
        training_args.max_steps = -1
