"""Redundancy reduction: Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et al. 2022). No negatives: the
two views' embeddings are decorrelated through statistics of the global batch, gathered from every process.

    accelerate launch recipes/redundancy.py                      # Barlow Twins, offline Fashion-MNIST demo
    accelerate launch recipes/redundancy.py --method vicreg
    accelerate launch recipes/redundancy.py --demo_dataset digits  # no system package needed

The demo's defaults, each measured at 800 steps of 128, seed 42, one core (kNN top-1, Barlow Twins / VICReg;
docs/images.md): a projector narrower than the papers' 8192 (``--projection_dim`` 64: 82.3 / 82.3 with AdamW at
3e-4, against 80.6 / 81.1 at 512 wide); SGD with momentum 0.9 at lr 0.05 in place of the papers' LARS (82.7 / 83.5
with the demo's light views; LARS itself 79.8 for Barlow Twins); BYOL's views as both papers take them, from
crops of 0.35 of the image or more (84.3 / 84.6; AdamW with these views 82.0 / 81.5; Barlow Twins with crops from
0.08, 82.6). Wiring only: arguments -> objective -> ``hfcontrast.cli.vision.run_vision_recipe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers.training_args import OptimizerNames

from hfcontrast.cli.flags import flag_errors, given
from hfcontrast.cli.vision import VisionDemoTrainingArguments, parse_vision_arguments, run_vision_recipe
from hfcontrast.objectives import BarlowTwins, ContrastiveObjective, VICReg

METHODS = {"barlowtwins": "Barlow Twins", "vicreg": "VICReg"}
PROJECTION_DIM = 64  # the demo's projector width (the papers': 8192)
DEMO_CROP_MIN_SCALE = 0.35  # the demo's crops (BYOL's 0.08: Barlow Twins 82.6 against 84.3, one run at seed 42)


@dataclass
class ObjectiveArguments:
    method: str = field(default="barlowtwins", metadata={"help": "barlowtwins | vicreg"})
    lambda_offdiag: float = field(default=5e-3, metadata={"help": "Barlow Twins: weight of the off-diagonal terms."})
    invariance_weight: float = field(default=25.0, metadata={"help": "VICReg: lambda, the invariance term's weight."})
    variance_weight: float = field(default=25.0, metadata={"help": "VICReg: mu, the variance term's weight."})
    covariance_weight: float = field(default=1.0, metadata={"help": "VICReg: nu, the covariance term's weight."})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {sorted(METHODS)}, got {self.method!r}")


@dataclass
class RedundancyTrainingArguments(VisionDemoTrainingArguments):
    """SGD (momentum 0.9 unless ``--optim_args`` says otherwise) in place of the papers' LARS; the other recipes: AdamW."""

    output_dir: str | None = field(default="outputs/redundancy")
    optim: OptimizerNames | str = field(default="sgd")
    learning_rate: float = field(default=0.05)


def build_objective(args: ObjectiveArguments) -> ContrastiveObjective:
    if args.method == "vicreg":
        return VICReg(args.invariance_weight, args.variance_weight, args.covariance_weight)
    return BarlowTwins(args.lambda_offdiag)


def main() -> None:
    model_args, data_args, objective_args, negative_args, training_args = parse_vision_arguments(
        ObjectiveArguments, training=RedundancyTrainingArguments
    )
    if negative_args.active:
        raise ValueError(f"--method {objective_args.method} has no negatives: the negative-handling options do not apply")
    if not given("--projection_dim"):
        model_args.projection_dim = PROJECTION_DIM
    if training_args.optim == OptimizerNames.SGD and not given("--optim_args"):
        training_args.optim_args = "momentum=0.9"
    if not given("--augmentation"):  # BYOL's views, the papers' own, on the packaged demo too (with its crop)
        data_args.augmentation = "byol"
        demo = not (data_args.train_file or data_args.dataset_name or data_args.train_shards)
        if demo and not given("--crop_min_scale"):
            data_args.crop_min_scale = DEMO_CROP_MIN_SCALE
    with flag_errors(ObjectiveArguments):
        objective = build_objective(objective_args)
    run_vision_recipe(
        model_args, data_args, negative_args, training_args, objective,
        method=METHODS[objective_args.method],
        hyperparameters=vars(objective_args) | {"optim_args": training_args.optim_args}
        | ({"crop_min_scale": crop} if (crop := data_args.crop_min_scale) else {}),
    )  # fmt: skip


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
