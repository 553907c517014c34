"""SimCLR (Chen et al. 2020): NT-Xent over two augmented views, negatives gathered from every process.

    accelerate launch recipes/simclr.py      # offline demo: small ResNet, Fashion-MNIST, kNN top-1 before/after
    accelerate launch recipes/simclr.py --train_file train_dir/ --validation_file val_dir/ \
        --model_name_or_path microsoft/resnet-18 --image_size 224 --augmentation simclr   # imagefolder data
    accelerate launch recipes/simclr.py --config_name resnet-config-dir --config_overrides embedding_size=32

Wiring only: arguments -> dataset -> collator -> model -> objective -> ContrastiveTrainer -> artefacts.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from transformers import AutoConfig, HfArgumentParser, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel
from hfcontrast.augment import IMAGENET_MEAN, IMAGENET_STD
from hfcontrast.collators import ImageEvalCollator, MultiViewCollator
from hfcontrast.collators.seeding import CollatorEpochCallback
from hfcontrast.evaluation import KNNEvaluator
from hfcontrast.hub import plot_training, save_eval_results, write_model_card
from hfcontrast.objectives import NegativeOptions, SimCLR
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from hfcontrast.vision_data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    demo_backbone_config,
    eval_view,
    knn_subset,
    load_image_splits,
    view_pipelines,
    with_index_column,
)

logger = logging.getLogger("simclr")
INDEX_COLUMN = "row_index"


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained vision backbone or hfcontrast vision model (default: demo ResNet)."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Backbone config to start from random init."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Backbone config changes, e.g. 'embedding_size=32,hidden_act=gelu'."}
    )
    projection_dim: int = field(default=128, metadata={"help": "Output width of the projection head."})
    projection_hidden_dim: int | None = field(default=None, metadata={"help": "Hidden width (default: backbone's)."})


@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A datasets Hub name (needs network)."})
    train_file: str | None = field(
        default=None, metadata={"help": "An imagefolder directory, or a .csv/.json of image paths (+ labels)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Labelled kNN test data (same formats)."})
    demo_dataset: str = field(default="fashion_mnist", metadata={"help": "Offline default: fashion_mnist | digits."})
    image_column: str = field(default="image", metadata={"help": "Column with the images (or their paths)."})
    label_column: str = field(default="label", metadata={"help": "Class column for the kNN evaluation."})
    image_size: int = field(default=28, metadata={"help": "Side of the square training and evaluation views."})
    augmentation: str = field(
        default="auto", metadata={"help": "light | simclr | mocov2 | byol (auto: light for the demo, else simclr)."}
    )
    crop_min_scale: float | None = field(default=None, metadata={"help": "Smallest random-crop area fraction."})
    jitter_strength: float = field(default=0.5, metadata={"help": "'light': brightness/contrast jitter strength."})
    eval_crop_fraction: float | None = field(
        default=None, metadata={"help": "Centre-crop fraction of the eval view (default: 1 for the demo, else 0.875)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N test rows."})
    knn_train_samples: int | None = field(
        default=10000, metadata={"help": "Periodic kNN: memory bank of N random training rows (before/after: all)."}
    )
    knn_k: int = field(default=20, metadata={"help": "kNN neighbours."})
    knn_temperature: float = field(default=0.07, metadata={"help": "kNN vote weight exp(cos / T)."})
    linear_probe: bool = field(default=True, metadata={"help": "Also report a linear probe on frozen features."})


@dataclass
class ObjectiveArguments:
    temperature: float = field(default=0.2, metadata={"help": "NT-Xent temperature tau."})


@dataclass
class SimCLRTrainingArguments(ContrastiveTrainingArguments):
    """Defaults of the offline demo (a few minutes on 2 CPU cores)."""

    output_dir: str | None = field(default="outputs/simclr")
    max_steps: int = field(default=600)
    per_device_train_batch_size: int = field(default=256)
    learning_rate: float = field(default=2e-3)
    weight_decay: float = field(default=1e-4)
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=0.05)
    logging_steps: float = field(default=10)
    eval_strategy: IntervalStrategy | str = field(default="steps")
    eval_steps: float | None = field(default=200)
    eval_on_start: bool = field(default=True)
    save_strategy: SaveStrategy | str = field(default="no")
    seed: int = field(default=42)
    dataloader_drop_last: bool = field(default=True)


def build_model(args: ModelArguments) -> ContrastiveVisionModel:
    head: dict[str, Any] = {"projection_dim": args.projection_dim, "projection_hidden_dim": args.projection_hidden_dim}
    if args.model_name_or_path:
        if isinstance(AutoConfig.from_pretrained(args.model_name_or_path), ContrastiveVisionConfig):
            return ContrastiveVisionModel.from_pretrained(args.model_name_or_path)
        return ContrastiveVisionModel.from_backbone_pretrained(args.model_name_or_path, **head)
    backbone = AutoConfig.from_pretrained(args.config_name) if args.config_name else demo_backbone_config()
    if args.config_overrides:
        backbone.update_from_string(args.config_overrides)
    return ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=backbone, **head))


def _changed(options: NegativeOptions) -> dict[str, object]:
    """The negative-handling options that differ from their defaults (for the model card)."""
    default = NegativeOptions()
    return {k: v for k, v in vars(options).items() if v != getattr(default, k)}


def main() -> None:
    parser = HfArgumentParser(
        (ModelArguments, DataArguments, ObjectiveArguments, NegativeOptions, SimCLRTrainingArguments)
    )
    model_args, data_args, objective_args, negative_options, training_args = parser.parse_args_into_dataclasses()
    if "--num_train_epochs" in sys.argv and "--max_steps" not in sys.argv:
        training_args.max_steps = -1  # the demo's step budget yields to an explicit epoch count
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING, stream=sys.stdout)
    set_seed(training_args.seed)

    splits = load_image_splits(
        train_file=data_args.train_file, validation_file=data_args.validation_file,
        dataset_name=data_args.dataset_name, demo_dataset=data_args.demo_dataset,
        image_column=data_args.image_column, label_column=data_args.label_column,
        max_train_samples=data_args.max_train_samples, max_eval_samples=data_args.max_eval_samples,
    )  # fmt: skip
    mean, std = (FASHION_MNIST_MEAN, FASHION_MNIST_STD) if splits.demo else (IMAGENET_MEAN, IMAGENET_STD)
    size = data_args.image_size
    augmentation = data_args.augmentation if data_args.augmentation != "auto" else "light" if splits.demo else "simclr"
    pipelines = view_pipelines(
        augmentation, size, mean, std, crop_min_scale=data_args.crop_min_scale,
        jitter_strength=data_args.jitter_strength,
    )  # fmt: skip
    # Per-row seeds (seed, epoch, row index, view): the augmentations of a resumed run are the same.
    collator = MultiViewCollator(
        data_args.image_column, pipeline=pipelines, seed=training_args.seed, index_column=INDEX_COLUMN,
        id_column=(negative_options.duplicate_id_column or INDEX_COLUMN) if negative_options.false_negative_masking else None,
        label_column=negative_options.supcon_label_column,
    )  # fmt: skip
    train = with_index_column(splits.train, INDEX_COLUMN)

    crop = data_args.eval_crop_fraction or (1.0 if splits.demo else 0.875)
    eval_pipeline, image_processor = eval_view(size, mean, std, crop)
    # Periodic kNN (curve in training.png) on a memory-bank subset; before/after on the full sets.
    evaluators: list[KNNEvaluator] = []
    final: KNNEvaluator | None = None
    if splits.knn_train is not None and splits.knn_test is not None:
        collate = ImageEvalCollator(data_args.image_column, data_args.label_column, eval_pipeline)
        knn: dict[str, Any] = {"collate_fn": collate, "k": data_args.knn_k, "temperature": data_args.knn_temperature}
        bank = knn_subset(splits.knn_train, data_args.knn_train_samples, training_args.seed)
        evaluators.append(KNNEvaluator(bank, splits.knn_test, name="knn", **knn))
        final = KNNEvaluator(splits.knn_train, splits.knn_test, name="knn", linear_probe=data_args.linear_probe, **knn)
    if not evaluators:
        training_args.eval_strategy = IntervalStrategy.NO
        training_args.eval_on_start = False
    elif training_args.eval_strategy != "no" and training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = "eval_knn_top1"

    model = build_model(model_args)
    objective = SimCLR(objective_args.temperature, options=negative_options)
    trainer = ContrastiveTrainer(
        model=model,
        args=training_args,
        objective=objective,
        evaluators=evaluators,
        train_dataset=train,
        data_collator=collator,
        processing_class=image_processor,
        callbacks=[CollatorEpochCallback(collator)],
    )

    # The full evaluations run on the main process only (the other waits in the first collective).
    evaluate = final if final is not None and trainer.is_world_process_zero() else None
    before = evaluate(model) if evaluate is not None else {}
    trainer.train()
    after = evaluate(model) if evaluate is not None else {}
    results = {f"before_{k}": v for k, v in before.items()} | {f"eval_{k}": v for k, v in after.items()}
    results["train_steps"] = float(trainer.state.global_step)
    if trainer.is_world_process_zero():
        if evaluate is not None:
            print(f"\nkNN top-1 ({splits.name} test, k={data_args.knn_k}) before: {before['knn_top1']:.4f}  "
                  f"after: {after['knn_top1']:.4f}")
        save_eval_results(training_args.output_dir, results)
        plot_training(
            os.path.join(training_args.output_dir, "training.png"), trainer.state.log_history,
            metric_key="eval_knn_top1" if evaluators else None,
            title=f"SimCLR on {splits.name}" + (f" (kNN curve: {len(evaluators[0].train_dataset)}-image memory bank)" if evaluators else ""),
        )  # fmt: skip
        write_model_card(
            trainer,
            family="vision",
            method="SimCLR",
            hyperparameters=vars(objective_args) | {"augmentation": augmentation, "image_size": size}
            | _changed(negative_options),
            eval_results=results,
            train_dataset_name=data_args.dataset_name or splits.name,
            base_model=model_args.model_name_or_path or model_args.config_name,
        )
    # Last, on every process: exports the encoder next to the artefacts (and pushes with --push_to_hub).
    trainer.save_model(training_args.output_dir)


if __name__ == "__main__":
    main()
