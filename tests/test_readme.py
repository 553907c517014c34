"""The README's Python API section, as a user pastes it: each block runs on its own in a fresh folder, with
at most 3 import statements and 4 objects (the things built: top-level assignments, and the calls passed
straight to ``ContrastiveTrainer``), and leaves an exported model behind."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launch import REPO_ROOT


def api_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return [block for block in re.findall(r"```python\n(.*?)```", section, flags=re.S) if "ContrastiveTrainer(" in block]


def objects_built(tree: ast.Module) -> list[str]:
    built = [target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
             if isinstance(target, ast.Name)]  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ContrastiveTrainer":
            built += [keyword.arg or "" for keyword in node.keywords if isinstance(keyword.value, ast.Call)]
    return built


def test_the_section_shows_simcse_clip_and_moco() -> None:
    blocks = api_blocks()
    assert [next(name for name in ("SimCSE(", "CLIP(", "MoCo(") if name in block) for block in blocks] == [
        "SimCSE(", "CLIP(", "MoCo(",
    ]  # fmt: skip


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.fashion_mnist),
                                   pytest.param(2, marks=pytest.mark.fashion_mnist)], ids=["simcse", "clip", "moco"])
def test_each_block_is_short_and_runs_as_pasted(index: int, tmp_path: Path) -> None:
    block = api_blocks()[index]
    tree = ast.parse(block)
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert len(imports) <= 3, block
    assert len(objects_built(tree)) <= 4, objects_built(tree)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    exported = next(tmp_path.glob("*-out"))
    assert (exported / "model.safetensors").is_file() and (exported / "config.json").is_file()
