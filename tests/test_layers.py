"""The layering of docs/architecture.md: each hfcontrast package imports only the layers below it, and the
models import nothing of hfcontrast outside their package (they are copied into checkpoints)."""

from __future__ import annotations

import ast

from tests.launch import REPO_ROOT

#: Bottom first, as in docs/architecture.md.
LAYERS = [
    "losses", "distributed", "memory", "models", "objectives", "augment", "collators", "hub", "evaluation",
    "trainer", "demo", "cli",
]  # fmt: skip
PACKAGE = REPO_ROOT / "hfcontrast"


def _imported_layers(path: object) -> set[str]:
    tree = ast.parse(path.read_text())  # type: ignore[attr-defined]
    here = path.relative_to(PACKAGE).parts  # type: ignore[attr-defined]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("hfcontrast."):
                found.add(node.module.split(".")[1])
            elif node.level >= 2 and len(here) >= 2:  # from ..x import: a sibling package
                target = (node.module or "").split(".")[0]
                found.add(target or here[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("hfcontrast.")}
    return found


def test_each_layer_imports_only_layers_below_it() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2 or parts[0] not in LAYERS:
            continue
        rank = LAYERS.index(parts[0])
        for layer in _imported_layers(path) - {parts[0]}:
            if layer in LAYERS and LAYERS.index(layer) > rank:
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports hfcontrast.{layer}")
    assert not wrong, wrong


def test_models_import_nothing_of_hfcontrast() -> None:
    for path in sorted((PACKAGE / "models").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), f"{path.name}: only single-dot relative imports ({ast.dump(node)})"
                assert node.level == 1 or not (node.module or "").startswith("hfcontrast"), path.name


def test_no_trainer_module_imports_the_trainer() -> None:
    """``trainer.py`` owns the step; the helpers beside it (GradCache, callbacks, the multi-dataset loader,
    the run summary) take explicit inputs and never import it back, not even under ``TYPE_CHECKING``."""
    back = []
    for path in sorted((PACKAGE / "trainer").glob("*.py")):
        if path.name in ("trainer.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "trainer" and node.level >= 1:
                back.append(path.name)
            if isinstance(node, ast.ImportFrom) and node.module == "hfcontrast.trainer.trainer":
                back.append(path.name)
    assert not back, back


def test_recipes_are_wiring() -> None:
    """Recipes stay short (issue 24: at most 150 lines): what they build lives in ``hfcontrast.cli``."""
    long = {p.name: n for p in (REPO_ROOT / "recipes").glob("*.py") if (n := len(p.read_text().splitlines())) > 150}
    assert not long, f"recipes over 150 lines: {long}"
