"""Streams: each process its share, rows checked as they arrive, exact resume from a kept state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from hfcontrast.collators.checks import BadRowsError, RowSpec
from hfcontrast.collators.streams import StreamedRows


def _files(tmp_path: Path, sizes: tuple[int, ...] = (23, 18), bad: dict[tuple[int, int], Any] | None = None) -> dict[str, Any]:
    sources = {}
    for f, size in enumerate(sizes):
        path = tmp_path / f"part{f}.jsonl"
        with path.open("w") as handle:
            for i in range(size):
                text = (bad or {}).get((f, i), f"file {f} row {i}")
                handle.write(json.dumps({"text": text}) + "\n")
        sources[path.name] = datasets.load_dataset("json", data_files=str(path), streaming=True, split="train")
    return sources


def _stream(tmp_path: Path, **kwargs: Any) -> StreamedRows:
    settings = {"spec": RowSpec(text=("text",)), "shuffle_buffer_size": 7, "seed": 3, "batch_size": 4} | kwargs
    return StreamedRows(_files(tmp_path), **settings)


def _read_then_save(dataset: Any, collate: Any, stop: int) -> tuple[list[Any], Any]:
    """``stop`` batches read from a loader over ``dataset`` (a new pass whenever one ends), one more read ahead as a
    prefetching loader does, and the state saved after the ``stop`` batches (through a JSON round trip)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, drop_last=True, collate_fn=collate)
    seen: list[Any] = []
    iterator = iter(loader)
    while len(seen) < stop:
        try:
            seen.append(next(iterator))
        except StopIteration:
            iterator = iter(loader)
    next(iterator, None)
    return seen, json.loads(json.dumps(dataset.state_at(stop)))


def _batches(stream: StreamedRows, epochs: int) -> list[list[str]]:
    loader = torch.utils.data.DataLoader(stream, batch_size=stream.batch_size, drop_last=True, collate_fn=lambda rows: [r["text"] for r in rows])
    return [batch for _ in range(epochs) for batch in loader]


def test_every_row_once_per_epoch_shuffled_and_a_new_order_each_epoch(tmp_path: Path) -> None:
    stream = _stream(tmp_path, batch_size=1)
    first, second = _batches(stream, 1), _batches(stream, 1)
    expected = sorted([f"file 0 row {i}" for i in range(23)] + [f"file 1 row {i}" for i in range(18)])
    assert sorted(r for b in first for r in b) == expected == sorted(r for b in second for r in b)
    assert first != second and [r for b in first for r in b] != expected
    unshuffled = _batches(_stream(tmp_path, shuffle_buffer_size=0, batch_size=1), 1)
    assert [r for b in unshuffled for r in b] == [f"file 0 row {i}" for i in range(23)] + [f"file 1 row {i}" for i in range(18)]


def test_processes_share_the_rows(tmp_path: Path) -> None:
    shares = [_batches(_stream(tmp_path, process_index=r, num_processes=2, batch_size=1), 1) for r in (0, 1)]
    rows = [sorted(r for b in share for r in b) for share in shares]
    assert not set(rows[0]) & set(rows[1]) and len(rows[0]) + len(rows[1]) == 41


@pytest.mark.parametrize("stop", [1, 5, 10, 13])  # mid-epoch, at an epoch's end (10 batches of 4 in 41 rows), in epoch 2
def test_resume_from_a_kept_state_sees_the_rows_of_the_uninterrupted_run(tmp_path: Path, stop: int) -> None:
    uninterrupted = _batches(_stream(tmp_path), 3)
    seen, state = _read_then_save(_stream(tmp_path), lambda rows: [r["text"] for r in rows], stop)
    resumed = _stream(tmp_path)
    resumed.load_state_dict(state)
    rest = _batches(resumed, 3)
    assert seen + rest[: len(uninterrupted) - stop] == uninterrupted


def test_a_bad_row_is_named_by_file_row_and_column_when_read(tmp_path: Path) -> None:
    stream = StreamedRows(_files(tmp_path, bad={(1, 5): None}), RowSpec(text=("text",)), batch_size=4)
    rows = iter(stream)
    for _ in range(23 + 5):  # the rows before it train
        next(rows)
    with pytest.raises(BadRowsError, match=r"part1\.jsonl: .*\n  row 5, column 'text': text is None"):
        next(rows)


def test_skip_records_each_bad_row(tmp_path: Path) -> None:
    rejected = tmp_path / "rejected_rows.jsonl"
    bad = {(0, 2): "", (1, 17): None}
    stream = StreamedRows(_files(tmp_path, bad=bad), RowSpec(text=("text",)), policy="skip", rejected_path=str(rejected))
    assert len(list(stream)) == 39 and stream.rejected == 2
    records = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(r["source"], r["row"], r["problems"][0]["column"]) for r in records] == [("part0.jsonl", 2, "text"), ("part1.jsonl", 17, "text")]


def test_a_resumed_stream_records_each_bad_row_once(tmp_path: Path) -> None:
    """Rows rejected after the saved state (read ahead of it) are read again on resume: recorded once in all."""
    bad = {(0, 2): "", (0, 14): None, (1, 3): ""}

    def stream(rejected: Path) -> StreamedRows:
        return StreamedRows(_files(tmp_path, bad=bad), RowSpec(text=("text",)), policy="skip", rejected_path=str(rejected),
                            shuffle_buffer_size=5, seed=1, batch_size=4)  # fmt: skip

    whole = tmp_path / "whole.jsonl"
    _batches(stream(whole), 1)
    killed = tmp_path / "killed.jsonl"
    _, state = _read_then_save(stream(killed), lambda rows: rows, 2)  # the read-ahead has met the row at (0, 14)
    assert state["rejected"] < len(killed.read_text().splitlines())
    resumed = stream(killed)
    resumed.load_state_dict(state)
    _batches(resumed, 1)
    assert killed.read_text() == whole.read_text() and resumed.rejected == 3


# ----------------------------------------------------------------------------- through the trainer
class _Recording:
    """A text-pair collator that records the anchors of each batch it builds."""

    def __init__(self, seen: list[tuple[str, ...]]) -> None:
        from hfcontrast.collators import TextPairCollator
        from tests.tiny import tokenizer

        self.inner, self.seen = TextPairCollator(tokenizer(), "text", "text", max_length=16), seen

    def row_spec(self) -> RowSpec:
        return self.inner.row_spec()

    def __call__(self, rows: list[dict[str, Any]]) -> Any:
        self.seen.append(tuple(r["text"] for r in rows))
        return self.inner(rows)


def _train(tmp_path: Path, output: Path, seen: list[tuple[str, ...]], stop: int | None = None, resume: bool = False,
           save_steps: int = 3, **extra: Any) -> Any:
    from hfcontrast.objectives import SimCSE
    from hfcontrast.trainer import ContrastiveTrainer
    from tests.test_trainer_text import StopAt, args
    from tests.tiny import text_model

    torch.manual_seed(0)
    model = text_model(pooler="mean")
    stream = StreamedRows(_files(tmp_path, **extra), shuffle_buffer_size=7, seed=3)
    trainer = ContrastiveTrainer(
        model=model, args=args(output, max_steps=14, per_device_train_batch_size=4, save_strategy="steps", save_steps=save_steps),
        objective=SimCSE(0.05), train_dataset=stream, data_collator=_Recording(seen),
    )  # fmt: skip
    if stop is not None:
        trainer.add_callback(StopAt(stop))
    trainer.train(resume_from_checkpoint="latest" if resume else None)
    return model, trainer


@pytest.mark.parametrize("stop", [6, 10])
def test_a_killed_streamed_run_resumes_with_the_rows_and_weights_of_the_uninterrupted_one(
    stop: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """41 rows, batches of 4: 10 batches an epoch, so 14 steps cross an epoch's end; killed after step 6, or after
    step 10, the epoch's last whole batch (its one row left is dropped: the resumed pass has no batch of that epoch),
    saved, resumed from the latest checkpoint. The loader reads one batch ahead, so each run collates one more. The
    resume never skips batches by reading them again (transformers' skipping is made to fail), on every transformers."""
    import transformers

    def no_skipping(*_: Any, **__: Any) -> None:
        raise AssertionError("a stream resumed by reading its first batches again")

    monkeypatch.setattr(transformers.trainer, "skip_first_batches", no_skipping)
    if hasattr(transformers.Trainer, "get_resumed_dataloader"):
        monkeypatch.setattr(transformers.Trainer, "get_resumed_dataloader", no_skipping)
    straight: list[tuple[str, ...]] = []
    model, _ = _train(tmp_path, tmp_path / "straight", straight)
    first: list[tuple[str, ...]] = []
    _, killed = _train(tmp_path, tmp_path / "resumed", first, stop=stop, save_steps=stop // 2)
    checkpoint = tmp_path / "resumed" / f"checkpoint-{stop}"
    assert (checkpoint / "stream_state-0.pt").is_file()
    # The skipping is turned off inside train() only: the user's arguments, and the checkpoint's, keep their value.
    saved = torch.load(checkpoint / "training_args.bin", weights_only=False)
    assert killed.args.ignore_data_skip is False and saved.ignore_data_skip is False
    resumed: list[tuple[str, ...]] = []
    again, trainer = _train(tmp_path, tmp_path / "resumed", resumed, resume=True, save_steps=stop // 2)
    assert trainer.state.global_step == 14
    assert first[:stop] + resumed[: 14 - stop] == straight[:14]
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_a_streamed_run_needs_max_steps(tmp_path: Path) -> None:
    from hfcontrast.objectives import SimCSE
    from hfcontrast.trainer import ContrastiveTrainer
    from tests.test_trainer_text import args
    from tests.tiny import text_model

    with pytest.raises(ValueError, match="max_steps"):  # transformers' own check, at construction
        ContrastiveTrainer(model=text_model(pooler="mean"), args=args(tmp_path, max_steps=-1, num_train_epochs=1),
                           objective=SimCSE(0.05), train_dataset=StreamedRows(_files(tmp_path)), data_collator=_Recording([]))  # fmt: skip


def test_a_bad_row_stops_the_run_before_the_step_that_would_use_it(tmp_path: Path) -> None:
    seen: list[tuple[str, ...]] = []
    with pytest.raises(BadRowsError, match=r"part1\.jsonl: (?s:.*)row 5, column 'text'"):
        _train(tmp_path, tmp_path / "bad", seen, bad={(1, 5): None})
    assert all(None not in batch for batch in seen)


@pytest.mark.distributed
def test_two_processes_resume_mid_stream_exactly_and_two_machines_equal_one(tmp_path: Path) -> None:
    """Each of 2 processes reads its share (41 rows: 21 and 20, so 5 batches of 4 an epoch); 10 steps cross an
    epoch's end. Killed after step 4, resumed: every process collates the batches of the straight run, which ends
    with the same weights. Two machines (``--num_machines 2``, one process each, localhost, gloo) see the rows and
    reach the weights of the straight run on one machine with 2 processes, exactly."""
    from tests.launch import REPO_ROOT, accelerate_launch, run_two_machines

    _files(tmp_path)
    script = REPO_ROOT / "tests" / "distributed" / "stream_resume.py"
    accelerate_launch(script, "--data", str(tmp_path), "--output", str(tmp_path / "straight"))
    accelerate_launch(script, "--data", str(tmp_path), "--output", str(tmp_path / "resumed"), "--stop", "4")
    accelerate_launch(script, "--data", str(tmp_path), "--output", str(tmp_path / "resumed"), "--resume")
    run_two_machines(script, "--data", str(tmp_path), "--output", str(tmp_path / "two"))

    def read(run: str, tag: str, process: int) -> list[list[str]]:
        return list(json.loads((tmp_path / run / f"seen-{tag}-{process}.json").read_text()))

    for process in (0, 1):
        straight, first = read("straight", "straight", process), read("resumed", "first", process)
        resumed = read("resumed", "resumed", process)
        assert first[:4] + resumed[:6] == straight[:10], process
        assert read("two", "straight", process) == straight, process
    shares = [{row for batch in read("straight", "straight", p)[:5] for row in batch} for p in (0, 1)]
    assert not shares[0] & shares[1]  # an epoch's rows are split between the processes
    a, b, two = (torch.load(tmp_path / run / f"weights-{tag}.pt") for run, tag in
                 (("straight", "straight"), ("resumed", "resumed"), ("two", "straight")))  # fmt: skip
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
        torch.testing.assert_close(a[name], two[name], rtol=0, atol=0, msg=name)


# ----------------------------------------------------------------------------- WebDataset shards
def _samples(n: int, corrupt: int | None = None, lists: bool = False) -> list[dict[str, Any]]:
    import io

    import numpy as np
    from PIL import Image

    samples = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(np.full((6, 6, 3), 7 * i % 256, dtype=np.uint8)).save(buffer, format="PNG")
        image = b"\x89PNG but cut" if i == corrupt else buffer.getvalue()
        samples.append({"image": image, "extension": ".png", "caption": [f"a {i}", f"b {i}"] if lists else f"caption {i}", "label": i % 4})
    return samples


def test_shards_read_back_their_source(tmp_path: Path) -> None:
    from hfcontrast.shards import shard_streams, write_shards

    samples = _samples(25)
    paths = write_shards(samples, str(tmp_path / "train-{00000..00099}.tar"), samples_per_shard=10)
    assert [Path(p).name for p in paths] == ["train-00000.tar", "train-00001.tar", "train-00002.tar"]
    rows = [row for stream in shard_streams(str(tmp_path / "train-{00000..00002}.tar")).values() for row in stream]
    assert [r["image"]["bytes"] for r in rows] == [s["image"] for s in samples]
    assert [r["caption"] for r in rows] == [s["caption"] for s in samples]
    assert [r["label"] for r in rows] == [s["label"] for s in samples]


def test_a_corrupt_member_and_a_truncated_shard_are_bad_rows(tmp_path: Path) -> None:
    from hfcontrast.shards import shard_streams, write_shards

    paths = write_shards(_samples(20, corrupt=13, lists=True), str(tmp_path / "s-%05d.tar"), samples_per_shard=10)
    spec = RowSpec(images=("image",), captions=("caption",))
    with pytest.raises(BadRowsError, match=r"s-00001\.tar: (?s:.*)row 3, column 'image'"):
        list(StreamedRows(shard_streams(paths), spec))
    rejected = tmp_path / "rejected_rows.jsonl"
    stream = StreamedRows(shard_streams(paths), spec, policy="skip", rejected_path=str(rejected))
    assert len(list(stream)) == 19 and stream.rejected == 1
    record = json.loads(rejected.read_text())
    assert (Path(record["source"]).name, record["row"], record["problems"][0]["column"]) == ("s-00001.tar", 3, "image")
    data = Path(paths[0]).read_bytes()
    Path(paths[0]).write_bytes(data[: len(data) // 2 + 100])  # cut mid-member: its reader would stop there silently
    with pytest.raises(ValueError, match=r"s-00000\.tar: the shard is truncated"):
        shard_streams(paths)
    assert list(shard_streams(paths, truncated="skip")) == [paths[1]]


def _train_images(shards: list[str], output: Path, stop: int | None = None, resume: bool = False) -> Any:
    from hfcontrast.augment import view_pipelines
    from hfcontrast.collators import MultiViewCollator
    from hfcontrast.models import ContrastiveVisionModel
    from hfcontrast.objectives import SimCLR
    from hfcontrast.shards import shard_streams
    from hfcontrast.trainer import ContrastiveTrainer
    from tests.test_trainer_text import StopAt, args
    from tests.tiny import vision_config

    torch.manual_seed(0)
    model = ContrastiveVisionModel(vision_config())
    collator = MultiViewCollator("image", pipeline=view_pipelines("simclr", 8, (0.5,), (0.25,)), seed=0, index_column="row_index")
    trainer = ContrastiveTrainer(
        model=model, args=args(output, max_steps=8, per_device_train_batch_size=4, save_strategy="steps", save_steps=3),
        objective=SimCLR(temperature=0.2), data_collator=collator,
        train_dataset=StreamedRows(shard_streams(shards), shuffle_buffer_size=5, seed=1, index_column="row_index"),
    )  # fmt: skip
    if stop is not None:
        trainer.add_callback(StopAt(stop))
    trainer.train(resume_from_checkpoint="latest" if resume else None)
    return model


def test_an_image_stream_from_shards_resumes_exactly(tmp_path: Path) -> None:
    """20 images in 2 shards, batches of 4 (5 an epoch); killed after step 6, in the second epoch, resumed. The
    views are seeded by (seed, epoch, row) with the stream's own epoch (the trainer's restarts at 0 on resume), so
    the resumed run draws the same views: equal weights; and a row's seed differs from one epoch to the next."""
    from hfcontrast.shards import shard_streams, write_shards

    shards = write_shards(_samples(20), str(tmp_path / "s-%05d.tar"), samples_per_shard=10)
    straight = _train_images(shards, tmp_path / "straight")
    _train_images(shards, tmp_path / "resumed", stop=6)
    again = _train_images(shards, tmp_path / "resumed", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    stream = StreamedRows(shard_streams(shards), index_column="row_index")
    first, second = ({r["__key__"]: r["row_index"] for r in stream} for _ in range(2))
    assert first.keys() == second.keys() and all(first[k] != second[k] for k in first)


# ----------------------------------------------------------------------------- several streams, each batch from one
def _mix(tmp_path: Path, policy: str, **kwargs: Any) -> Any:
    from hfcontrast.collators.stream_mix import MixedStreams

    sources = _files(tmp_path)
    streams = {name: StreamedRows({name: source}, RowSpec(text=("text",)), shuffle_buffer_size=5, seed=i, batch_size=4)
               for i, (name, source) in enumerate(sources.items())}  # fmt: skip
    return MixedStreams(streams, policy=policy, seed=2, batch_size=4, **kwargs)


def _sourced(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["__source__"], r["text"]) for r in rows]


def _mixed_batches(mix: Any, batches: int) -> list[list[str]]:
    loader = torch.utils.data.DataLoader(mix, batch_size=4, drop_last=True, collate_fn=_sourced)
    import itertools

    out: list[list[str]] = []
    while len(out) < batches:  # a weighted mix never ends; a round-robin one ends when a source does
        out.extend(itertools.islice(loader, batches - len(out)))
    return out


@pytest.mark.parametrize("policy", ["round_robin", "weighted"])
def test_mixed_streams_give_single_source_batches_and_resume_exactly(tmp_path: Path, policy: str) -> None:
    extra = {"weights": [3.0, 1.0]} if policy == "weighted" else {}
    straight = _mixed_batches(_mix(tmp_path, policy, **extra), 30)
    assert all(len({source for source, _ in batch}) == 1 for batch in straight)
    sources = [batch[0][0] for batch in straight]
    if policy == "round_robin":  # in turn; 18 rows give 4 batches, so each epoch is 4 + 4 (+ the 5th of the first)
        assert sources[:8] == ["part0.jsonl", "part1.jsonl"] * 4
    else:
        assert 15 <= sources.count("part0.jsonl") <= 29
    texts = [[t for _, t in b] for b in straight]
    assert texts[:9] != texts[9:18]  # a new order each epoch
    for stop in (3, 9, 14):
        seen, state = _read_then_save(_mix(tmp_path, policy, **extra), _sourced, stop)
        resumed = _mix(tmp_path, policy, **extra)
        resumed.load_state_dict(state)
        assert seen + _mixed_batches(resumed, 30 - stop) == straight, (policy, stop)


def test_a_killed_run_on_mixed_streams_resumes_exactly(tmp_path: Path) -> None:
    from hfcontrast.collators import MultiSourceCollator, TextPairCollator
    from hfcontrast.objectives import SimCSE
    from hfcontrast.trainer import ContrastiveTrainer
    from tests.test_trainer_text import StopAt, args
    from tests.tiny import text_model, tokenizer

    def train(output: Path, stop: int | None = None, resume: bool = False) -> Any:
        torch.manual_seed(0)
        model = text_model(pooler="mean")
        collator = MultiSourceCollator({name: TextPairCollator(tokenizer(), "text", "text", max_length=16)
                                        for name in ("part0.jsonl", "part1.jsonl")})  # fmt: skip
        trainer = ContrastiveTrainer(
            model=model, args=args(output, max_steps=12, per_device_train_batch_size=4, save_strategy="steps", save_steps=5),
            objective=SimCSE(0.05), train_dataset=_mix(tmp_path, "round_robin"), data_collator=collator,
        )  # fmt: skip
        if stop is not None:
            trainer.add_callback(StopAt(stop))
        trainer.train(resume_from_checkpoint="latest" if resume else None)
        return model

    straight = train(tmp_path / "straight")
    train(tmp_path / "resumed", stop=5)
    again = train(tmp_path / "resumed", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
