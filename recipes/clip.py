"""CLIP (Radford et al. 2021) or SigLIP (Zhai et al. 2023): image-text training of a dual encoder.

    accelerate launch recipes/clip.py           # offline demo: Fashion-MNIST + captions, tiny ViT + locked MiniLM
    accelerate launch recipes/clip.py --train_file pairs.csv --image_column path --caption_column text \\
        --vision_model_name_or_path <vit> --text_model_name_or_path <bert> --text_trainable_layers -1
    accelerate launch recipes/clip.py --model_name_or_path <CLIP or hfcontrast dual encoder> --train_dir imgs/

Wiring only: arguments -> data (``hfcontrast.demo.clip``) -> collator -> model -> objective ->
ContrastiveTrainer -> artefacts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser, VisionTextDualEncoderProcessor
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hfcontrast.collators import CollatorEpochCallback, ImageTextCollator
from hfcontrast.demo.arguments import NegativeArguments, epochs_replace_steps, record_matryoshka
from hfcontrast.demo.clip import (
    build_dual_encoder,
    image_processor_for,
    image_text_evaluators,
    image_views,
    load_image_text_data,
)
from hfcontrast.demo.images import with_index_column
from hfcontrast.demo.runs import finish_run, start_run, train_with_before_after
from hfcontrast.objectives import CLIP, ContrastiveObjective, SigLIP
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

logger = logging.getLogger("clip")


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


def main() -> None:
    arguments: Any = (ModelArguments, DataArguments, ObjectiveArguments, NegativeArguments, CLIPTrainingArguments)
    model_args, data_args, objective_args, negative_args, training_args = HfArgumentParser(
        arguments
    ).parse_args_into_dataclasses()
    epochs_replace_steps(training_args)
    if objective_args.loss not in ("clip", "siglip"):
        raise ValueError(f"--loss must be clip or siglip, got {objective_args.loss!r}")
    if objective_args.loss == "siglip" and (objective_args.queue_size or negative_args.config.active):
        raise ValueError("--queue_size and the negative options apply to --loss clip only")
    start_run(training_args)

    data = load_image_text_data(
        train_source=data_args.train_file or data_args.train_dir, dataset_name=data_args.dataset_name,
        validation_file=data_args.validation_file, image_column=data_args.image_column,
        caption_column=data_args.caption_column, label_column=data_args.label_column,
        max_train_samples=data_args.max_train_samples, max_eval_samples=data_args.max_eval_samples,
        seed=training_args.seed,
    )  # fmt: skip
    train = with_index_column(data.train, "idx")  # per-row caption/augmentation seeds: exact resume
    model, tokenizer, pretrained_vision = build_dual_encoder(
        model_name_or_path=model_args.model_name_or_path, vision_model_name_or_path=model_args.vision_model_name_or_path,
        text_model_name_or_path=model_args.text_model_name_or_path, tokenizer_name=model_args.tokenizer_name,
        vision_config_name=model_args.vision_config_name, vision_config_overrides=model_args.vision_config_overrides,
        siglip=objective_args.loss == "siglip", projection_dim=model_args.projection_dim,
        text_pooler=model_args.text_pooler, vision_pooler=model_args.vision_pooler,
        learnable_logit_scale=model_args.learnable_logit_scale,
    )  # fmt: skip
    record_matryoshka(model, negative_args.config)
    model.lock_tower("text", model_args.text_trainable_layers)
    processor = image_processor_for(model, pretrained_vision)
    train_view, eval_view = image_views(model, processor, data_args.augment)
    columns = dict(image_column=data_args.image_column, caption_column=data_args.caption_column,
                   max_length=data_args.max_seq_length)  # fmt: skip
    ids = negative_args.duplicate_id_column if negative_args.false_negative_masking else None
    collator = ImageTextCollator(train_view, tokenizer, seed=training_args.seed, index_column="idx", id_column=ids,
                                 label_column=negative_args.supcon_label_column, **columns)  # fmt: skip
    objective: ContrastiveObjective
    if objective_args.loss == "siglip":
        objective = SigLIP(model)
    else:
        objective = CLIP(model, queue_size=objective_args.queue_size, momentum=objective_args.momentum,
                         final_momentum=objective_args.final_momentum, negatives=negative_args.config)  # fmt: skip
    evaluators = image_text_evaluators(data, eval_view, tokenizer, label_column=data_args.label_column, **columns)
    metric = "eval_zeroshot_top1" if len(evaluators) == 2 else "eval_retrieval_text_to_image_R@1"
    if training_args.eval_strategy != "no" and training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = metric
    trainer = ContrastiveTrainer(
        model=model, args=training_args, objective=objective, evaluators=evaluators, train_dataset=train,
        train_source=data.name, data_collator=collator, callbacks=[CollatorEpochCallback(collator)],
        processing_class=VisionTextDualEncoderProcessor(image_processor=processor, tokenizer=tokenizer),
    )  # fmt: skip
    logger.info("train: %d rows; trainable parameters: %d", len(train),
                sum(p.numel() for p in model.parameters() if p.requires_grad))  # fmt: skip

    results = train_with_before_after(trainer)
    method = "SigLIP" if objective_args.loss == "siglip" else "CLIP"
    if trainer.is_world_process_zero():
        for key in sorted(k for k in results if k.startswith("eval_")):
            print(f"{key[5:]:>40}  before: {results.get('before_' + key[5:], float('nan')):.4f}  after: {results[key]:.4f}")
    hyperparameters = vars(objective_args) | negative_args.changed() | {
        "projection_dim": model.config.projection_dim, "text_trainable_layers": model_args.text_trainable_layers,
        "zero-shot templates": "held out (not used in training)",
    }  # fmt: skip
    base_model = model_args.model_name_or_path or model_args.text_model_name_or_path or "all-MiniLM-L6-v2"
    finish_run(
        trainer, results, family="dual", method=method, hyperparameters=hyperparameters,
        train_dataset_name=data.name, base_model=base_model, metric_key=metric, title=f"{method} on {data.name}",
        eval_datasets={"zeroshot": data.name, "retrieval": data.name},
    )  # fmt: skip


if __name__ == "__main__":
    main()
