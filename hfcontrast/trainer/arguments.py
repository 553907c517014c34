"""``ContrastiveTrainingArguments``: ``TrainingArguments`` with the defaults contrastive training needs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from .guards import NAN_POLICIES

BAD_ROW_POLICIES = ("error", "skip", "unchecked")


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
    gradcache_tokens: int | None = field(
        default=None,
        metadata={
            "help": "GradCache with text chunks planned by tokens: rows sorted by length, each chunk as many rows "
            "as keep rows x longest row <= this budget (image views still chunk by --gradcache_chunk_size)."
        },
    )
    view_forwards: str = field(
        default="length_buckets",
        metadata={
            "help": "How the text views of a step are embedded: length_buckets (rows of all views sorted by length "
            "into one forward per view, each padded to its longest row: the least padding) | merged (one forward, "
            "padded once to the longest row, like sentence-transformers) | per_view."
        },
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Pack the text rows of a step one after another (no padding; position ids and sequence "
            "boundaries). Needs an attention implementation that keeps packed sequences apart: "
            "attn_implementation flash_attention_2/3 (pip install flash-attn) or flex_attention (on a GPU)."
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={"help": "Convolutional backbones (and their momentum copies) and their pixel inputs in the "
                  "channels-last (NHWC) memory format, which cuDNN's fastest convolutions use."},
    )
    export_format: str = field(
        default="standard",
        metadata={
            "choices": ["standard", "hfcontrast"],
            "help": "standard: a folder the ecosystem loads without hfcontrast or remote code (text: "
            "sentence-transformers; images: the plain backbone; image-text: VisionTextDualEncoderModel) | "
            "hfcontrast: the custom-code format (trust_remote_code), for what the standard one cannot express."
        },
    )
    export_onnx: bool = field(
        default=False, metadata={"help": "Also write onnx/model.onnx (optimum's exporter; onnxruntime loads it)."}
    )
    quantize: str | None = field(
        default=None,
        metadata={"choices": ["int8"], "help": "int8: also write a dynamically quantised ONNX model (implies --export_onnx)."},
    )
    log_objective_stats: bool = field(
        default=True,
        metadata={"help": "Log top-1 positive accuracy, alignment, uniformity and temperature."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a previous run in a non-empty output_dir: its checkpoints and artefacts are "
            "removed first. Without it such a folder is refused (unless the run resumes from it)."
        },
    )
    nan_policy: str = field(
        default="stop",
        metadata={"help": "On a non-finite loss or gradient norm: stop (error naming the step) | skip the step."},
    )
    max_nan_skips: int = field(
        default=0, metadata={"help": "With --nan_policy skip: steps that may be skipped before the run stops."}
    )
    bad_rows: str = field(
        default="error",
        metadata={
            "help": "Rows that cannot become views (empty text, unreadable image, ...), found before step 1: "
            "error (list them all) | skip (drop them, write rejected_rows.jsonl) | unchecked (no check: for a "
            "collator of your own without a row_spec)."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes for the row check before training (default: up to 8 for large data)."},
    )

    sync_batchnorm: bool = field(
        default=False,
        metadata={
            "help": "Under DDP on GPUs: the BatchNorm layers of the model and of the objective (predictors, heads, "
            "momentum encoders) normalise with the statistics of the global batch (torch's SyncBatchNorm)."
        },
    )

    multi_dataset_policy: str = field(
        default="proportional",
        metadata={
            "help": "Several training datasets (every batch from one): proportional (each batch of each "
            "dataset once per epoch) | round_robin (in turn, until the smallest runs out) | temperature "
            "(p ∝ size^(1/T), see --multi_dataset_temperature)."
        },
    )
    multi_dataset_temperature: float = field(
        default=2.0, metadata={"help": "T of --multi_dataset_policy temperature (1: proportional; large: uniform)."}
    )

    @property
    def gradcache(self) -> bool:
        """GradCache is on (by rows, by tokens, or both)."""
        return self.gradcache_chunk_size is not None or self.gradcache_tokens is not None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataloader_pin_memory and not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for without a GPU; torch would only warn
        if self.gradcache_chunk_size is not None and self.gradcache_chunk_size < 1:
            raise ValueError(f"gradcache_chunk_size must be >= 1, got {self.gradcache_chunk_size}")
        if self.view_forwards not in ("merged", "length_buckets", "per_view"):
            raise ValueError(f"view_forwards must be merged, length_buckets or per_view, got {self.view_forwards!r}")
        if self.gradcache_tokens is not None and self.gradcache_tokens < 1:
            raise ValueError(f"gradcache_tokens must be >= 1, got {self.gradcache_tokens}")
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}")
        if self.max_nan_skips < 0:
            raise ValueError(f"max_nan_skips must be >= 0, got {self.max_nan_skips}")
        if self.nan_policy == "skip" and self.max_nan_skips == 0:
            raise ValueError("nan_policy='skip' needs max_nan_skips=N (N >= 1 steps may be skipped)")
        if self.multi_dataset_policy not in ("proportional", "round_robin", "temperature"):
            raise ValueError(f"multi_dataset_policy must be proportional, round_robin or temperature, got {self.multi_dataset_policy!r}")
        if self.multi_dataset_temperature <= 0:
            raise ValueError(f"multi_dataset_temperature must be > 0, got {self.multi_dataset_temperature}")
        if self.bad_rows not in BAD_ROW_POLICIES:
            raise ValueError(f"bad_rows must be one of {BAD_ROW_POLICIES}, got {self.bad_rows!r}")
        if self.fp16 and self.device.type == "cpu":
            raise ValueError(
                "fp16 cannot take effect on the CPU: fp16 mixed precision needs a CUDA GPU. On the CPU train "
                "in fp32 (fp16=False) or with bf16=True (CPU autocast)"
            )
