"""SimCSE (Gao et al. 2021): unsupervised (dropout views) or supervised (NLI triplets) sentence embeddings.

    accelerate launch recipes/simcse.py                       # offline demo: MiniLM, wiki sentences, STS-B dev
    accelerate launch recipes/simcse.py --demo supervised     # offline: the packaged SNLI triplets
    accelerate launch recipes/simcse.py --train_file nli.csv  # supervised: sent0,sent1,hard_neg detected
    accelerate launch recipes/simcse.py --config_name bert-config-dir --tokenizer_name tok-dir ...  # random init
    accelerate launch recipes/simcse.py --train_file nli.csv wiki.txt   # several datasets, each batch from one
    accelerate launch recipes/simcse.py --matryoshka_dims 384,256,128,64,32 --prompts '{"anchor": "query: "}'
    accelerate launch recipes/simcse.py --teacher_model_name_or_path big-model --config_overrides num_hidden_layers=2
    accelerate launch recipes/simcse.py --lora_r 8 --lora_target_modules query,value --momentum 0.999

Wiring only: arguments -> dataset -> collator -> model -> objective -> ContrastiveTrainer -> artefacts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, HfArgumentParser
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hfcontrast import ContrastiveTextConfig, ContrastiveTextModel
from hfcontrast.collators import MultiSourceCollator, MultiSourceDataset, TextPairCollator
from hfcontrast.demo import (
    SNLI_TRIPLETS,
    STSB_DEV,
    WIKI_SENTENCES,
    data_file,
    default_text_model,
    load_text_dataset,
)
from hfcontrast.demo.arguments import NegativeArguments, epochs_replace_steps, given
from hfcontrast.demo.runs import finish_run, start_run, train_with_before_after
from hfcontrast.demo.text_options import (
    TextTechniqueArguments,
    configure_text_model,
    distillation_objective,
    export_text_model,
    load_text_encoder,
    sts_evaluator,
)
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

logger = logging.getLogger("simcse")


@dataclass
class ModelArguments:
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


@dataclass
class DataArguments:
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
        metadata={"help": "Packaged data when no --train_file: unsupervised (Wikipedia) | supervised (SNLI)."},
    )
    validation_file: str | None = field(default=None, metadata={"help": "STS file (STS-B tab format or csv)."})
    text_column: str | None = field(default=None, metadata={"help": "Unsupervised text column (default: detect)."})
    anchor_column: str | None = field(default=None, metadata={"help": "Supervised anchor column."})
    positive_column: str | None = field(default=None, metadata={"help": "Supervised positive column."})
    negative_column: str | None = field(default=None, metadata={"help": "Supervised hard-negative column."})
    max_seq_length: int = field(default=32, metadata={"help": "Truncate sentences to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows."})


@dataclass
class ObjectiveArguments:
    temperature: float = field(default=0.05, metadata={"help": "Softmax temperature tau."})
    hard_negative_weight: float = field(default=0.0, metadata={"help": "SimCSE hard-negative logit weight."})
    symmetric: bool = field(default=False, metadata={"help": "Average with the positive->anchor direction."})
    queue_size: int = field(default=0, metadata={"help": "Keep K past positives as extra negatives."})
    momentum: float | None = field(default=None, metadata={"help": "Encode positives with an EMA copy (e.g. 0.999)."})


@dataclass
class SimCSETrainingArguments(ContrastiveTrainingArguments):
    """Defaults of the offline demo: 60 steps of 64 sentences (a few minutes on 2 idle CPU cores).
    ``output_dir`` defaults to ``outputs/simcse-unsupervised`` or ``outputs/simcse-supervised``."""

    output_dir: str | None = field(default="outputs/simcse-unsupervised")
    max_steps: int = field(default=60)
    per_device_train_batch_size: int = field(default=64)
    learning_rate: float = field(default=1e-5)
    warmup_steps: float = field(default=0)
    logging_steps: float = field(default=10)
    eval_strategy: IntervalStrategy | str = field(default="steps")
    eval_steps: float | None = field(default=30)
    save_strategy: SaveStrategy | str = field(default="no")
    seed: int = field(default=42)
    dataloader_drop_last: bool = field(default=True)


def build_model(args: ModelArguments) -> tuple[ContrastiveTextModel, object]:
    head = {"pooler": args.pooler, "mlp_head": args.mlp_head or args.mlp_only_train, "mlp_only_train": args.mlp_only_train}
    if args.config_name:
        backbone = AutoConfig.from_pretrained(args.config_name)
        if args.config_overrides:
            backbone.update_from_string(args.config_overrides)
        model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, **head))
        return model, AutoTokenizer.from_pretrained(args.tokenizer_name or args.config_name)
    path = args.model_name_or_path or default_text_model()
    if args.config_overrides:
        model = ContrastiveTextModel.from_backbone_pretrained(path, backbone_overrides=args.config_overrides, **head)
    else:
        model = load_text_encoder(path, **head)
    return model, AutoTokenizer.from_pretrained(args.tokenizer_name or path)


def source_collator(tokenizer: object, columns: list[str], data_args: DataArguments, **kwargs: object) -> TextPairCollator:
    """Pairs/triplets (columns detected, or the flags) or one text column used as both views (unsupervised).
    Teacher embedding columns (``teacher_<column>``) are not views."""
    columns = [c for c in columns if not c.startswith("teacher_")]
    if data_args.anchor_column is not None or len(columns) > 1:
        return TextPairCollator.from_column_names(
            tokenizer, columns, anchor_column=data_args.anchor_column, positive_column=data_args.positive_column,
            negative_column=data_args.negative_column, **kwargs,
        )  # type: ignore[arg-type]  # fmt: skip
    text = data_args.text_column or columns[0]
    return TextPairCollator(tokenizer, text, text, **kwargs)  # type: ignore[arg-type]


def main() -> None:
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, ObjectiveArguments, NegativeArguments, TextTechniqueArguments, SimCSETrainingArguments)
    )
    model_args, data_args, objective_args, negative_args, techniques, training_args = parser.parse_args_into_dataclasses()
    epochs_replace_steps(training_args)
    if data_args.demo not in ("unsupervised", "supervised"):
        raise ValueError(f"--demo must be unsupervised or supervised, got {data_args.demo!r}")
    demo_file = data_file(WIKI_SENTENCES if data_args.demo == "unsupervised" else SNLI_TRIPLETS)
    names = data_args.train_file or data_args.dataset_name or [demo_file]
    hub = not data_args.train_file and bool(data_args.dataset_name)
    sources = {
        name: load_text_dataset(None if hub else name, name if hub else None, max_samples=data_args.max_train_samples)
        for name in names
    }
    supervised = data_args.anchor_column is not None or any(len(d.column_names) > 1 for d in sources.values())
    mode = "supervised" if supervised else "unsupervised"
    if not given("--output_dir"):  # each mode its own default folder: one never overwrites the other
        training_args.output_dir = f"outputs/simcse-{mode}"
    start_run(training_args)
    model, tokenizer = build_model(model_args)
    negatives = negative_args.config
    configure_text_model(model, tokenizer, techniques, negatives)

    # False-negative ids (an id column, else the normalised positive text) and SupCon labels.
    masking = negative_args.false_negative_masking
    columns = {
        "id_column": negative_args.duplicate_id_column if masking else None,
        "ids_from_text": masking and negative_args.duplicate_id_column is None,
        "label_column": negative_args.supcon_label_column,
        "max_length": data_args.max_seq_length,
        "prompts": techniques.view_prompts,
    }
    collators = {name: source_collator(tokenizer, d.column_names, data_args, **columns) for name, d in sources.items()}
    if techniques.distills:
        if objective_args.queue_size or objective_args.momentum is not None or negatives.active:
            raise ValueError("distillation follows the teacher's scores: drop --queue_size, --momentum and the negative flags")
        text_columns = {name: collator.columns for name, collator in collators.items()}
        objective, sources, extra = distillation_objective(
            techniques, sources, text_columns, tokenizer, objective_args.temperature
        )
        collators = {
            name: source_collator(tokenizer, d.column_names, data_args, **columns, **extra) for name, d in sources.items()
        }
    else:
        objective = SimCSE(
            objective_args.temperature, hard_negative_weight=objective_args.hard_negative_weight,
            symmetric=objective_args.symmetric, queue_size=objective_args.queue_size, encoder=model,
            momentum=objective_args.momentum, negatives=negatives,
        )  # fmt: skip
    for name, collator in collators.items():
        logger.info("mode: %s, %s: columns %s", mode, name, collator.columns)
    if len(sources) > 1:
        train, collator = MultiSourceDataset(sources), MultiSourceCollator(collators)
    else:
        (train,), (collator,) = sources.values(), collators.values()  # type: ignore[assignment]

    validation_file = data_args.validation_file or data_file(STSB_DEV)
    evaluator = sts_evaluator(validation_file, tokenizer, techniques, negatives)
    if training_args.eval_strategy != "no" and training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = "eval_sts_spearman"
    trainer = ContrastiveTrainer(
        model=model, args=training_args, objective=objective, evaluators=[evaluator], train_dataset=train,
        train_source=", ".join(names), data_collator=collator, processing_class=tokenizer,
    )  # fmt: skip

    results = train_with_before_after(trainer)
    if trainer.is_world_process_zero():
        print(f"\nSTS ({Path(validation_file).name}) Spearman before: {results['before_sts_spearman']:.4f}  "
              f"after: {results['eval_sts_spearman']:.4f}")  # fmt: skip
        for key in sorted(k for k in results if k.startswith("eval_sts_dim_") and k.endswith("spearman")):
            print(f"  {key[len('eval_'):]}: {results[key]:.4f}")
    export_text_model(trainer, techniques)
    predictions = evaluator.last_predictions
    method = f"SimCSE ({mode})" if not techniques.distills else f"distillation ({techniques.distillation})"
    finish_run(
        trainer, results, family="text", method=method,
        hyperparameters=vars(objective_args) | negative_args.changed() | techniques.changed(),
        train_dataset_name=", ".join(Path(n).name for n in names),
        base_model=model_args.model_name_or_path or model_args.config_name or "all-MiniLM-L6-v2",
        metric_key="eval_sts_spearman", title=method,
        scatter=(evaluator.scores, predictions.tolist()) if predictions is not None else None,
        export=not techniques.save_adapter_only,
    )  # fmt: skip


if __name__ == "__main__":
    main()
