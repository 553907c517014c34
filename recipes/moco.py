"""MoCo v2 / v3 (He et al. 2020; Chen et al. 2020b, 2021), BYOL (Grill et al. 2020), SimSiam (Chen & He 2021),
PCL / ProtoNCE (Li et al. 2021).

    accelerate launch recipes/moco.py                    # offline demo: MoCo v2, small ResNet, Fashion-MNIST
    accelerate launch recipes/moco.py --method mocov3    # or byol, simsiam, pcl
    accelerate launch recipes/moco.py --train_file train_dir/ --validation_file val_dir/ \
        --model_name_or_path microsoft/resnet-50 --image_size 224 --queue_size 65536 --momentum 0.999

The momentum (key / target) encoder, the queue, the predictor and PCL's clusters belong to the objective: they are
saved in every checkpoint and restored on resume, never exported. Wiring only: arguments ->
``hfcontrast.cli.vision.run_vision_recipe`` (dataset -> collator -> model -> ContrastiveTrainer, which
binds the objective -> exported model, eval_results.json, training.png, model card).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfcontrast.cli.flags import NegativeArguments, flag_errors
from hfcontrast.cli.vision import VisionDemoTrainingArguments, parse_vision_arguments, run_vision_recipe
from hfcontrast.objectives import BYOL, PCL, ContrastiveObjective, MoCo, SimSiam

METHODS = {"mocov2": "MoCo v2", "mocov3": "MoCo v3", "byol": "BYOL", "simsiam": "SimSiam", "pcl": "PCL"}


@dataclass
class ObjectiveArguments:
    method: str = field(default="mocov2", metadata={"help": "mocov2 | mocov3 | byol | simsiam | pcl"})
    temperature: float = field(default=0.2, metadata={"help": "MoCo softmax temperature tau."})
    queue_size: int = field(default=4096, metadata={"help": "MoCo v2: queued negative keys."})
    momentum: float = field(default=0.99, metadata={"help": "Key / target encoder EMA momentum (start)."})
    final_momentum: float | None = field(
        default=None, metadata={"help": "End of the cosine momentum schedule (default: 1 for v3/BYOL, constant for v2)."}
    )
    predictor_hidden_dim: int = field(default=512, metadata={"help": "MoCo v3 / BYOL / SimSiam predictor width."})
    num_clusters: str = field(default="100,200,400", metadata={"help": "PCL: k of each k-means clustering."})
    cluster_every_steps: int | None = field(
        default=200, metadata={"help": "PCL: re-cluster every N optimizer steps (0: at each epoch's start)."}
    )
    cluster_start_step: int = field(default=100, metadata={"help": "PCL: InfoNCE only before this step (warm-up)."})
    prototype_weight: float = field(default=1.0, metadata={"help": "PCL: weight of the prototype term."})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {sorted(METHODS)}, got {self.method!r}")


@dataclass
class MoCoTrainingArguments(VisionDemoTrainingArguments):
    output_dir: str | None = field(default="outputs/moco")


def build_objective(args: ObjectiveArguments, options: NegativeArguments) -> ContrastiveObjective:
    if args.method in ("byol", "simsiam") and options.active:
        raise ValueError(f"--method {args.method} has no negatives: the negative-handling options do not apply")
    if args.method == "pcl":
        return PCL(
            num_clusters=[int(k) for k in args.num_clusters.split(",")], prototype_weight=args.prototype_weight,
            every_n_steps=args.cluster_every_steps or None, start_step=args.cluster_start_step,
            temperature=args.temperature, queue_size=args.queue_size, momentum=args.momentum,
            final_momentum=args.final_momentum, **options.loss_options,
        )  # fmt: skip
    if args.method == "simsiam":
        return SimSiam(predictor_hidden_dim=args.predictor_hidden_dim)
    final = args.final_momentum if args.final_momentum is not None else 1.0
    if args.method == "byol":
        return BYOL(predictor_hidden_dim=args.predictor_hidden_dim, momentum=args.momentum, final_momentum=final)
    v2 = args.method == "mocov2"
    return MoCo(
        version="v2" if v2 else "v3", temperature=args.temperature, queue_size=args.queue_size if v2 else None,
        momentum=args.momentum, final_momentum=args.final_momentum if v2 else final,
        predictor_hidden_dim=args.predictor_hidden_dim, **options.loss_options,
    )  # fmt: skip


def main() -> None:
    model_args, data_args, objective_args, negative_args, training_args = parse_vision_arguments(
        ObjectiveArguments, training=MoCoTrainingArguments
    )
    with flag_errors(ObjectiveArguments):
        objective = build_objective(objective_args, negative_args)
    run_vision_recipe(
        model_args, data_args, negative_args, training_args, objective,
        method=METHODS[objective_args.method], hyperparameters=vars(objective_args),
    )  # fmt: skip


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
