"""Every lower bound in pyproject.toml is the version `make test-min` installs (.ci/minimum-versions.txt)."""

from __future__ import annotations

import re
import tomllib

from tests.launch import REPO_ROOT

UNPINNED = {"torch": "the Makefile pins the CPU wheel torch==2.13.0 (the only one installable here)"}


def _floors() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    floors: dict[str, str] = {}
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,\s]*)", requirement)
        if match:
            floors[match[1].lower().replace("_", "-")] = match[2]
        else:
            assert re.match(r"^[A-Za-z0-9_.-]+$", requirement), f"{requirement}: a range without a tested floor"
    return floors


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / ".ci" / "minimum-versions.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_floor_is_pinned_for_the_minimum_run() -> None:
    floors, pins = _floors(), _pins()
    untested = {name: floor for name, floor in floors.items() if name not in UNPINNED and pins.get(name) != floor}
    assert not untested, f"floors not installed by make test-min: {untested} (pins: {pins})"
    assert set(pins) <= set(floors), f"pinned but not declared: {sorted(set(pins) - set(floors))}"
