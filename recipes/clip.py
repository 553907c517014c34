"""CLIP (Radford et al. 2021) or SigLIP (Zhai et al. 2023): image-text training of a dual encoder.

    accelerate launch recipes/clip.py           # offline demo: Fashion-MNIST + captions, tiny ViT + locked MiniLM
    accelerate launch recipes/clip.py --train_file pairs.csv --image_column path --caption_column text \\
        --vision_model_name_or_path <vit> --text_model_name_or_path <bert> --text_trainable_layers -1
    accelerate launch recipes/clip.py --model_name_or_path <CLIP or hfcontrast dual encoder> --train_dir imgs/

Wiring only: arguments -> dataset -> collator -> model -> objective -> ContrastiveTrainer -> artefacts.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoTokenizer,
    HfArgumentParser,
    PreTrainedConfig,
    VisionTextDualEncoderProcessor,
    ViTConfig,
    ViTImageProcessorPil,
    set_seed,
)
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hfcontrast import ContrastiveDualEncoder, ContrastiveDualEncoderConfig, captions
from hfcontrast.augment import eval_pipeline, normalization_from_processor, simclr_pipeline
from hfcontrast.collators import CollatorEpochCallback, ImageEvalCollator, ImageTextCollator
from hfcontrast.demo import default_text_model
from hfcontrast.evaluation import RetrievalEvaluator, ZeroShotEvaluator
from hfcontrast.hub import plot_training, save_eval_results, write_model_card
from hfcontrast.objectives import CLIP, SigLIP
from hfcontrast.objectives.options import NegativeOptions
from hfcontrast.trainer import (
    ContrastiveTrainer,
    ContrastiveTrainingArguments,
    train_with_before_after,
    use_all_cpu_cores_when_alone,
)
from hfcontrast.vision_data import load_image_dataset, with_index_column

logger = logging.getLogger("clip")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An hfcontrast dual encoder or a Hugging Face CLIP checkpoint."}
    )
    vision_model_name_or_path: str | None = field(default=None, metadata={"help": "Pretrained image tower."})
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained text tower (default: the packaged all-MiniLM-L6-v2)."}
    )
    vision_config_name: str | None = field(
        default=None, metadata={"help": "Random-init image tower: a model type ('vit', 'resnet') or config path "
                                        "(default: a 4-layer ViT, patch 4, on 28x28 images)."}
    )
    vision_config_overrides: str | None = field(
        default=None, metadata={"help": "e.g. 'hidden_size=64,num_hidden_layers=2,image_size=32'."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer (default: the text tower's)."})
    projection_dim: int = field(default=128, metadata={"help": "Shared embedding size (new models)."})
    text_pooler: str = field(default="mean", metadata={"help": "pooler_output | cls | mean | max | ..."})
    vision_pooler: str = field(default="cls", metadata={"help": "pooler_output | cls | mean"})
    learnable_logit_scale: bool = field(default=True, metadata={"help": "Learn the temperature."})
    text_trainable_layers: int = field(
        default=0,
        metadata={"help": "0: lock the text tower (LiT-style: only its projection trains; fast on CPU); "
                          "k: train its top k layers; -1: train it all."},
    )


@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A datasets Hub name (needs network)."})
    train_file: str | None = field(default=None, metadata={"help": ".csv/.json(l) with image paths and captions."})
    train_dir: str | None = field(default=None, metadata={"help": "An imagefolder (class sub-folders or metadata)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Evaluation data (file or folder); default: hold out 5%% of training rows."}
    )
    image_column: str = field(default="image", metadata={"help": "Image column (PIL, path or bytes)."})
    caption_column: str = field(
        default="caption", metadata={"help": "Caption column: a string or a list (one sampled per step). If "
                                             "absent, captions are built from the label column's class names."}
    )
    label_column: str = field(default="label", metadata={"help": "Class column for zero-shot evaluation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most N images."})
    max_seq_length: int = field(default=32, metadata={"help": "Truncate captions to this many tokens."})
    augment: bool = field(default=False, metadata={"help": "Random resized crops and flips of training images."})


@dataclass
class ObjectiveArguments:
    loss: str = field(default="clip", metadata={"help": "clip (softmax, symmetric) | siglip (sigmoid)."})
    queue_size: int = field(default=0, metadata={"help": "CLIP: K past image and text embeddings as negatives."})
    momentum: float | None = field(default=None, metadata={"help": "CLIP: queue keys from an EMA copy (0.995)."})
    final_momentum: float | None = field(default=None, metadata={"help": "Cosine schedule end of --momentum."})


@dataclass
class CLIPTrainingArguments(ContrastiveTrainingArguments):
    """Defaults of the offline demo (about 4 minutes on 2 idle CPU cores)."""

    output_dir: str | None = field(default="outputs/clip")
    max_steps: int = field(default=200)
    per_device_train_batch_size: int = field(default=128)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    warmup_steps: float = field(default=20)
    lr_scheduler_type: str = field(default="cosine")
    logging_steps: float = field(default=10)
    eval_strategy: IntervalStrategy | str = field(default="steps")
    eval_steps: float | None = field(default=100)
    save_strategy: SaveStrategy | str = field(default="no")
    seed: int = field(default=42)
    dataloader_drop_last: bool = field(default=True)


def load_data(args: DataArguments, seed: int) -> tuple[Any, Any, Any, list[str] | None, str]:
    """``(train, eval images, retrieval pairs, class names, data name)``; default: captioned Fashion-MNIST."""
    if not (args.dataset_name or args.train_file or args.train_dir):
        train = captions.fashion_mnist_captions("train", max_samples=args.max_train_samples)
        test = captions.fashion_mnist_captions("test", max_samples=args.max_eval_samples)
        classes = list(captions.FASHION_MNIST_CLASS_NAMES)
        return train, test, captions.unique_description_pairs(test), classes, "fashion_mnist"

    def load(source: str | None, name: str | None, limit: int | None) -> Any:
        data = load_image_dataset(source, name, image_column=args.image_column, max_samples=limit)
        feature = data.features.get(args.label_column)
        if args.caption_column not in data.column_names:
            if not hasattr(feature, "names"):
                raise ValueError(f"no caption column {args.caption_column!r} and no class-label column "
                                 f"{args.label_column!r} to build captions from (columns: {data.column_names})")
            data = captions.caption_dataset(data, feature.names, image_column=args.image_column, attributes=False,
                                   label_column=args.label_column, caption_column=args.caption_column)
        return data

    train = load(args.train_file or args.train_dir, args.dataset_name, args.max_train_samples)
    if args.validation_file:
        evaluation = load(args.validation_file, None, args.max_eval_samples)
    else:
        held_out = min(args.max_eval_samples or 1000, 1000, max(2, len(train) // 20))
        split = train.train_test_split(test_size=held_out, seed=seed)
        train, evaluation = split["train"], split["test"]
    feature = evaluation.features.get(args.label_column)
    names = list(feature.names) if hasattr(feature, "names") else None
    if "description" in evaluation.column_names:  # captions built from class names: one image per class
        pairs = captions.unique_description_pairs(evaluation, caption_column=args.caption_column)
    else:
        pairs = captions.first_caption_pairs(evaluation, args.caption_column)
    return train, evaluation, pairs, names, args.dataset_name or args.train_file or args.train_dir or ""


def build_model(args: ModelArguments, loss: str) -> tuple[ContrastiveDualEncoder, Any, str | None]:
    """``(model, tokenizer, path of a pretrained image processor or None)``."""
    siglip: dict[str, Any] = {}
    if loss == "siglip":  # the paper's initialisation: t = 10, b = -10
        siglip = {"logit_scale_init_value": math.log(10.0), "logit_bias_init_value": -10.0}
    settings: dict[str, Any] = dict(projection_dim=args.projection_dim, text_pooler=args.text_pooler,
                                    vision_pooler=args.vision_pooler,
                                    learnable_logit_scale=args.learnable_logit_scale, **siglip)
    if args.model_name_or_path:
        path = args.model_name_or_path
        if AutoConfig.from_pretrained(path).model_type == "clip":
            model = ContrastiveDualEncoder.from_clip_pretrained(path, **siglip)
        else:
            model = ContrastiveDualEncoder.from_pretrained(path)
        return model, AutoTokenizer.from_pretrained(args.tokenizer_name or path), path
    text_path = args.text_model_name_or_path or default_text_model()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name or text_path)
    if args.vision_model_name_or_path:
        vision_path = args.vision_model_name_or_path
        model = ContrastiveDualEncoder.from_vision_text_pretrained(vision_path, text_path, **settings)
        return model, tokenizer, vision_path
    vision: PreTrainedConfig
    if args.vision_config_name is None:
        vision = ViTConfig(image_size=28, patch_size=4, num_channels=3, hidden_size=128, num_hidden_layers=4,
                           num_attention_heads=4, intermediate_size=256)
    elif os.path.exists(args.vision_config_name):
        vision = AutoConfig.from_pretrained(args.vision_config_name)
    else:
        vision = AutoConfig.for_model(args.vision_config_name)
    if args.vision_config_overrides:
        vision.update_from_string(args.vision_config_overrides)
    config = ContrastiveDualEncoderConfig(vision_config=vision, text_config=AutoConfig.from_pretrained(text_path),
                                          **settings)
    model = ContrastiveDualEncoder(config)
    model.load_pretrained_tower("text", AutoModel.from_pretrained(text_path))
    return model, tokenizer, None


def lock_text_tower(model: ContrastiveDualEncoder, trainable_layers: int) -> None:
    """Freeze the text tower except its top ``trainable_layers`` layers (``-1``: leave all trainable)."""
    if trainable_layers < 0:
        return
    model.text_model.requires_grad_(False)
    stacks = [m for n, m in model.text_model.named_modules()
              if isinstance(m, nn.ModuleList) and n.endswith(("layer", "layers"))]  # BERT, CLIP, ...
    if trainable_layers > 0:
        if not stacks:
            raise ValueError(f"cannot find the layers of {type(model.text_model).__name__} to unfreeze")
        for layer in list(stacks[0])[-trainable_layers:]:
            layer.requires_grad_(True)


def image_processor(model: ContrastiveDualEncoder, pretrained: str | None) -> Any:
    """The pretrained tower's image processor, else one matching the random-init tower (resize, [-1, 1])."""
    if pretrained is not None:
        try:
            return AutoImageProcessor.from_pretrained(pretrained)
        except (OSError, ValueError):
            logger.warning("%s has no image processor: resizing to the tower's image_size, mean/std 0.5", pretrained)
    size = int(getattr(model.config.vision_config, "image_size", 224))
    return ViTImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


class WithBatchColumns:
    """Add ``ids`` / ``labels`` (integer columns) to a collator's batch for :class:`NegativeOptions`."""

    def __init__(self, collator: ImageTextCollator, ids: str | None, labels: str | None) -> None:
        self.collator, self.columns = collator, {"ids": ids, "labels": labels}

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(rows)
        for key, column in self.columns.items():
            if column is not None:
                batch[key] = torch.tensor([int(row[column]) for row in rows], dtype=torch.long)
        return batch


def main() -> None:
    arguments: Any = (ModelArguments, DataArguments, ObjectiveArguments, NegativeOptions, CLIPTrainingArguments)
    parser = HfArgumentParser(arguments)
    model_args, data_args, objective_args, options, training_args = parser.parse_args_into_dataclasses()
    if "--num_train_epochs" in sys.argv and "--max_steps" not in sys.argv:
        training_args.max_steps = -1  # the demo's step budget yields to an explicit epoch count
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING, stream=sys.stdout)
    if objective_args.loss not in ("clip", "siglip"):
        raise ValueError(f"--loss must be clip or siglip, got {objective_args.loss!r}")
    if objective_args.loss == "siglip" and (objective_args.queue_size or options.active):
        raise ValueError("--queue_size and the negative options apply to --loss clip only")
    set_seed(training_args.seed)
    use_all_cpu_cores_when_alone()

    train, evaluation, pairs, class_names, data_name = load_data(data_args, training_args.seed)
    train = with_index_column(train, "idx")  # per-row caption/augmentation seeds: exact resume
    model, tokenizer, pretrained_vision = build_model(model_args, objective_args.loss)
    lock_text_tower(model, model_args.text_trainable_layers)
    processor = image_processor(model, pretrained_vision)
    mean, std = normalization_from_processor(processor)
    size = int(getattr(model.config.vision_config, "image_size", 224))
    eval_view = eval_pipeline(size, mean, std, resize_size=size)
    train_view = simclr_pipeline(size, crop_scale=(0.5, 1.0), jitter_strength=0.4, blur_p=0.0, grayscale_p=0.0,
                                 mean=mean, std=std) if data_args.augment else eval_view
    columns = dict(image_column=data_args.image_column, caption_column=data_args.caption_column,
                   max_length=data_args.max_seq_length)
    collator = ImageTextCollator(train_view, tokenizer, seed=training_args.seed, index_column="idx", **columns)
    data_collator: Any = collator
    if options.false_negative_masking or options.supcon:
        data_collator = WithBatchColumns(collator, options.duplicate_id_column if options.false_negative_masking
                                         else None, options.supcon_label_column)
    logger.info("train: %d rows, columns %s; trainable parameters: %d", len(train), train.column_names,
                sum(p.numel() for p in model.parameters() if p.requires_grad))

    objective: CLIP | SigLIP
    if objective_args.loss == "siglip":
        objective = SigLIP(model)
    else:
        objective = CLIP(model, queue_size=objective_args.queue_size, momentum=objective_args.momentum,
                         final_momentum=objective_args.final_momentum, options=options)
    evaluators: list[Any] = []
    if class_names is not None and data_args.label_column in evaluation.column_names:
        evaluators.append(ZeroShotEvaluator(
            evaluation, collate_fn=ImageEvalCollator(data_args.image_column, data_args.label_column, eval_view),
            class_names=class_names, templates=captions.HELD_OUT_TEMPLATES, tokenizer=tokenizer, name="zeroshot"))
    pair_collator = ImageTextCollator(eval_view, tokenizer, **columns)
    # ImageTextCollator refuses 1-row batches (no negatives): never leave a last batch of one pair.
    evaluators.append(RetrievalEvaluator(pairs, collate_fn=pair_collator, name="retrieval",
                                         batch_size=256 if len(pairs) % 256 != 1 else 255))
    metric = "eval_zeroshot_top1" if len(evaluators) == 2 else "eval_retrieval_text_to_image_R@1"
    if training_args.eval_strategy != "no" and training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = metric
    trainer = ContrastiveTrainer(
        model=model, args=training_args, objective=objective, evaluators=evaluators, train_dataset=train,
        data_collator=data_collator, callbacks=[CollatorEpochCallback(collator)],
        processing_class=VisionTextDualEncoderProcessor(image_processor=processor, tokenizer=tokenizer),
    )  # fmt: skip

    results = train_with_before_after(trainer, resume_from_checkpoint=training_args.resume_from_checkpoint)
    if trainer.is_world_process_zero():
        for key in sorted(k for k in results if k.startswith("eval_")):
            print(f"{key[5:]:>40}  before: {results.get('before_' + key[5:], float('nan')):.4f}  "
                  f"after: {results[key]:.4f}")
        save_eval_results(training_args.output_dir, results)
        method = "SigLIP" if objective_args.loss == "siglip" else "CLIP"
        plot_training(os.path.join(training_args.output_dir, "training.png"), trainer.state.log_history,
                      metric_key=metric, title=f"{method} on {os.path.basename(data_name)}")
        hyperparameters = vars(objective_args) | {
            "projection_dim": model.config.projection_dim,
            "text_trainable_layers": model_args.text_trainable_layers,
            "zero-shot templates": "held out (not used in training)",
        }
        base_model = model_args.model_name_or_path or model_args.text_model_name_or_path or "all-MiniLM-L6-v2"
        write_model_card(trainer, family="dual", method=method, hyperparameters=hyperparameters, eval_results=results,
                         train_dataset_name=data_name, base_model=base_model,
                         eval_datasets={"zeroshot": data_name, "retrieval": data_name})
    # Last, on every process: exports the encoder next to the artefacts (and pushes with --push_to_hub).
    trainer.save_model(training_args.output_dir)


if __name__ == "__main__":
    main()
