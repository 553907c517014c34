"""``ContrastiveTrainingArguments``: ``TrainingArguments`` with the defaults contrastive training needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class ContrastiveTrainingArguments(TrainingArguments):
    """Adds contrastive options; ``remove_unused_columns`` defaults to False because collators read
    raw text/image columns that the model's ``forward`` does not name."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw dataset columns: hfcontrast collators build the views."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "Contrastive steps may run several forwards (one per view group) before one backward; "
            "DDP then needs find_unused_parameters=False, and every parameter must get a gradient."
        },
    )
    gradcache_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Embed the batch in chunks of this size with cached gradients (GradCache)."},
    )
    log_objective_stats: bool = field(
        default=True,
        metadata={"help": "Log top-1 positive accuracy, alignment, uniformity and temperature."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gradcache_chunk_size is not None and self.gradcache_chunk_size < 1:
            raise ValueError(f"gradcache_chunk_size must be >= 1, got {self.gradcache_chunk_size}")
