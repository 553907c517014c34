"""CPC (van den Oord et al. 2018; on images, Hénaff et al. 2020, CPC v2): each image cut into a grid of overlapping
patches, one encoder for every patch, a GRU reading each column of the grid from the top down, and per-offset
linear predictors of the patches below, scored by InfoNCE against every patch of the (global) batch. The kNN reads
an image out as CPC v2 does: the mean of its patch grid's embeddings
(``hfcontrast.evaluation.patch_grid.PatchGridReadout``; the export's card gives the grid).

    accelerate launch recipes/cpc.py                      # offline demo: small ResNet, Fashion-MNIST 6 x 6 patches of 8 px
    accelerate launch recipes/cpc.py --grid 7 --patch_size 10 --offsets 4

Wiring only: arguments -> objective -> ``hfcontrast.cli.vision.run_vision_recipe`` (the collator cuts the grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hfcontrast.cli.flags import flag_errors
from hfcontrast.cli.vision import VisionDemoTrainingArguments, parse_vision_arguments, run_vision_recipe
from hfcontrast.objectives import CPC


@dataclass
class ObjectiveArguments:
    grid: int = field(default=6, metadata={"help": "G: the G x G grid of patches per image ((side - patch) / (G - 1) px apart)."})
    patch_size: int = field(default=8, metadata={"help": "The patches' side in pixels."})
    offsets: int = field(default=3, metadata={"help": "K: predict the patches 1 to K rows below (K < G)."})
    temperature: float = field(default=1.0, metadata={"help": "Scores z . W_k c / temperature (the papers': 1)."})


@dataclass
class CPCTrainingArguments(VisionDemoTrainingArguments):
    output_dir: str | None = field(default="outputs/cpc")
    # each image is 36 patches through the encoder: 300 steps is the other recipes' 10 minutes on one core
    max_steps: int = field(default=300)


def main() -> None:
    model_args, data_args, objective_args, negative_args, training_args = parse_vision_arguments(
        ObjectiveArguments, training=CPCTrainingArguments
    )
    with flag_errors(ObjectiveArguments):
        objective = CPC(objective_args.grid, objective_args.offsets, objective_args.temperature,
                        patch_size=objective_args.patch_size)  # fmt: skip
    run_vision_recipe(model_args, data_args, negative_args, training_args, objective, method="CPC",
                      hyperparameters=vars(objective_args) | {"readout": "patch grid mean"})  # fmt: skip


if __name__ == "__main__":
    with flag_errors():  # the library's field names as this recipe's flags
        main()
