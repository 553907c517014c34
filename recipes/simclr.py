"""SimCLR (Chen et al. 2020): NT-Xent over two augmented views, negatives gathered from every process; NNCLR
(Dwibedi et al. 2021): the row is each embedding's nearest neighbour in a support queue; SupCon and, for long-tailed
classes, KCL (Kang et al. 2021) and BCL (Zhu et al. 2022); SelfCon (Bae et al. 2023): a sub-network's exit against
the final output.

    accelerate launch recipes/simclr.py      # offline demo: small ResNet, Fashion-MNIST, kNN top-1 before/after
    accelerate launch recipes/simclr.py --method nnclr   # support 8192, predictor 512, 1600 steps (~10 min)
    accelerate launch recipes/simclr.py --method selfcon  # SelfCon: a middle stage's exit against the output, 1600 steps
    accelerate launch recipes/simclr.py --direct_dims 64  # DirectCLR: no projector, the loss on 64 dimensions
    accelerate launch recipes/simclr.py --hybrid_ce_schedule cosine  # SupCon + cross-entropy, labels from the demo
    accelerate launch recipes/simclr.py --mix mixup      # MixCo (--mix cutmix: i-Mix's CutMix), mixing seeded per row
    accelerate launch recipes/simclr.py --method kcl --demo_imbalance_ratio 100  # KCL (or bcl) on a long-tailed demo
    accelerate launch recipes/simclr.py --supcon_label_column label --demo_imbalance_ratio 100  # SupCon, the same
    accelerate launch recipes/simclr.py --train_file train_dir/ --validation_file val_dir/ \
        --model_name_or_path microsoft/resnet-18 --image_size 224 --augmentation simclr   # imagefolder data
    accelerate launch recipes/simclr.py --config_name resnet-config-dir --config_overrides embedding_size=32

Wiring only: arguments -> objective -> ``hfcontrast.cli.vision.run_vision_recipe`` (dataset -> collator ->
model -> ContrastiveTrainer -> exported model, eval_results.json, training.png, model card).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfcontrast.cli.flags import NegativeArguments, flag_errors, given
from hfcontrast.cli.vision import VisionDemoTrainingArguments, parse_vision_arguments, run_vision_recipe
from hfcontrast.objectives import BCL, KCL, NNCLR, ContrastiveObjective, SelfCon, SimCLR, SupervisedHybrid

#: Methods that learn slower than SimCLR's 800 steps allow, one core. NNCLR, its neighbours as positives (kNN gain
#: over random init, seed 42): +2.8 at 800 steps, +3.7 (2 cores) / +4.1 (one thread) at 1600. SelfCon, its exit's
#: loss beside the output's (kNN top-1, seeds 42 / 1): 83.0 / 83.2 at 800 steps, 83.5 / 83.9 at 1600 (6.5 minutes).
DEMO_STEPS = {"nnclr": 1600, "selfcon": 1600}
METHODS = ("simclr", "nnclr", "kcl", "bcl", "selfcon")
NAMES = {"nnclr": "NNCLR", "kcl": "KCL", "bcl": "BCL", "selfcon": "SelfCon"}


@dataclass
class ObjectiveArguments:
    method: str = field(
        default="simclr",
        metadata={"help": "simclr | nnclr | kcl | bcl | selfcon (KCL, BCL: supervised, for long-tailed classes, labels "
                  "from --label_column; SelfCon: supervised with --supcon_label_column)"},
    )
    temperature: float = field(default=0.1, metadata={"help": "NT-Xent temperature tau."})
    support_size: int = field(default=8192, metadata={"help": "NNCLR: rows of the nearest-neighbour support queue."})
    predictor_hidden_dim: int = field(
        default=512, metadata={"help": "NNCLR: hidden width of the prediction MLP (paper: 4096); 0: no predictor."}
    )
    nnclr_loss: str = field(
        default="nt_xent", metadata={"help": "NNCLR: nt_xent (2N-2 negatives, as lightly) | cross_view (the paper's eq. 2)."}
    )
    hybrid_ce_schedule: str | None = field(
        default=None,
        metadata={"help": "Supervised hybrid: SupCon plus a linear classifier's cross-entropy, the weight moving to the "
                  "classifier over the run: linear | cosine (labels: --supcon_label_column, default --label_column)."},
    )
    num_classes: int = field(default=10, metadata={"help": "--hybrid_ce_schedule, --method bcl: the classes."})
    mix_weight: float = field(default=1.0, metadata={"help": "--mix (MixCo): the mixed view's loss weight."})
    mix_temperature: float | None = field(default=None, metadata={"help": "--mix: its temperature (default: --temperature)."})
    selfcon_exit: str | None = field(
        default=None,
        metadata={"help": "SelfCon: the stage the exit reads, e.g. backbone.encoder.stages.1 (default: the middle one)."},
    )
    kcl_k: int = field(default=6, metadata={"help": "KCL: positives of the anchor's class drawn per anchor (paper: 6)."})
    bcl_centre_momentum: float = field(default=0.9, metadata={"help": "BCL: the class centres' moving-average momentum."})
    direct_dims: int | None = field(
        default=None,
        metadata={"help": "DirectCLR (Jing et al. 2022): no projector (--projection none), the loss on the first d "
                  "dimensions of the backbone's representation."},
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.nnclr_loss not in ("nt_xent", "cross_view"):
            raise ValueError(f"--nnclr_loss must be nt_xent or cross_view, got {self.nnclr_loss!r}")


def build_objective(args: ObjectiveArguments, options: NegativeArguments, seed: int = 0) -> ContrastiveObjective:
    if args.method == "nnclr":
        return NNCLR(
            args.temperature, loss=args.nnclr_loss, support_size=args.support_size,  # type: ignore[arg-type]
            predictor_hidden_dim=args.predictor_hidden_dim or None, **options.loss_options,
        )  # fmt: skip
    if args.method == "selfcon":
        return SelfCon(args.selfcon_exit, args.temperature, supervised=options.supcon_label_column is not None)
    if args.method == "kcl":
        return KCL(args.kcl_k, args.temperature, seed=seed)
    if args.method == "bcl":
        return BCL(args.num_classes, args.temperature, args.bcl_centre_momentum)
    if args.hybrid_ce_schedule is not None:
        return SupervisedHybrid(args.num_classes, args.temperature, schedule=args.hybrid_ce_schedule)
    return SimCLR(args.temperature, direct_dims=args.direct_dims, mix_weight=args.mix_weight,
                  mix_temperature=args.mix_temperature, **options.loss_options)  # fmt: skip


@dataclass
class SimCLRTrainingArguments(VisionDemoTrainingArguments):
    output_dir: str | None = field(default="outputs/simclr")


def main() -> None:
    model_args, data_args, objective_args, negative_args, training_args = parse_vision_arguments(
        ObjectiveArguments, training=SimCLRTrainingArguments
    )
    if objective_args.method in DEMO_STEPS and not given("--max_steps") and not given("--num_train_epochs"):
        training_args.max_steps = DEMO_STEPS[objective_args.method]
    if objective_args.direct_dims is not None:
        if objective_args.method != "simclr" or (given("--projection") and model_args.projection != "none"):
            raise ValueError("--direct_dims is DirectCLR: --method simclr without a projector (--projection none)")
        model_args.projection = "none"
    if objective_args.hybrid_ce_schedule is not None and (objective_args.method != "simclr" or objective_args.direct_dims):
        raise ValueError("--hybrid_ce_schedule is SupCon (--method simclr) with a classifier, not with --direct_dims")
    supervised = objective_args.hybrid_ce_schedule is not None or objective_args.method in ("kcl", "bcl")
    if supervised and negative_args.supcon_label_column is None:
        negative_args.supcon_label_column = data_args.label_column  # the collator emits the labels
    with flag_errors(ObjectiveArguments):
        objective = build_objective(objective_args, negative_args, training_args.seed)
    method = ("SupCon + cross-entropy" if objective_args.hybrid_ce_schedule else NAMES.get(objective_args.method)
              or ("DirectCLR" if objective_args.direct_dims else "SupCon" if negative_args.supcon_label_column else "SimCLR"))  # fmt: skip
    run_vision_recipe(
        model_args, data_args, negative_args, training_args, objective, method=method,
        hyperparameters=vars(objective_args),
    )  # fmt: skip


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
