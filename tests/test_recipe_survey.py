"""The survey's last image rows as recipes, offline on the digits demo (no system package): Barlow Twins and VICReg
(recipes/redundancy.py); DirectCLR, the supervised hybrid, KCL and BCL (on the long-tailed demo), SelfCon and MixCo
(recipes/simclr.py); i-Mix (recipes/moco.py); CPC (recipes/cpc.py). Each trains on two processes, evaluates and exports
the standard format with its method on the card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.launch import REPO_ROOT, accelerate_command, run

TINY = ("--demo_dataset", "digits", "--max_steps", "3", "--per_device_train_batch_size", "16", "--image_size", "16",
        "--max_train_samples", "96", "--max_eval_samples", "48", "--eval_strategy", "no", "--knn_k", "5",
        "--report_to", "none")  # fmt: skip
CASES = {
    "barlow-twins": ("redundancy.py", "--method", "barlowtwins", "--projection_dim", "32"),
    "vicreg": ("redundancy.py", "--method", "vicreg", "--projection_dim", "32"),
    "directclr": ("simclr.py", "--direct_dims", "8"),
    "supcon-ce": ("simclr.py", "--hybrid_ce_schedule", "cosine", "--projection_dim", "16"),
    "kcl": ("simclr.py", "--method", "kcl", "--kcl_k", "2", "--projection_dim", "16", "--demo_imbalance_ratio", "4"),
    "bcl": ("simclr.py", "--method", "bcl", "--projection_dim", "16", "--demo_imbalance_ratio", "4"),
    "selfcon": ("simclr.py", "--method", "selfcon", "--projection_dim", "16"),
    "mixco": ("simclr.py", "--mix", "mixup", "--projection_dim", "16"),
    "i-mix": ("moco.py", "--mix", "cutmix", "--projection_dim", "16", "--queue_size", "64"),
    "cpc": ("cpc.py", "--grid", "5", "--patch_size", "8", "--offsets", "2"),
}
#: The method's tag on the card, where it is not the case's name.
CARD_TAGS = {"mixco": "simclr", "i-mix": "moco"}


@pytest.mark.distributed  # launches processes (slow)
@pytest.mark.parametrize("tag", sorted(CASES))
def test_survey_recipes_train_offline_on_two_processes(tmp_path: Path, tag: str) -> None:
    recipe, *flags = CASES[tag]
    out = tmp_path / "out"
    run(accelerate_command(REPO_ROOT / "recipes" / recipe, *TINY, *flags, "--output_dir", str(out)))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train_steps"] == 3 and {"before_knn_top1", "eval_knn_top1"} <= set(results)
    card = (out / "README.md").read_text()
    assert CARD_TAGS.get(tag, tag) in card
    if recipe == "redundancy.py":  # the recipe's own defaults: SGD with momentum, BYOL's views from the demo's crops
        assert "| Optimizer | sgd |" in card and "| `optim_args` | momentum=0.9 |" in card
        assert "| `augmentation` | byol |" in card
        assert "| `crop_min_scale` | 0.35 |" in card
    weights = load_file(str(out / "model.safetensors"))
    if tag == "directclr":  # no projector: the export is the backbone alone
        assert not any("projection" in name for name in weights)
