"""Shared fixtures: tiny models built from configs, and the shared-data location."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hfcontrast.demo import has_fashion_mnist

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HFCONTRAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

torch.set_num_threads(1)


#: transformers < 5.18 builds every AutoImageProcessor on torchvision, which this project does not install
#: (docs/compatibility.md): loaders of exported image processors are checked from 5.18 on.
PIL_AUTO_IMAGE_PROCESSOR = pytest.mark.skipif(
    tuple(int(x) for x in __import__("transformers").__version__.split(".")[:2]) < (5, 18),
    reason="AutoImageProcessor needs torchvision before transformers 5.18 (docs/compatibility.md)",
)

FIX_DATA = "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"
NO_DATA = f"Fashion-MNIST is not installed ({FIX_DATA})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs = [item for item in items if "fashion_mnist" in item.keywords]
    if needs and not has_fashion_mnist():
        if os.environ.get("CI") == "true":
            raise pytest.UsageError(f"{len(needs)} tests need Fashion-MNIST, which is not installed (CI=true). Fix: {FIX_DATA}")
        skip = pytest.mark.skip(reason=NO_DATA)
        for item in needs:
            item.add_marker(skip)
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared data not found at {SHARED_DATA} (set HFCONTRAST_SHARED_DATA)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Counted from the skip reports, which reach the controller under pytest-xdist too (its collection does not)."""
    skipped = [report for report in terminalreporter.stats.get("skipped", []) if NO_DATA in str(report.longrepr)]
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} TESTS SKIPPED: {NO_DATA}", red=True)


@pytest.fixture(scope="session", autouse=True)
def session_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Whatever the tests, and the processes they launch, write through ``tempfile`` (the benchmark scripts' smoke
    runs, accelerate's workers) goes to a folder of this session, removed at its end: a machine that runs the suite
    again and again (CI) keeps nothing of it. A smoke run of ``benchmarks/streams.py`` alone leaves 1.2 GB."""
    folder = tmp_path_factory.mktemp("tempfile")
    with pytest.MonkeyPatch.context() as patch:  # TMPDIR and tempfile's cache restored on the way out
        patch.setenv("TMPDIR", str(folder))
        patch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def isolated_python(tmp_path_factory: pytest.TempPathFactory, session_temp_dir: Path) -> Callable[[str, Path], Any]:
    """Run Python code in a venv that sees this venv's packages (torch, transformers, sentence-transformers,
    onnxruntime, ...) but cannot import hfcontrast; the code prints one JSON line, which comes back decoded."""
    root = tmp_path_factory.mktemp("isolated")
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    # This venv's packages on the path, but not its .pth hooks: the editable hfcontrast is not importable there.
    Path(purelib, "packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "TOKENIZERS_PARALLELISM": "false", "HOME": str(root),
           "TMPDIR": str(session_temp_dir)}  # fmt: skip
    probe = subprocess.run([str(python), "-c", "import hfcontrast"], cwd=root, capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "No module named 'hfcontrast'" in probe.stderr

    def run(code: str, cwd: Path) -> Any:
        done = subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA
