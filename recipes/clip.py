"""CLIP (Radford et al. 2021) or SigLIP (Zhai et al. 2023): image-text training of a dual encoder.

    accelerate launch recipes/clip.py           # offline demo: Fashion-MNIST + captions, tiny ViT + locked MiniLM
    accelerate launch recipes/clip.py --train_file pairs.csv --image_column path --caption_column text \\
        --vision_model_name_or_path <vit> --text_model_name_or_path <bert> --text_trainable_layers -1
    accelerate launch recipes/clip.py --model_name_or_path <CLIP or hfcontrast dual encoder> --train_dir imgs/

Wiring only: arguments -> data (``hfcontrast.demo.image_text``) -> model -> collator -> objective ->
ContrastiveTrainer -> artefacts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser, VisionTextDualEncoderProcessor
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hfcontrast.cli.clip import (
    DualModelArguments,
    ImageTextDataArguments,
    build_dual_encoder_from,
    image_processor_for,
    image_text_evaluators,
    image_views,
)
from hfcontrast.cli.flags import (
    NegativeArguments,
    epochs_replace_steps,
    flag_errors,
    given,
    record_matryoshka,
)
from hfcontrast.cli.image_streams import image_text_training_data
from hfcontrast.cli.runs import finish_run, start_run, train_with_before_after
from hfcontrast.collators import ImageTextCollator
from hfcontrast.objectives import CLIP, ContrastiveObjective, SigLIP
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from hfcontrast.trainer.defaults import INDEX_COLUMN

logger = logging.getLogger("clip")


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
    arguments: Any = (DualModelArguments, ImageTextDataArguments, ObjectiveArguments, NegativeArguments, CLIPTrainingArguments)
    model_args, data_args, objective_args, negative_args, training_args = HfArgumentParser(
        arguments
    ).parse_args_into_dataclasses()
    epochs_replace_steps(training_args)
    if objective_args.loss not in ("clip", "siglip"):
        raise ValueError(f"--loss must be clip or siglip, got {objective_args.loss!r}")
    if objective_args.loss == "siglip" and (objective_args.queue_size or negative_args.active):
        raise ValueError("--queue_size and the negative options apply to --loss clip only")
    if objective_args.loss == "siglip" and not given("--export_format"):
        training_args.export_format = "hfcontrast"  # SigLIP's logit bias has no place in VisionTextDualEncoderModel
    start_run(training_args)

    train, data, train_name = image_text_training_data(data_args, training_args.seed, training_args.bad_rows)
    model, tokenizer, pretrained_vision = build_dual_encoder_from(model_args, siglip=objective_args.loss == "siglip")
    record_matryoshka(model, negative_args.matryoshka)
    processor = image_processor_for(model, pretrained_vision)
    train_view, eval_view = image_views(model, processor, data_args.augment)
    columns = dict(image_column=data_args.image_column, caption_column=data_args.caption_column,
                   max_length=data_args.max_seq_length)  # fmt: skip
    ids = negative_args.duplicate_id_column if negative_args.false_negative_masking else None
    collator = ImageTextCollator(train_view, tokenizer, seed=training_args.seed, index_column=INDEX_COLUMN, id_column=ids,
                                 label_column=negative_args.supcon_label_column, **columns)  # fmt: skip
    objective: ContrastiveObjective
    with flag_errors(ObjectiveArguments):
        if objective_args.loss == "siglip":
            objective = SigLIP()
        else:
            objective = CLIP(queue_size=objective_args.queue_size, momentum=objective_args.momentum,
                             final_momentum=objective_args.final_momentum, **negative_args.loss_options)  # fmt: skip
    evaluators = image_text_evaluators(data, eval_view, tokenizer, label_column=data_args.label_column, **columns)
    metric = "eval_zeroshot_top1" if len(evaluators) == 2 else "eval_retrieval_text_to_image_R@1"
    if training_args.eval_strategy != "no" and training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = metric
    trainer = ContrastiveTrainer(
        model=model, args=training_args, objective=objective, evaluators=evaluators, train_dataset=train,
        train_source=train_name, data_collator=collator,
        processing_class=VisionTextDualEncoderProcessor(image_processor=processor, tokenizer=tokenizer),
    )  # fmt: skip
    logger.info("train: %s; trainable parameters: %d", f"{len(train)} rows" if hasattr(train, "__len__") else "a stream",
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
        trainer, results, method=method, hyperparameters=hyperparameters, train_dataset_name=train_name,
        base_model=base_model, metric_key=metric, title=f"{method} on {train_name}",
        eval_datasets={"zeroshot": data.name, "retrieval": data.name},
    )  # fmt: skip


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
