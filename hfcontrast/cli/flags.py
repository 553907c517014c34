"""Command-line flags the recipes share: negative handling, Matryoshka, loss chunking; when the user set a
flag; and the translation of the library's field names into flag names in error messages.

Each dataclass is an ``HfArgumentParser`` group; its ``metadata["help"]`` is the ``--help`` text. The
library takes the validated result (:class:`~hfcontrast.objectives.NegativeConfig` and its siblings for
the objective, column names for the collator), never these dataclasses. The library's errors name its
fields (``NegativeConfig.mask_duplicates``); :func:`flag_errors` rewrites them as this layer's flags
(``--false_negative_masking``), so a command-line user reads the flag they typed.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ..objectives import ChunkingConfig, MatryoshkaConfig, NegativeConfig

#: Library field -> command-line flag, where the names differ or the field is qualified by its class.
FIELD_FLAGS = {
    "NegativeConfig.mask_duplicates": "--false_negative_masking",
    "NegativeConfig.supervised": "--supcon_label_column",
    "MatryoshkaConfig.dims": "--matryoshka_dims",
    "MatryoshkaConfig.weights": "--matryoshka_weights",
    "ChunkingConfig.rows": "--loss_chunk_size",
    "ScoredPairs.loss": "--scored_loss",
    "Guide.margin_strategy": "--guide_margin_strategy",
    "Guide.margin": "--guide_margin",
    "ScoredPairs.cosine_weight": "--angle_cosine_weight",
    "mask_duplicates": "--false_negative_masking",
    "supervised": "--supcon_label_column",
}


def flag_message(message: str, names: Mapping[str, str] = FIELD_FLAGS, flags: tuple[str, ...] = ()) -> str:
    """``message`` with each library field name replaced by its flag: the names of ``FIELD_FLAGS`` and
    ``flags`` (fields whose flag is ``--<field>``)."""
    table = dict(names) | {name: f"--{name}" for name in flags}
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)) + r")(?![\w])")
    return pattern.sub(lambda match: table[match.group(1)], message)


#: Fields of the trainer's arguments and the data loaders that library errors name; each is the flag ``--<field>``.
TRAINER_FLAGS = (
    "nan_policy", "max_nan_skips", "bad_rows", "resume_from_checkpoint", "overwrite_output_dir", "output_dir",
    "per_device_train_batch_size", "learning_rate", "multi_dataset_policy", "multi_dataset_temperature", "fp16",
    "bf16", "sync_batchnorm", "gradcache_chunk_size", "image_column", "train_file", "validation_file",
    "dataset_name", "model_name_or_path", "demo_dataset",
)  # fmt: skip


@contextlib.contextmanager
def flag_errors(*dataclasses: Any) -> Iterator[None]:
    """Re-raise an error of the block (its type kept) with flag names instead of field names: those of
    :data:`FIELD_FLAGS`, :data:`TRAINER_FLAGS` and the fields of ``dataclasses`` (flags of their own name)."""
    try:
        yield
    except Exception as error:
        if not error.args or not isinstance(error.args[0], str):
            raise
        names = TRAINER_FLAGS + tuple(f.name for group in dataclasses for f in fields(group))
        error.args = (flag_message(error.args[0], flags=names), *error.args[1:])
        raise


@dataclass
class NegativeArguments:
    """``--false_negative_masking``, ``--fncl``, ``--matryoshka_dims`` ... as flags of every InfoNCE-family recipe."""

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
        with flag_errors(NegativeArguments):  # validated once, at parse time, in flag names
            self.config = NegativeConfig(
                mask_duplicates=self.false_negative_masking, supervised=self.supcon_label_column is not None,
                fncl=self.fncl, fncl_top_k=self.fncl_top_k, debiased_tau_plus=self.debiased_tau_plus,
                hard_negative_beta=self.hard_negative_beta, mochi_n=self.mochi_n, mochi_s=self.mochi_s,
                mochi_s_prime=self.mochi_s_prime, decoupled=self.decoupled,
            )  # fmt: skip
            dims = tuple(int(d) for d in _numbers(self.matryoshka_dims, "--matryoshka_dims"))
            weights = _numbers(self.matryoshka_weights, "--matryoshka_weights") or None
            self.matryoshka = MatryoshkaConfig(dims, weights) if dims or weights else None
            self.chunking = ChunkingConfig(self.loss_chunk_size) if self.loss_chunk_size is not None else None

    @property
    def loss_options(self) -> dict[str, Any]:
        """The keywords every InfoNCE-family objective takes: ``negatives``, ``matryoshka``, ``chunking``."""
        return {"negatives": self.config, "matryoshka": self.matryoshka, "chunking": self.chunking}

    @property
    def active(self) -> bool:
        """True when any option differs from plain InfoNCE."""
        return self.config.active or self.matryoshka is not None or self.chunking is not None

    def changed(self) -> dict[str, Any]:
        """The flags that differ from their defaults (for the model card)."""
        return changed_flags(self)


def record_matryoshka(model: Any, matryoshka: MatryoshkaConfig | None) -> None:
    """The Matryoshka widths go into the exported model config (``matryoshka_dims``)."""
    if matryoshka is not None:
        model.config.matryoshka_dims = list(matryoshka.dims)


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
