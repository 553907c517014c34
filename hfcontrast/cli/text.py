"""The text recipe's command line: its model and data arguments, the training data and the model they
build, and the techniques as flags (prompts, Matryoshka evaluation and export, distillation, LoRA).

Each flag group becomes library calls: prompts go to the collator and the model config
(``ContrastiveTextConfig.prompts``), Matryoshka widths to the config and to one STS evaluator per width,
a teacher to :class:`~hfcontrast.objectives.InBatchKL` / :class:`~hfcontrast.objectives.MarginMSE`
(embeddings ahead of time through :func:`hfcontrast.distillation.add_teacher_embeddings`, or on the fly),
LoRA to :mod:`hfcontrast.lora`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transformers import AutoConfig, AutoTokenizer

from ..collators import MultiSourceCollator, MultiSourceDataset, TextPairCollator
from ..collators.text import check_prompts, pair_columns, prompt_token_ids
from ..demo import load_text_dataset, snli_retrieval
from ..distillation import add_teacher_embeddings
from ..evaluation import InformationRetrievalEvaluator, STSEvaluator
from ..hub.formats import HFCONTRAST_CONFIG
from ..hub.onnx import load_onnx_text_model
from ..lora import add_lora, merge_lora, save_adapter
from ..models import ContrastiveTextConfig, ContrastiveTextModel
from ..objectives import Guide, InBatchKL, MarginMSE, MatryoshkaConfig
from .flags import changed_flags, record_matryoshka
from .text_streams import text_stream_rows, text_streams

logger = logging.getLogger(__name__)


@dataclass
class TextModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained backbone or hfcontrast text model (default: packaged MiniLM)."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Backbone config to start from random init."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Backbone config changes, e.g. 'num_hidden_layers=2' (a pretrained model keeps those layers)."},
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer (default: the model's)."})
    pooler: str = field(default="mean", metadata={"help": "cls | cls_before_pooler | mean | first_last_avg | max"})
    mlp_head: bool = field(default=False, metadata={"help": "SimCSE's MLP head on the pooled vector."})
    mlp_only_train: bool = field(default=False, metadata={"help": "The MLP head in training only (implies --mlp_head)."})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "The backbone's attention: sdpa (default) | eager | flash_attention_2 | flex_attention "
                  "(--padding_free needs flash_attention_2/3, or flex_attention on a GPU)."},
    )


@dataclass
class TextDataArguments:
    train_file: list[str] | None = field(
        default=None,
        metadata={
            "help": ".txt (one sentence per line: unsupervised) or .csv/.json of pairs/triplets; several files "
            "train together, each with its own columns, every batch from one (--multi_dataset_policy)."
        },
    )
    dataset_name: list[str] | None = field(default=None, metadata={"help": "Datasets Hub names (need network)."})
    demo: str = field(
        default="unsupervised",
        metadata={"help": "Packaged data when no --train_file: unsupervised (Wikipedia) | supervised (SNLI) | "
                  "sts (STS-B train pairs with their 0-5 scores, CoSENT) | retrieval (SNLI premise -> entailed "
                  "hypothesis, evaluated on held-out premises by nDCG@10: docs/text_techniques.md)."},
    )
    validation_file: str | None = field(default=None, metadata={"help": "STS file (STS-B tab format or csv)."})
    ir_eval_data: str | None = field(
        default=None,
        metadata={"help": "A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): nDCG@k, MRR@k, MAP@k, "
                  "Recall@k during training (eval_ir_*)."},
    )
    ir_eval_split: str = field(default="test", metadata={"help": "The qrels split of --ir_eval_data."})
    text_column: str | None = field(default=None, metadata={"help": "Unsupervised text column (default: detect)."})
    anchor_column: str | None = field(default=None, metadata={"help": "Supervised anchor column."})
    positive_column: str | None = field(default=None, metadata={"help": "Supervised positive column."})
    negative_column: str | None = field(default=None, metadata={"help": "Supervised hard-negative column."})
    max_seq_length: int = field(default=32, metadata={"help": "Truncate sentences to this many tokens."})
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "Pad each view to a multiple of this many tokens (fewer shapes for --torch_compile; 8 "
                  "for tensor cores)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Read --train_file / --dataset_name as a stream, never all in memory: each process reads its "
                  "share, rows are checked as they arrive, a killed run resumes at its row; needs --max_steps "
                  "(docs/data.md)."},
    )
    shuffle_buffer_size: int = field(
        default=10_000, metadata={"help": "With --streaming: rows held to shuffle the stream (0: the files' order)."}
    )
    score_column: str | None = field(
        default=None,
        metadata={"help": "Train on scored pairs (CoSENT / AnglE / cosine MSE, --scored_loss) with this gold-similarity "
                  "column (--demo sts: score)."},
    )
    score_scale: float | None = field(
        default=None,
        metadata={"help": "The largest score: scores are divided by it into [0, 1] (default 1; --demo sts: 5)."},
    )

    def __post_init__(self) -> None:
        if self.demo not in ("unsupervised", "supervised", "sts", "retrieval"):
            raise ValueError(f"--demo must be unsupervised, supervised, sts or retrieval, got {self.demo!r}")
        if self.demo == "sts" and not self.train_file and not self.dataset_name and self.score_column is None:
            self.score_column = "score"
        if self.score_scale is None:
            self.score_scale = 5.0 if self.demo == "sts" and self.score_column == "score" else 1.0


def text_sources(args: TextDataArguments, demo_file: str) -> dict[str, Any]:
    """Every training dataset by its name (``--train_file`` or ``--dataset_name``; else ``demo_file``, or the
    training premises of ``--demo retrieval``); with ``--streaming``, each as a ``datasets`` stream."""
    if args.streaming:
        return text_streams(args)
    if args.demo == "retrieval" and not args.train_file and not args.dataset_name:
        train = snli_retrieval().train
        return {"snli-retrieval": train.select(range(min(args.max_train_samples or len(train), len(train))))}
    names = args.train_file or args.dataset_name or [demo_file]
    hub = not args.train_file and bool(args.dataset_name)
    return {
        name: load_text_dataset(None if hub else name, name if hub else None, max_samples=args.max_train_samples)
        for name in names
    }


def view_columns(names: list[str], args: TextDataArguments) -> tuple[str, ...]:
    """A dataset's text columns in view order: ``(anchor, positive, *negatives)``, or ``(text, text)`` for one
    text column (unsupervised). Teacher columns (``teacher_<column>``) are not views."""
    names = [c for c in names if not c.startswith(("teacher_", "guide_")) and c != args.score_column]
    if args.anchor_column is not None or len(names) > 1:
        anchor, positive, negatives = pair_columns(names, args.anchor_column, args.positive_column, args.negative_column)
        return (anchor, positive, *negatives)
    text = args.text_column or names[0]
    return text, text


def text_training_data(
    sources: dict[str, Any],
    tokenizer: Any,
    args: TextDataArguments,
    mix: str | None = None,
    temperature: float = 1.0,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """``(dataset, collator)``: one source's, or several in a :class:`MultiSourceDataset` (each batch from one);
    streamed: :func:`~hfcontrast.cli.text_streams.text_stream_rows` (``mix``: the ``--multi_dataset_policy`` given
    on the command line; ``temperature``: ``--multi_dataset_temperature``)."""
    collators = {}
    for name, data in sources.items():
        anchor, positive, *negatives = view_columns(data.column_names, args)
        collators[name] = TextPairCollator(tokenizer, anchor, positive, negatives, max_length=args.max_seq_length,
                                           pad_to_multiple_of=args.pad_to_multiple_of, **kwargs)  # fmt: skip
        logger.info("%s: columns %s", name, collators[name].columns)
    if args.streaming:
        return text_stream_rows(sources, collators, args, mix, temperature)
    if len(sources) > 1:
        return MultiSourceDataset(sources), MultiSourceCollator(collators)
    (train,), (collator,) = sources.values(), collators.values()
    return train, collator


def build_text_model(args: TextModelArguments, default_path: str) -> tuple[ContrastiveTextModel, Any]:
    """``(model, tokenizer)``: a random backbone from ``--config_name``, or a pretrained one (``default_path``
    when none is named), cut by ``--config_overrides``."""
    head: dict[str, Any] = {
        "pooler": args.pooler, "mlp_head": args.mlp_head or args.mlp_only_train, "mlp_only_train": args.mlp_only_train,
    }  # fmt: skip
    if args.config_name:
        backbone = AutoConfig.from_pretrained(args.config_name)
        if args.config_overrides:
            backbone.update_from_string(args.config_overrides)
        model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, **head))
        path = args.config_name
    elif args.config_overrides:
        path = args.model_name_or_path or default_path
        model = ContrastiveTextModel.from_backbone_pretrained(path, backbone_overrides=args.config_overrides, **head)
    else:
        path = args.model_name_or_path or default_path
        model = load_text_encoder(path, **head)
    if args.attn_implementation:
        model.backbone.set_attn_implementation(args.attn_implementation)
    return model, AutoTokenizer.from_pretrained(args.tokenizer_name or path)


@dataclass
class TextTechniqueArguments:
    """``--prompts``, ``--truncate_dim``, ``--teacher_model_name_or_path`` ... of the text recipe."""

    prompts: str | None = field(
        default=None,
        metadata={"help": 'Instructions per view (E5/BGE), JSON: \'{"anchor": "query: ", "positive": "passage: "}\'.'},
    )
    pool_prompt_tokens: bool = field(
        default=True, metadata={"help": "Whether prompt tokens count in mean/max pooling (false: pool the text only)."}
    )
    truncate_dim: int | None = field(
        default=None, metadata={"help": "Export embeddings cut to this width (a Matryoshka prefix)."}
    )
    eval_dims: str | None = field(
        default=None, metadata={"help": "Also evaluate STS at these widths, e.g. 64,32 (default: the Matryoshka widths)."}
    )
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Distill from this embedding model (hfcontrast text model or a backbone)."}
    )
    distillation: str = field(
        default="kl", metadata={"help": "kl (in-batch KL of the similarity matrices) | margin_mse (needs negatives)."}
    )
    teacher_temperature: float = field(default=0.05, metadata={"help": "Teacher softmax temperature (kl)."})
    teacher_on_the_fly: bool = field(
        default=False,
        metadata={"help": "Run the teacher at every step (same tokenizer) instead of once ahead of time (cached)."},
    )
    teacher_margin_column: str | None = field(
        default=None, metadata={"help": "margin_mse from this teacher-score column (no teacher model needed)."}
    )
    teacher_cache_dir: str = field(
        default="outputs/teacher-cache",
        metadata={"help": "Where teacher (and guide) embeddings computed ahead of time are kept."},
    )
    guide_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "GISTEmbed (Solatorio 2024): this frozen model's similarities mask in-batch and queued "
                  "negatives it scores above the anchor's positive."},
    )
    guide_margin: float = field(default=0.0, metadata={"help": "GISTEmbed margin (0: the paper's rule)."})
    guide_margin_strategy: str = field(
        default="absolute", metadata={"help": "absolute (g_ij > g_ip - margin) | relative (g_ij > g_ip (1 - margin))."}
    )
    guide_on_the_fly: bool = field(
        default=False, metadata={"help": "Run the guide at every step (same tokenizer) instead of once ahead of time."}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (Hu et al. 2021) on the backbone; 0 = full fine-tuning."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str | None = field(
        default=None, metadata={"help": "Comma-separated linear layers to adapt, e.g. query,value (default: peft's)."}
    )
    save_adapter_only: bool = field(
        default=False, metadata={"help": "Export the LoRA adapter alone (peft format) instead of the merged model."}
    )

    def __post_init__(self) -> None:
        try:
            self.view_prompts = check_prompts(json.loads(self.prompts) if self.prompts else None)
        except json.JSONDecodeError as error:
            raise ValueError(f"--prompts {self.prompts!r}: not JSON ({error})") from error
        if self.distillation not in ("kl", "margin_mse"):
            raise ValueError(f"--distillation must be kl or margin_mse, got {self.distillation!r}")
        if self.save_adapter_only and not self.lora_r:
            raise ValueError("--save_adapter_only needs --lora_r > 0")

    def changed(self) -> dict[str, Any]:
        """The flags that differ from their defaults (for the model card)."""
        return changed_flags(self)

    @property
    def distills(self) -> bool:
        return self.teacher_model_name_or_path is not None or self.teacher_margin_column is not None


def load_text_encoder(path: str, **head: Any) -> ContrastiveTextModel:
    """An hfcontrast text checkpoint as it is (its custom format, or the standard sentence-transformers folder it
    exported: pooling, head and prompts come back), or a backbone (BERT, MiniLM ...) with a fresh ``head``."""
    ours = os.path.isfile(os.path.join(path, HFCONTRAST_CONFIG))
    if ours or isinstance(AutoConfig.from_pretrained(path), ContrastiveTextConfig):
        return ContrastiveTextModel.from_pretrained(path)
    return ContrastiveTextModel.from_backbone_pretrained(path, **head)


def quantized_sts(evaluator: STSEvaluator, results: dict[str, float]) -> Callable[[str], dict[str, float]]:
    """``finish_run``'s ``evaluate_export``: STS of the exported int8 ONNX model (onnxruntime) and its drop from the
    trained model's ``eval_sts_spearman``."""

    def evaluate(folder: str) -> dict[str, float]:
        score = float(evaluator(load_onnx_text_model(folder))[f"{evaluator.name}_spearman"])
        logger.info("STS Spearman of the int8 ONNX model: %.4f (drop %.4f)", score, results["eval_sts_spearman"] - score)
        return {"eval_sts_spearman_int8_onnx": score, "eval_sts_spearman_int8_drop": results["eval_sts_spearman"] - score}

    return evaluate


def configure_text_model(
    model: ContrastiveTextModel, tokenizer: Any, args: TextTechniqueArguments, matryoshka: MatryoshkaConfig | None
) -> None:
    """Prompts and Matryoshka widths into the config (they are exported with it); LoRA adapters."""
    if args.view_prompts:
        model.config.prompts = args.view_prompts
        model.config.prompt_token_ids = prompt_token_ids(tokenizer, args.view_prompts)
        model.config.pool_prompt_tokens = args.pool_prompt_tokens
    if matryoshka is not None:
        if model.config.mlp_only_train:
            raise ValueError("--matryoshka_dims trains the head's output; with --mlp_only_train the export has no head")
        record_matryoshka(model, matryoshka)
    if args.lora_r:
        add_lora(model, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                 target_modules=args.lora_target_modules)  # fmt: skip


def evaluation_length(model: ContrastiveTextModel, wanted: int = 128) -> int:
    """The evaluators' token limit: ``wanted``, or less where the backbone has fewer positions."""
    return min(wanted, int(getattr(model.config.backbone_config, "max_position_embeddings", wanted) or wanted))


def ir_evaluator(args: TextDataArguments, tokenizer: Any, techniques: TextTechniqueArguments, max_length: int = 128) -> Any:
    """The retrieval evaluator (``eval_ir_*``) of ``--ir_eval_data``, else of ``--demo retrieval``'s held-out
    premises; ``None`` for neither. Queries and documents get the anchor's and the positive's prompts."""
    query_prompt = techniques.view_prompts.get("anchor", "")
    document_prompt = techniques.view_prompts.get("positive", "")
    if args.ir_eval_data is not None:
        return InformationRetrievalEvaluator.from_beir(args.ir_eval_data, tokenizer, split=args.ir_eval_split,
                                                       query_prompt=query_prompt, document_prompt=document_prompt,
                                                       max_length=max_length)  # fmt: skip
    if args.demo == "retrieval":
        task = snli_retrieval()
        return InformationRetrievalEvaluator(task.corpus, task.queries, task.relevant, tokenizer, query_prompt=query_prompt,
                                             document_prompt=document_prompt, max_length=max_length)  # fmt: skip
    return None


def sts_evaluator(path: str, tokenizer: Any, args: TextTechniqueArguments, matryoshka: MatryoshkaConfig | None) -> STSEvaluator:
    """STS on ``path`` (with the anchor's prompt), also at each Matryoshka width (or ``--eval_dims``):
    ``sts_dim_<d>``, from the same embeddings."""
    nested = list(matryoshka.dims[1:]) if matryoshka is not None else []
    dims = [int(d) for d in args.eval_dims.split(",")] if args.eval_dims else nested
    return STSEvaluator.from_file(path, tokenizer, name="sts", max_length=128, prompt=args.view_prompts.get("anchor", ""), dims=dims)


def frozen_model_views(
    path: str, prefix: str, sources: dict[str, Any], columns: dict[str, tuple[str, ...]], tokenizer: Any,
    *, on_the_fly: bool, cache_dir: str,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(model, training datasets, collator keywords)`` for a frozen model (a teacher, a guide) at ``path``: on
    the fly, the objective runs the model (it reads the student's tokens, so the tokenizers must agree); else
    each dataset's text ``columns`` are embedded once, cached in ``cache_dir``, as ``<prefix>_<column>`` columns."""
    model, model_tokenizer = load_text_encoder(path, pooler="mean"), AutoTokenizer.from_pretrained(path)
    if on_the_fly:
        if model_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"--{prefix}_on_the_fly runs the {prefix} on the student's tokens: the tokenizers differ")
        return model, sources, {}
    name = os.path.abspath(path) if os.path.exists(path) else path
    sources = {
        source: add_teacher_embeddings(
            train, model, model_tokenizer, columns[source], teacher_name=name, cache_dir=cache_dir, prefix=prefix
        )
        for source, train in sources.items()
    }
    return model, sources, {f"{prefix}_embeddings": True}


def distillation_objective(
    args: TextTechniqueArguments,
    sources: dict[str, Any],
    columns: dict[str, tuple[str, ...]],
    tokenizer: Any,
    temperature: float,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(objective, training datasets, collator keywords)`` for ``--distillation``: the teacher is loaded
    once; each dataset's text ``columns`` get teacher embeddings computed once and cached (or the teacher
    runs on the fly)."""
    if args.teacher_margin_column is not None:
        return MarginMSE(), sources, {"teacher_margin_column": args.teacher_margin_column}
    assert args.teacher_model_name_or_path is not None
    teacher, sources, kwargs = frozen_model_views(
        args.teacher_model_name_or_path, "teacher", sources, columns, tokenizer,
        on_the_fly=args.teacher_on_the_fly, cache_dir=args.teacher_cache_dir,
    )  # fmt: skip
    extra = {"teacher": teacher} if args.teacher_on_the_fly else {}
    if args.distillation == "margin_mse":
        return MarginMSE(**extra), sources, kwargs
    return InBatchKL(temperature, teacher_temperature=args.teacher_temperature, **extra), sources, kwargs


def text_guide(
    args: TextTechniqueArguments, sources: dict[str, Any], columns: dict[str, tuple[str, ...]], tokenizer: Any
) -> tuple[Guide | None, dict[str, Any], dict[str, Any]]:
    """``(guide, training datasets, collator keywords)`` for ``--guide_model_name_or_path`` (GISTEmbed): its
    embeddings of every text computed once and cached (or the guide run on the fly); ``None`` without it."""
    if args.guide_model_name_or_path is None:
        return None, sources, {}
    model, sources, kwargs = frozen_model_views(
        args.guide_model_name_or_path, "guide", sources, columns, tokenizer,
        on_the_fly=args.guide_on_the_fly, cache_dir=args.teacher_cache_dir,
    )  # fmt: skip
    guide = Guide(
        model if args.guide_on_the_fly else None, margin=args.guide_margin,
        margin_strategy=args.guide_margin_strategy, dim=model.train_embedding_dim,  # type: ignore[arg-type]
    )  # fmt: skip
    return guide, sources, kwargs


def export_text_model(trainer: Any, args: TextTechniqueArguments) -> None:
    """Before the export: ``truncate_dim`` into the config; LoRA merged, or the adapter saved alone."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if args.truncate_dim:
        model.config.truncate_dim = args.truncate_dim
    if args.save_adapter_only and trainer.is_world_process_zero():
        files = save_adapter(model, str(trainer.args.output_dir))
        logger.info("saved the LoRA adapter alone: %s", files)
    if args.lora_r:
        merge_lora(model)
