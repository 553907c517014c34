"""Redundancy reduction: Barlow Twins (Zbontar et al. 2021) and VICReg (Bardes et al. 2022). No negatives: the
two views' embeddings are decorrelated through statistics of the global batch, gathered from every process.

    accelerate launch recipes/redundancy.py                      # Barlow Twins, offline Fashion-MNIST demo
    accelerate launch recipes/redundancy.py --method vicreg
    accelerate launch recipes/redundancy.py --demo_dataset digits  # no system package needed

The projector is the model's MLP head, narrower than the papers' (``--projection_dim``, default 64; the papers use
8192 on ImageNet), and the learning rate 3e-4: at the demo's 800 steps of 128, seed 42, one core, kNN top-1 of
80.6 / 81.1 (Barlow Twins / VICReg) with 512 dimensions at 1e-3, 81.2 / 82.0 with 128 at 3e-4, 82.3 / 82.3 with
64 or 32 at 3e-4 (docs/images.md). Wiring only: arguments -> objective -> ``hfcontrast.cli.vision.run_vision_recipe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfcontrast.cli.flags import flag_errors, given
from hfcontrast.cli.vision import VisionDemoTrainingArguments, parse_vision_arguments, run_vision_recipe
from hfcontrast.objectives import BarlowTwins, ContrastiveObjective, VICReg

METHODS = {"barlowtwins": "Barlow Twins", "vicreg": "VICReg"}
PROJECTION_DIM = 64  # the demo's projector width (the papers': 8192)


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
    output_dir: str | None = field(default="outputs/redundancy")
    learning_rate: float = field(default=3e-4)


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
    with flag_errors(ObjectiveArguments):
        objective = build_objective(objective_args)
    run_vision_recipe(
        model_args, data_args, negative_args, training_args, objective,
        method=METHODS[objective_args.method], hyperparameters=vars(objective_args),
    )  # fmt: skip


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
