"""SimCLR (Chen et al. 2020): NT-Xent over two augmented views, negatives gathered from every process.

    accelerate launch recipes/simclr.py      # offline demo: small ResNet, Fashion-MNIST, kNN top-1 before/after
    accelerate launch recipes/simclr.py --train_file train_dir/ --validation_file val_dir/ \
        --model_name_or_path microsoft/resnet-18 --image_size 224 --augmentation simclr   # imagefolder data
    accelerate launch recipes/simclr.py --config_name resnet-config-dir --config_overrides embedding_size=32

Wiring only: arguments -> ``hfcontrast.demo.vision.run_vision_recipe`` (dataset -> collator -> model ->
objective -> ContrastiveTrainer -> exported model, eval_results.json, training.png, model card).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from hfcontrast.demo.arguments import NegativeArguments, epochs_replace_steps
from hfcontrast.demo.vision import (
    VisionDataArguments,
    VisionDemoTrainingArguments,
    VisionModelArguments,
    run_vision_recipe,
)
from hfcontrast.objectives import SimCLR


@dataclass
class ObjectiveArguments:
    temperature: float = field(default=0.1, metadata={"help": "NT-Xent temperature tau."})


@dataclass
class SimCLRTrainingArguments(VisionDemoTrainingArguments):
    output_dir: str | None = field(default="outputs/simclr")


def main() -> None:
    parser = HfArgumentParser(
        (VisionModelArguments, VisionDataArguments, ObjectiveArguments, NegativeArguments, SimCLRTrainingArguments)
    )
    model_args, data_args, objective_args, negative_args, training_args = parser.parse_args_into_dataclasses()
    epochs_replace_steps(training_args)
    run_vision_recipe(
        model_args, data_args, negative_args, training_args,
        method="SimCLR", paper_augmentation="simclr",
        build_objective=lambda model: SimCLR(objective_args.temperature, negatives=negative_args.config),
        hyperparameters=vars(objective_args),
    )  # fmt: skip


if __name__ == "__main__":
    main()
