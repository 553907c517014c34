"""``--streaming`` with several files: the policies' batch shares, from the files' row counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hfcontrast.cli.text import TextDataArguments
from hfcontrast.cli.text_streams import stream_rows_count, text_stream_rows, text_streams
from hfcontrast.collators.stream_mix import MixedStreams


class _Columns:
    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns


def _write(tmp_path: Path) -> dict[str, Path]:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"sent0": f"a {i}", "sent1": f"b {i}"}) + "\n" for i in range(40)) + "\n")
    text = tmp_path / "lines.txt"
    text.write_text("".join(f"line {i}\n" + ("\n" if i % 3 == 0 else "") for i in range(10)))  # blank lines between
    table = tmp_path / "table.csv"
    table.write_text('sent0,sent1\n"a, with comma","b\nwith a newline"\n' + "".join(f"c {i},d {i}\n" for i in range(4)))
    return {"pairs": pairs, "lines": text, "table": table}


def test_rows_are_counted_as_the_stream_reads_them(tmp_path: Path) -> None:
    files = _write(tmp_path)
    args = TextDataArguments(train_file=[str(p) for p in files.values()], streaming=True)
    streams = text_streams(args)
    for name, stream in streams.items():
        blank = name.endswith(".txt")  # the trainer's stream leaves blank lines out, as the count does
        read = sum(1 for row in stream if not (blank and not row["text"].strip()))
        assert stream_rows_count(name, stream, local=True) == read
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"sent0": "a", "sent1": "b"}]))
    with pytest.raises(ValueError, match="JSON array"):
        stream_rows_count(str(array), None, local=True)


@pytest.mark.parametrize(("policy", "temperature", "shares"), [
    ("proportional", 1.0, [40 / 45, 5 / 45]), ("temperature", 2.0, [40**0.5 / (40**0.5 + 5**0.5), 5**0.5 / (40**0.5 + 5**0.5)]),
])  # fmt: skip
def test_proportional_and_temperature_weigh_each_stream_by_its_rows(
    tmp_path: Path, policy: str, temperature: float, shares: list[float]
) -> None:
    files = _write(tmp_path)
    args = TextDataArguments(train_file=[str(files["pairs"]), str(files["table"])], streaming=True)
    sources = text_streams(args)
    collators: dict[str, Any] = {name: _Columns(("sent0", "sent1")) for name in sources}
    mix, _ = text_stream_rows(sources, collators, args, policy, temperature)
    assert isinstance(mix, MixedStreams) and mix.policy == "weighted"
    assert [w / sum(mix.weights) for w in mix.weights] == pytest.approx(shares)
    round_robin, _ = text_stream_rows(sources, collators, args, "round_robin")
    assert round_robin.policy == "round_robin"
    with pytest.raises(ValueError, match="must be > 0"):
        text_stream_rows(sources, collators, args, "temperature", 0.0)
