"""SimCLR (Chen et al. 2020): NT-Xent over two augmented views, negatives gathered from every process; NNCLR
(Dwibedi et al. 2021): the row is each embedding's nearest neighbour in a support queue.

    accelerate launch recipes/simclr.py      # offline demo: small ResNet, Fashion-MNIST, kNN top-1 before/after
    accelerate launch recipes/simclr.py --method nnclr --support_size 8192
    accelerate launch recipes/simclr.py --train_file train_dir/ --validation_file val_dir/ \
        --model_name_or_path microsoft/resnet-18 --image_size 224 --augmentation simclr   # imagefolder data
    accelerate launch recipes/simclr.py --config_name resnet-config-dir --config_overrides embedding_size=32

Wiring only: arguments -> ``hfcontrast.demo.vision.run_vision_recipe`` (dataset -> collator -> model ->
objective -> ContrastiveTrainer -> exported model, eval_results.json, training.png, model card).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfcontrast import ContrastiveVisionModel
from hfcontrast.demo.arguments import NegativeArguments
from hfcontrast.demo.vision import (
    VisionDemoTrainingArguments,
    parse_vision_arguments,
    run_vision_recipe,
)
from hfcontrast.objectives import NNCLR, ContrastiveObjective, SimCLR


@dataclass
class ObjectiveArguments:
    method: str = field(default="simclr", metadata={"help": "simclr | nnclr"})
    temperature: float = field(default=0.1, metadata={"help": "NT-Xent temperature tau."})
    support_size: int = field(default=8192, metadata={"help": "NNCLR: rows of the nearest-neighbour support queue."})

    def __post_init__(self) -> None:
        if self.method not in ("simclr", "nnclr"):
            raise ValueError(f"--method must be simclr or nnclr, got {self.method!r}")


def build_objective(args: ObjectiveArguments, model: ContrastiveVisionModel, options: NegativeArguments) -> ContrastiveObjective:
    if args.method == "nnclr":
        return NNCLR(args.temperature, support_size=args.support_size, encoder=model, negatives=options.config)
    return SimCLR(args.temperature, negatives=options.config)


@dataclass
class SimCLRTrainingArguments(VisionDemoTrainingArguments):
    output_dir: str | None = field(default="outputs/simclr")


def main() -> None:
    model_args, data_args, objective_args, negative_args, training_args = parse_vision_arguments(
        ObjectiveArguments, training=SimCLRTrainingArguments
    )
    run_vision_recipe(
        model_args, data_args, negative_args, training_args,
        method="NNCLR" if objective_args.method == "nnclr" else "SimCLR", paper_augmentation="simclr",
        build_objective=lambda model, rows: build_objective(objective_args, model, negative_args),
        hyperparameters=vars(objective_args),
    )  # fmt: skip


if __name__ == "__main__":
    main()
