"""Every number the docs quote from a benchmark: rendered from its JSON, from clean, current code, with
verdicts from the spread (``benchmarks/claims.py``, ``benchmarks/render_tables.py``)."""

from __future__ import annotations

import importlib
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
claims = importlib.import_module("claims")
render_tables = importlib.import_module("render_tables")

#: A speed or memory ratio as the docs write one (``1.31x``, or with the multiplication sign U+00D7).
RATIO = re.compile(r"\b\d+\.\d+ ?[x\u00d7](?![\w])")


def quoted_sources(current: bool = True) -> set[str]:
    """The JSONs the docs' results blocks quote (``current``: those that speak for the code at HEAD)."""
    found = set()
    for doc in render_tables.DOCS:
        for match in render_tables.BLOCK.finditer((ROOT / doc).read_text()):
            spec = render_tables.TABLES[match["table"]]
            if spec.current == current:
                found.update(spec.sources)
    return found


def test_every_results_block_equals_its_json() -> None:
    for doc in render_tables.DOCS:
        text = (ROOT / doc).read_text()
        assert text == render_tables.rendered(text), f"{doc}: run python benchmarks/render_tables.py"
    assert {"text_vs_sentence_transformers", "image_vs_lightly", "clip_vs_hf_dual_encoder"} <= quoted_sources()


def test_no_ratio_is_quoted_outside_a_results_block() -> None:
    docs = {*render_tables.DOCS, *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))}
    for doc in sorted(docs):
        text = render_tables.BLOCK.sub("", (ROOT / doc).read_text())
        assert not RATIO.findall(text), f"{doc} quotes {RATIO.findall(text)} outside a results block"


def _history() -> str | None:
    """Why this checkout cannot judge staleness (``None``: it can)."""
    shallow = claims._git("rev-parse", "--is-shallow-repository")
    if shallow is None:
        return "not a git checkout"
    return "a shallow clone has no history to date the code by" if shallow == "true" else None


def test_quoted_results_come_from_clean_current_code() -> None:
    """Each quoted JSON records its commit, was measured on a tree whose measured code was unchanged, and no
    commit since has changed that code (``claims.MEASURED``)."""
    reason = _history()
    if reason:
        pytest.skip(f"cannot date the quoted results: {reason}")
    for name in sorted(quoted_sources()):
        prov = render_tables.load(name)["provenance"]
        measured = claims.MEASURED[name]
        assert prov["commit"], f"{name}.json records no commit"
        dirty = [p for p in prov["dirty_paths"] if any(p == m or p.startswith(m.rstrip("/") + "/") for m in measured)]
        assert not dirty, f"{name}.json was measured with uncommitted changes to {dirty}"
        why = claims.stale(prov["commit"], measured, name)
        assert why is None, f"{name}: {why}"
    for name in sorted(quoted_sources(current=False)):  # comparisons of two fixed commits: both recorded
        result = render_tables.load(name)
        assert result["this"]["commit"] and result["ref"] and result["this"]["dirty"] is False, name


# ----------------------------------------------------------------------------- the claims helpers
def test_paired_interval_is_students_t_over_the_pairs() -> None:
    from scipy import stats

    ours, peer = [71.0, 73.5, 72.2, 70.9, 74.1], [72.0, 72.5, 72.9, 71.8, 72.7]
    mean, low, high = claims.paired_interval(ours, peer)
    reference = stats.ttest_rel(ours, peer).confidence_interval(0.95)
    assert mean == pytest.approx(sum(o - p for o, p in zip(ours, peer, strict=True)) / 5)
    assert (low, high) == pytest.approx((reference.low, reference.high))
    gm, low, high = claims.ratio_interval([2.0, 2.2, 1.8], [1.0, 1.0, 1.0])
    logs = [math.log(v) for v in (2.0, 2.2, 1.8)]
    log_ci = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    assert gm == pytest.approx(math.exp(sum(logs) / 3))
    assert (low, high) == pytest.approx((math.exp(log_ci.low), math.exp(log_ci.high)))
    with pytest.raises(ValueError, match="two or more"):
        claims.paired_interval([1.0], [2.0])


def test_met_only_when_the_whole_interval_clears_the_target() -> None:
    assert claims.verdict(1.02, 1.3, 1.0) == "met"
    assert claims.verdict(0.98, 1.3, 1.0).startswith("not shown (0.98 to 1.3 vs 1")
    # The SwAV case of issue 30: a mean of -0.78 over 5 seeds with sd 2.82 does not clear -1.
    deltas = [-2.35 - 1.0, -2.35 + 1.0, -2.35, 1.2, 1.5]
    pairs = [({"s": 1.0, "q": 0.0}, {"s": 1.5 + 0.01 * i, "q": d}) for i, d in enumerate(deltas)]
    out = claims.interval_verdicts(pairs, "s", "q", 1.0, -1.0)
    assert out["q_delta_interval"][1] < -1.0 < out["q_delta_interval"][2]
    assert out["target"].startswith("not shown") and out["throughput_ratio_interval"][1] > 1.0
    assert claims.interval_verdicts(pairs[:1], "s", "q", 1.0, -1.0)["target"].startswith("not shown")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_stale_and_dirty_follow_the_measured_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    (repo / "benchmarks" / "results").mkdir(parents=True)
    _git(tmp_path, "init", "-q", str(repo))
    for key, value in (("user.email", "t@example.org"), ("user.name", "t")):
        _git(repo, "config", key, value)
    (repo / "lib" / "core.py").write_text("x = 1\n")
    (repo / "README.md").write_text("docs\n")
    (repo / "benchmarks" / "results" / "r.json").write_text("{}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "measured")
    measured = _git(repo, "rev-parse", "HEAD")
    monkeypatch.setattr(claims, "REPO_ROOT", repo)

    (repo / "benchmarks" / "results" / "r.json").write_text('{"new": 1}\n')
    assert claims.provenance()["dirty"] is False  # a benchmark's own results are not code
    (repo / "lib" / "core.py").write_text("x = 2\n")
    prov = claims.provenance()
    assert prov["dirty"] is True and prov["dirty_paths"] == ["lib/core.py"] and prov["commit"] == measured

    _git(repo, "checkout", "-q", "lib/core.py")
    (repo / "README.md").write_text("more docs\n")
    _git(repo, "commit", "-qam", "docs only")
    assert claims.stale(measured, ("lib",)) is None
    (repo / "lib" / "core.py").write_text('"""The core."""\n\nx = 1  # one\n')
    _git(repo, "commit", "-qam", "a docstring and a comment")
    assert claims.stale(measured, ("lib",)) is None  # the same code
    (repo / "lib" / "core.py").write_text("x = (\n")
    _git(repo, "commit", "-qam", "a file that does not parse")
    assert "lib/core.py has changed since" in str(claims.stale(measured, ("lib",)))
    (repo / "lib" / "core.py").write_text("x = 3\n")
    _git(repo, "commit", "-qam", "code")
    assert "lib/core.py has changed since" in str(claims.stale(measured, ("lib",)))
    assert claims.stale(None, ("lib",)) == "the result records no commit"
    assert "not in this repository" in str(claims.stale("f" * 40, ("lib",)))


def test_a_change_confined_to_unmeasured_functions_keeps_a_result_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    _git(tmp_path, "init", "-q", str(repo))
    for key, value in (("user.email", "t@example.org"), ("user.name", "t")):
        _git(repo, "config", key, value)
    code = "class T:\n    field: int = 0\n\n    def step(self):\n        return 1\n\n    def push(self):\n        return {}\n"
    (repo / "lib" / "t.py").write_text(code.format(1))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "measured")
    measured = _git(repo, "rev-parse", "HEAD")
    monkeypatch.setattr(claims, "REPO_ROOT", repo)
    skip = {"lib/t.py": {"T.push": ("exporting",), "T.field": ("exporting",)}}

    (repo / "lib" / "t.py").write_text(code.format("2  # a comment").replace("field: int = 0", "field: int = 5"))
    _git(repo, "commit", "-qam", "push and a field only")
    assert claims.stale(measured, ("lib",), "training", skip) is None
    assert "lib/t.py has changed" in str(claims.stale(measured, ("lib",), "exporting", skip))  # it runs push
    assert "lib/t.py has changed" in str(claims.stale(measured, ("lib",), "training", {}))  # without the exemption
    docs = code.format("2  # a comment").replace("field: int = 0", "field: int = 5").replace(
        "def step(self):\n", 'def step(self):\n        """Says what step does."""\n'
    )
    (repo / "lib" / "t.py").write_text(docs)
    _git(repo, "commit", "-qam", "a docstring only")
    assert claims.stale(measured, ("lib",), "training", skip) is None  # a docstring is not code
    (repo / "lib" / "t.py").write_text(code.format(2).replace("return 1", "return 3"))
    _git(repo, "commit", "-qam", "the measured step")
    assert "lib/t.py has changed" in str(claims.stale(measured, ("lib",), "training", skip))

    (repo / "lib" / "grid.py").write_text("y = 1\n")  # a new file, and a change to it, that only "exporting" runs
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a new file")
    whole = {"lib/grid.py": {"*": ("exporting",)}}
    later = _git(repo, "rev-parse", "HEAD")
    (repo / "lib" / "grid.py").write_text("y = 2\n")
    _git(repo, "commit", "-qam", "the new file changed")
    assert claims.stale(measured, ("lib",), "training", whole) is not None  # t.py's measured step changed too
    assert claims.stale(later, ("lib",), "training", whole) is None
    assert "lib/grid.py has changed" in str(claims.stale(later, ("lib",), "exporting", whole))
    assert "lib/grid.py has changed" in str(claims.stale(later, ("lib",), "training", {}))


def test_unmeasured_functions_exist() -> None:
    """Every exempted function is defined where it is listed (a rename would exempt nothing, silently)."""
    for path, names in claims.UNMEASURED.items():
        source = (ROOT / path).read_text()
        for name in set(names) - {"*"}:
            assert claims._code(source, frozenset()) != claims._code(source, frozenset({name})), f"{path}: {name}"


def test_a_block_without_its_json_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.import_module("table_cells"), "RESULTS", tmp_path)  # where load() reads
    with pytest.raises(FileNotFoundError, match="run the benchmark"):
        render_tables.rendered("<!-- results:text -->\nold\n<!-- /results:text -->")
    with pytest.raises(KeyError, match="unknown results block"):
        render_tables.rendered("<!-- results:nope -->\n<!-- /results:nope -->")
