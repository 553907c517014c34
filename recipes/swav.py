"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp cluster codes, with multi-crop.

    accelerate launch recipes/swav.py                   # offline demo: small ResNet, Fashion-MNIST, 2 x 28 px crops
    accelerate launch recipes/swav.py --local_crops 4   # multi-crop: + 4 x 12 px local crops
    accelerate launch recipes/swav.py --train_file train_dir/ --validation_file val_dir/ \
        --model_name_or_path microsoft/resnet-50 --image_size 224 --local_image_size 96 --local_crops 6 \
        --num_prototypes 3000 --queue_size 3840

The prototypes (normalised after every step, frozen for ``--freeze_prototypes_steps``) and the optional
queue belong to the objective: saved in every checkpoint, never exported. The codes are computed over the
global batch (Sinkhorn sums all-reduced across processes). Wiring only: arguments ->
``hfcontrast.cli.vision.run_vision_recipe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfcontrast.cli.flags import flag_errors
from hfcontrast.cli.vision import (
    VisionDataArguments,
    VisionDemoTrainingArguments,
    parse_vision_arguments,
    run_vision_recipe,
)
from hfcontrast.objectives import SwAV


@dataclass
class ObjectiveArguments:
    num_prototypes: int = field(
        default=30, metadata={"help": "K learnable prototypes (paper: 3000 on ImageNet; demo: 30 at 128 images a step)."}
    )
    temperature: float = field(default=0.1, metadata={"help": "Temperature of the prototype softmax."})
    epsilon: float = field(default=0.05, metadata={"help": "Sinkhorn-Knopp entropy weight."})
    sinkhorn_iterations: int = field(default=3, metadata={"help": "Sinkhorn-Knopp iterations."})
    freeze_prototypes_steps: int = field(default=100, metadata={"help": "Optimizer steps with frozen prototypes."})
    queue_size: int = field(default=0, metadata={"help": "Queued embeddings per global crop for the codes (small batches)."})


@dataclass
class SwAVDataArguments(VisionDataArguments):
    # On 28 px Fashion-MNIST, 4 local crops of 12 px cost twice the time for no kNN gain (docs/images.md)
    local_crops: int = field(default=0, metadata={"help": "Multi-crop local views besides the 2 global ones."})


@dataclass
class SwAVTrainingArguments(VisionDemoTrainingArguments):
    output_dir: str | None = field(default="outputs/swav")
    max_steps: int = field(default=1600)  # 9 min 18 s on 2 CPU cores: kNN +3.1 (runs vary by ~0.7; +2.1 at 800 steps)


def main() -> None:
    model_args, data_args, objective_args, negative_args, training_args = parse_vision_arguments(
        ObjectiveArguments, data=SwAVDataArguments, training=SwAVTrainingArguments
    )
    if negative_args.active:
        raise ValueError("SwAV contrasts cluster codes, not negatives: the negative-handling options do not apply")
    args = objective_args
    with flag_errors(ObjectiveArguments):
        objective = SwAV(
            num_prototypes=args.num_prototypes, temperature=args.temperature, epsilon=args.epsilon,
            sinkhorn_iterations=args.sinkhorn_iterations, freeze_prototypes_steps=args.freeze_prototypes_steps,
            queue_size=args.queue_size,
        )  # fmt: skip
    run_vision_recipe(
        model_args, data_args, negative_args, training_args, objective, method="SwAV", hyperparameters=vars(args)
    )


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
