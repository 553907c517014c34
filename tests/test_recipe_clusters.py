"""Smoke runs of the clustering / self-distillation / nearest-neighbour recipes on Fashion-MNIST:
``recipes/swav.py`` and ``recipes/dino.py`` (multi-crop) and ``recipes/moco.py --method pcl`` through
``accelerate launch`` with 2 processes, ``recipes/simclr.py --method nnclr`` in one process; the exported encoder
loads with ``AutoModel`` and carries no training state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.launch import REPO_ROOT, accelerate_launch, run_python
from tests.test_recipe_image import TINY, check_outputs, needs_data

RECIPES = {
    "swav": ("swav.py", "--local_crops", "2", "--local_image_size", "8", "--num_prototypes", "12"),
    "dino": ("dino.py", "--local_crops", "2", "--local_image_size", "8", "--out_dim", "32", "--head_hidden_dim", "32"),
    "pcl": ("moco.py", "--method", "pcl", "--queue_size", "40", "--num_clusters", "4,8", "--cluster_every_steps", "2",
            "--cluster_start_step", "1"),
}  # fmt: skip


@pytest.mark.distributed
@needs_data
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_two_processes(tmp_path: Path, name: str) -> None:
    script, *extra = RECIPES[name]
    out = tmp_path / "out"
    stdout = accelerate_launch(REPO_ROOT / "recipes" / script, "--output_dir", str(out), *TINY, *extra)
    check_outputs(out, stdout, width=64 if name == "dino" else 256)  # DINO's default: a ViT of width 64
    card = (out / "README.md").read_text()
    assert name in card.lower()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == ("vit" if name == "dino" else "resnet")  # the plain backbone (DINO: its class token)


@pytest.mark.distributed  # launches a process (and reads the export with AutoImageProcessor, as the others)
@needs_data
def test_nnclr_recipe(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = run_python(REPO_ROOT / "recipes" / "simclr.py", "--method", "nnclr", "--support_size", "16",
                        "--output_dir", str(out), *TINY)  # fmt: skip
    check_outputs(out, stdout)
    assert "nnclr" in (out / "README.md").read_text().lower()


@needs_data
def test_local_crops_are_refused_where_the_objective_takes_two_views(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="SwAV and DINO take local crops"):
        run_python(REPO_ROOT / "recipes" / "simclr.py", "--local_crops", "2", "--output_dir", str(tmp_path / "o"), *TINY)
