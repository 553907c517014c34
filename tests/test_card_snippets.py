"""Every code block of a generated model card runs against the folder it describes: the card is rendered with the
exported folder as its ``repo_id``, and each Python block executes as pasted, where hfcontrast is not installed
unless the block imports it (then in this environment), beside a ``cat.jpg``."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from transformers import ConvNextImageProcessorPil, VisionTextDualEncoderProcessor, ViTImageProcessorPil

from hfcontrast import ContrastiveVisionModel
from hfcontrast.hub import export, render_model_card
from tests.conftest import PIL_AUTO_IMAGE_PROCESSOR
from tests.launch import REPO_ROOT
from tests.test_export_formats import dual
from tests.tiny import fresh_tokenizer, text_model, tokenizer, vision_config

BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def build(family: str) -> tuple[Any, Any, dict[str, Any]]:
    """A tiny model of ``family``, its processor, and what its card says of it."""
    if family == "text":
        return text_model(pooler="mean", prompts={"anchor": "query: "}), tokenizer(), {"has_prompts": True}
    if family == "vision":
        return ContrastiveVisionModel(vision_config()), ConvNextImageProcessorPil(size={"shortest_edge": 32}), {}
    images = ViTImageProcessorPil(size={"height": 16, "width": 16})
    model = dual(logit_scale_init_value=math.log(10.0))
    if family == "dual-custom":
        model = dual(text_pooler="mean", vision_pooler="cls")
    return model, VisionTextDualEncoderProcessor(image_processor=images, tokenizer=fresh_tokenizer()), {}


@pytest.mark.parametrize(
    ("family", "export_format"),
    [("text", "standard"), pytest.param("vision", "standard", marks=PIL_AUTO_IMAGE_PROCESSOR),
     pytest.param("dual", "standard", marks=PIL_AUTO_IMAGE_PROCESSOR), ("text", "hfcontrast"),
     pytest.param("vision", "hfcontrast", marks=PIL_AUTO_IMAGE_PROCESSOR),
     pytest.param("dual-custom", "hfcontrast", marks=PIL_AUTO_IMAGE_PROCESSOR)],
)  # fmt: skip
def test_every_card_block_runs_against_its_folder(
    family: str, export_format: str, tmp_path: Path, isolated_python: Callable[[str, Path], Any]
) -> None:
    model, processor, details = build(family)
    folder = tmp_path / "model"
    export(model.eval(), str(folder), processor, export_format=export_format)
    card = render_model_card(
        family=family.split("-")[0], method="SimCSE", tag="simcse", hyperparameters={}, eval_results={},
        train_dataset_name=None, base_model=None, model_name="model", repo_id=str(folder), export_format=export_format,
        model_details=details,
    )  # fmt: skip
    blocks = BLOCK.findall(card.text)
    assert len(blocks) >= 2, card.text
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "cat.jpg")
    # One process per environment: the blocks that import hfcontrast run here, every other one where it is absent.
    ours = [block for block in blocks if "import hfcontrast" in block or "from hfcontrast" in block]
    theirs = [block for block in blocks if block not in ours]
    if theirs:
        isolated_python("\n".join(theirs) + '\nprint("{}")\n', tmp_path)  # the runner reads one JSON line
    if ours:
        env = {"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-c", "\n".join(ours)], cwd=tmp_path, capture_output=True, text=True, env=env)
        assert done.returncode == 0, "\n".join(ours) + "\n" + done.stderr[-2000:]
