"""Shared fixtures: tiny models built from configs, and the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from hfcontrast.demo import has_fashion_mnist

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HFCONTRAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

torch.set_num_threads(1)


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


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA
