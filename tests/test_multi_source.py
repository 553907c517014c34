"""Several datasets in one run: every batch single-source (and every global batch across processes), the
policies' proportions over an epoch, exact mid-epoch resume of the batch sequence, per-source row checks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from hfcontrast.collators import (
    MultiSourceCollator,
    MultiSourceDataset,
    SingleSourceBatchSampler,
    TextPairCollator,
)
from hfcontrast.collators.checks import BadRowsError
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer
from tests.test_trainer_text import StopAt, args, sentences
from tests.tiny import text_model, tokenizer

SIZES = [40, 120, 80]


def test_every_batch_and_every_group_is_single_source() -> None:
    dataset = MultiSourceDataset({str(i): range(n) for i, n in enumerate(SIZES)})
    for policy in ("proportional", "round_robin", "temperature"):
        sampler = SingleSourceBatchSampler(SIZES, 4, policy=policy, group=2, seed=1)
        batches = list(sampler)
        assert len(batches) == len(sampler) and all(len(b) == 4 for b in batches)
        source = [dataset.locate(b[0])[0] for b in batches]
        for batch, s in zip(batches, source):
            assert {dataset.locate(i)[0] for i in batch} == {s}
        # accelerate gives process r the batches r, r + 2, ...: at each step both processes share a source
        assert all(source[i] == source[i + 1] for i in range(0, len(source), 2)), policy


def test_proportions_follow_the_policy() -> None:
    proportional = SingleSourceBatchSampler(SIZES, 4, policy="proportional", seed=0)
    counts = Counter(proportional.group_sources())
    assert [counts[s] for s in range(3)] == [n // 4 for n in SIZES]  # every batch of every dataset, once
    order = SingleSourceBatchSampler(SIZES, 4, policy="round_robin").group_sources()
    assert order == [0, 1, 2] * (40 // 4)  # in turn, until the smallest runs out
    sampler = SingleSourceBatchSampler(SIZES, 4, policy="temperature", temperature=2.0, seed=0)
    drawn: Counter[int] = Counter()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        drawn.update(sampler.group_sources())
    want = torch.tensor(SIZES, dtype=torch.float64) ** 0.5
    got = torch.tensor([drawn[s] for s in range(3)], dtype=torch.float64)
    torch.testing.assert_close(got / got.sum(), want / want.sum(), atol=0.02, rtol=0)
    assert list(SingleSourceBatchSampler(SIZES, 4, seed=3)) == list(SingleSourceBatchSampler(SIZES, 4, seed=3))
    other = SingleSourceBatchSampler(SIZES, 4, seed=3)
    other.set_epoch(1)
    assert list(other) != list(SingleSourceBatchSampler(SIZES, 4, seed=3))


class Recording(MultiSourceCollator):
    def __init__(self, collators: dict[str, Any], seen: list[tuple[str, ...]]) -> None:
        super().__init__(collators)
        self.seen = seen

    def __call__(self, features):  # type: ignore[no-untyped-def]
        self.seen.append(tuple(f.get("a", f.get("text")) for f in features))
        return super().__call__(features)


def sources() -> tuple[MultiSourceDataset, dict[str, Any]]:
    pairs = datasets.Dataset.from_dict({"a": sentences(48, 1), "b": sentences(48, 2)})
    single = datasets.Dataset.from_dict({"text": sentences(72, 3)})
    collators = {"pairs.csv": TextPairCollator(tokenizer(), "a", "b", max_length=16),
                 "wiki.txt": TextPairCollator(tokenizer(), "text", "text", max_length=16)}
    return MultiSourceDataset({"pairs.csv": pairs, "wiki.txt": single}), collators


def run(output: Path, seen: list, stop: int | None = None, resume: bool = False) -> Any:  # type: ignore[type-arg]
    torch.manual_seed(0)
    model = text_model(pooler="mean")
    dataset, collators = sources()
    trainer = ContrastiveTrainer(
        model=model, args=args(output, max_steps=14, per_device_train_batch_size=8, save_strategy="steps", save_steps=4,
                               multi_dataset_policy="temperature", multi_dataset_temperature=1.5),
        objective=SimCSE(0.05), train_dataset=dataset, data_collator=Recording(collators, seen),
    )
    if stop is not None:
        trainer.add_callback(StopAt(stop))
    trainer.train(resume_from_checkpoint="latest" if resume else None)
    return model


def test_resume_mid_epoch_replays_the_exact_batch_sequence(tmp_path: Path) -> None:
    """15 batches per epoch (6 + 9): 14 steps cross no epoch end; killed after step 6 (saved), resumed from
    the latest checkpoint. The dataloader reads one batch ahead, so each run collates one more."""
    straight: list[tuple[str, ...]] = []
    model = run(tmp_path / "straight", straight)
    first: list[tuple[str, ...]] = []
    run(tmp_path / "resumed", first, stop=6)
    resumed: list[tuple[str, ...]] = []
    again = run(tmp_path / "resumed", resumed, resume=True)
    assert (tmp_path / "resumed" / "checkpoint-6" / "sampler.json").is_file()
    assert len(straight) == 15 and first == straight[:7] and resumed == straight[6:]
    assert len(set(straight)) == 15  # no batch twice
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_resume_with_another_policy_is_refused(tmp_path: Path) -> None:
    run(tmp_path, [], stop=4)
    dataset, collators = sources()
    trainer = ContrastiveTrainer(
        model=text_model(pooler="mean"), args=args(tmp_path, max_steps=14, per_device_train_batch_size=8,
                                                   multi_dataset_policy="round_robin"),
        objective=SimCSE(0.05), train_dataset=dataset, data_collator=MultiSourceCollator(collators),
    )
    with pytest.raises(ValueError, match="policy"):
        trainer.train(resume_from_checkpoint="latest")


def test_bad_rows_are_named_by_source(tmp_path: Path) -> None:
    dataset, collators = sources()
    bad = datasets.Dataset.from_dict({"a": ["fine", ""], "b": ["ok", "ok"]})
    dataset = MultiSourceDataset({"wiki.txt": dataset.sources["wiki.txt"], "pairs.csv": bad})
    trainer = ContrastiveTrainer(
        model=text_model(pooler="mean"), args=args(tmp_path, per_device_train_batch_size=2),
        objective=SimCSE(0.05), train_dataset=dataset, data_collator=MultiSourceCollator(collators),
    )
    with pytest.raises(BadRowsError, match=r"(?s)pairs.csv.*row 1, column 'a'"):
        trainer.check_train_rows()
    mixed = MultiSourceCollator(collators)
    with pytest.raises(ValueError, match="mixes the sources"):
        mixed([{"text": "x", "__source__": "wiki.txt"}, {"a": "y", "b": "z", "__source__": "pairs.csv"}])
