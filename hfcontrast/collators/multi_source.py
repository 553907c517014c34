"""Several datasets in one run, every batch from one of them (no cross-task false negatives).

* :class:`MultiSourceDataset`: the datasets side by side, each row tagged with its source's name;
* :class:`SingleSourceBatchSampler`: batches of one source, in groups of ``group`` consecutive batches
  (``group`` = the number of processes, so that accelerate's sharding gives every process a batch of
  the same source at each step and the gathered global batch is single-source too); the order of
  the groups follows a policy:

  - ``proportional``: every group of every source once per epoch, shuffled (a source's share is its
    size's);
  - ``round_robin``: the sources in turn, the epoch ending when the smallest runs out;
  - ``temperature``: each group's source drawn with ``p_s ∝ n_s^(1/T)`` (``T = 1`` proportional, large
    ``T`` uniform; T5 and mT5's mixing), a source cycling through reshuffled batches when it runs out;

  The order is a function of ``(seed, epoch)`` only: a resumed run (the Trainer skips the batches
  already seen) replays it exactly; :meth:`state_dict` is saved in checkpoints and checked on resume.
* :class:`MultiSourceCollator`: each source's own collator (its own columns).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

SOURCE_KEY = "__source__"
POLICIES = ("proportional", "round_robin", "temperature")


class MultiSourceDataset(Dataset):
    """``sources`` (name -> map-style dataset) concatenated; ``dataset[i]`` is the row plus its source name."""

    def __init__(self, sources: Mapping[str, Any]) -> None:
        if not sources:
            raise ValueError("MultiSourceDataset needs at least one dataset")
        self.sources = dict(sources)
        self.names = list(self.sources)
        self.sizes = [len(d) for d in self.sources.values()]
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    def __len__(self) -> int:
        return sum(self.sizes)

    def locate(self, index: int) -> tuple[int, int]:
        """``(source number, row in that source)`` of global row ``index``."""
        for s in range(len(self.sizes) - 1, -1, -1):
            if index >= self.starts[s]:
                return s, index - self.starts[s]
        raise IndexError(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s, row = self.locate(int(index))
        return {**self.sources[self.names[s]][row], SOURCE_KEY: self.names[s]}


class SingleSourceBatchSampler(Sampler[list[int]]):
    """Batches of global row indices of a :class:`MultiSourceDataset`, each from one source (see module)."""

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        *,
        policy: str = "proportional",
        temperature: float = 1.0,
        group: int = 1,
        seed: int = 0,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        rows = batch_size * group
        small = [i for i, n in enumerate(sizes) if n < rows]
        if small:
            raise ValueError(f"sources {small} have fewer rows than one global batch ({rows}): {list(sizes)}")
        self.sizes, self.batch_size, self.group = list(sizes), batch_size, group
        self.policy, self.temperature, self.seed, self.epoch = policy, temperature, seed, 0
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _groups_of(self, source: int, generator: torch.Generator) -> list[list[list[int]]]:
        """One shuffled pass over a source: its full groups of ``group`` batches (remainder dropped)."""
        order = (torch.randperm(self.sizes[source], generator=generator) + self.starts[source]).tolist()
        rows = self.batch_size * self.group
        return [
            [order[g + b * self.batch_size : g + (b + 1) * self.batch_size] for b in range(self.group)]
            for g in range(0, len(order) - rows + 1, rows)
        ]

    def group_sources(self) -> list[int]:
        """The source of each group of this epoch, in order."""
        return [source for source, _ in self._plan()]

    def _plan(self) -> list[tuple[int, list[list[int]]]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        passes = [self._groups_of(s, generator) for s in range(len(self.sizes))]
        counts = [len(p) for p in passes]
        if self.policy == "proportional":
            plan = [(s, g) for s, groups in enumerate(passes) for g in groups]
            return [plan[i] for i in torch.randperm(len(plan), generator=generator).tolist()]
        if self.policy == "round_robin":
            return [(s, passes[s][i]) for i in range(min(counts)) for s in range(len(passes))]
        weights = torch.tensor([float(n) ** (1.0 / self.temperature) for n in self.sizes], dtype=torch.float64)
        draws = torch.multinomial(weights / weights.sum(), sum(counts), replacement=True, generator=generator)
        used = [0] * len(passes)
        plan = []
        for s in draws.tolist():
            if used[s] == len(passes[s]):  # this source ran out: another shuffled pass over it
                passes[s] += self._groups_of(s, generator)
            plan.append((s, passes[s][used[s]]))
            used[s] += 1
        return plan

    def __iter__(self) -> Iterator[list[int]]:
        for _, batches in self._plan():
            yield from batches

    def __len__(self) -> int:
        counts = [n // (self.batch_size * self.group) for n in self.sizes]
        groups = len(self.sizes) * min(counts) if self.policy == "round_robin" else sum(counts)
        return groups * self.group

    def state_dict(self) -> dict[str, Any]:
        """What decides the order: the sources' sizes, the batch shape, the policy, the seed, the epoch."""
        return {
            "sizes": self.sizes, "batch_size": self.batch_size, "group": self.group, "policy": self.policy,
            "temperature": self.temperature, "seed": self.seed, "epoch": self.epoch,
        }  # fmt: skip

    def check_resume(self, saved: Mapping[str, Any]) -> None:
        """Refuse to resume a run whose batch order would differ (other data, batch size, policy...)."""
        mine = self.state_dict()
        changed = [k for k in mine if k != "epoch" and saved.get(k) != mine[k]]
        if changed:
            raise ValueError(
                "the checkpoint's multi-dataset sampler differs from this run's in "
                + ", ".join(f"{k} ({saved.get(k)!r} -> {mine[k]!r})" for k in changed)
                + ": resuming would not replay the same batches"
            )


class MultiSourceCollator:
    """Dispatch a single-source batch to its source's collator (``collators``: name -> collator)."""

    def __init__(self, collators: Mapping[str, Any]) -> None:
        self.collators = dict(collators)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to every source's collator that draws per-epoch randomness."""
        for collator in self.collators.values():
            if callable(getattr(collator, "set_epoch", None)):
                collator.set_epoch(epoch)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        names = {row[SOURCE_KEY] for row in features}
        if len(names) != 1:
            raise ValueError(f"a batch mixes the sources {sorted(names)}: use SingleSourceBatchSampler")
        name = names.pop()
        return self.collators[name]([{k: v for k, v in row.items() if k != SOURCE_KEY} for row in features])
