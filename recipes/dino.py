"""DINO (Caron et al. 2021): self-distillation with a momentum teacher, centring and sharpening, multi-crop.

    accelerate launch recipes/dino.py      # offline demo: small ViT (4 px patches), Fashion-MNIST, 2 x 28 + 4 x 12 px crops
    accelerate launch recipes/dino.py --demo_backbone resnet --pooler auto      # a ResNet works too
    accelerate launch recipes/dino.py --train_file train_dir/ --validation_file val_dir/ \
        --config_name vit-small-config/ --image_size 224 --local_image_size 96 --out_dim 65536

The student is the trained encoder plus a DINO head; the teacher (an EMA of both), the centre and the
teacher-temperature schedule belong to the objective: saved in every checkpoint, never exported. The
teacher sees the global crops only. Wiring only: arguments -> ``hfcontrast.cli.vision.run_vision_recipe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfcontrast.cli.flags import flag_errors
from hfcontrast.cli.vision import (
    VisionDataArguments,
    VisionDemoTrainingArguments,
    VisionModelArguments,
    parse_vision_arguments,
    run_vision_recipe,
)
from hfcontrast.objectives import DINO


@dataclass
class ObjectiveArguments:
    out_dim: int = field(default=1024, metadata={"help": "DINO head output width K (paper: 65536)."})
    head_hidden_dim: int = field(default=512, metadata={"help": "DINO head MLP width (paper: 2048)."})
    bottleneck_dim: int = field(default=128, metadata={"help": "DINO head bottleneck (paper: 256)."})
    student_temperature: float = field(default=0.1, metadata={"help": "tau_s."})
    teacher_temperature: float = field(default=0.04, metadata={"help": "tau_t after warm-up (paper: 0.04-0.07)."})
    warmup_teacher_temperature: float = field(default=0.04, metadata={"help": "tau_t at step 0."})
    warmup_teacher_temperature_steps: int = field(default=0, metadata={"help": "Steps of the linear tau_t warm-up."})
    center_momentum: float = field(default=0.9, metadata={"help": "EMA momentum of the centre."})
    momentum: float = field(default=0.99, metadata={"help": "Teacher EMA momentum at step 0 (paper: 0.996)."})
    final_momentum: float = field(default=1.0, metadata={"help": "Teacher momentum at the end (cosine schedule)."})


@dataclass
class DINOModelArguments(VisionModelArguments):
    demo_backbone: str = field(default="vit", metadata={"help": "Random-init default: vit (small, patch 4) | resnet."})
    pooler: str = field(default="cls", metadata={"help": "cls (ViT's class token) | auto | mean."})
    projection: str = field(default="none", metadata={"help": "The DINO head is the objective's: none."})


@dataclass
class DINODataArguments(VisionDataArguments):
    local_crops: int = field(default=4, metadata={"help": "Multi-crop local views besides the 2 global ones."})


@dataclass
class DINOTrainingArguments(VisionDemoTrainingArguments):
    output_dir: str | None = field(default="outputs/dino")
    max_steps: int = field(default=600)  # about 10 minutes on 2 CPU cores
    weight_decay: float = field(default=0.04)
    max_grad_norm: float = field(default=3.0)


def main() -> None:
    model_args, data_args, objective_args, negative_args, training_args = parse_vision_arguments(
        ObjectiveArguments, model=DINOModelArguments, data=DINODataArguments, training=DINOTrainingArguments
    )
    if negative_args.active:
        raise ValueError("DINO distils a teacher, it has no negatives: the negative-handling options do not apply")
    if model_args.demo_backbone == "resnet" and model_args.pooler == "cls":
        model_args.pooler = "auto"  # a ResNet has no class token: global average pool
    args = objective_args
    with flag_errors(ObjectiveArguments):
        objective = DINO(
            out_dim=args.out_dim, hidden_dim=args.head_hidden_dim, bottleneck_dim=args.bottleneck_dim,
            student_temperature=args.student_temperature, teacher_temperature=args.teacher_temperature,
            warmup_teacher_temperature=args.warmup_teacher_temperature,
            warmup_steps=args.warmup_teacher_temperature_steps, center_momentum=args.center_momentum,
            momentum=args.momentum, final_momentum=args.final_momentum,
        )  # fmt: skip
    run_vision_recipe(
        model_args, data_args, negative_args, training_args, objective, method="DINO", hyperparameters=vars(args)
    )


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
