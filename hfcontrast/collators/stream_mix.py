"""Several streams in one run, each batch from one of them (:class:`MixedStreams`).

As for map-style data (:class:`~hfcontrast.collators.MultiSourceDataset`), one task's rows are never another's
negatives: every batch comes from one source, and the source of batch ``k`` depends only on the seed and ``k``, so
every process draws its batch ``k`` from the same source. Policies (a stream's length is unknown, so there is no
``proportional``):

* ``round_robin``: the sources in turn; the epoch ends when one of them does (the next epoch restarts them all);
* ``weighted``: source ``s`` with probability ``w_s / sum w`` (``weights``; equal by default), a source that runs
  out starting its next epoch at once.

Each source is a :class:`~hfcontrast.collators.streams.StreamedRows` (its share, checks, shuffle buffer); rows get
``__source__``, which :class:`~hfcontrast.collators.MultiSourceCollator` reads. The state after ``k`` batches (the
generator's, each source's) is kept for the last batches, as a single stream's is: a resumed run is exact.
"""

from __future__ import annotations

import copy
import random
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from .streams import StreamedRows, _rng_from, _rng_state, copy_state

SOURCE_KEY = "__source__"


class MixedStreams(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """``streams`` (``{name: StreamedRows}``) mixed batch by batch, as the module describes."""

    def __init__(
        self,
        streams: Mapping[str, StreamedRows],
        *,
        policy: str = "round_robin",
        weights: Sequence[float] | None = None,
        seed: int = 0,
        batch_size: int = 1,
        keep_states: int = 8,
    ) -> None:
        if policy not in ("round_robin", "weighted"):
            raise ValueError(f"a mix of streams takes policy 'round_robin' or 'weighted', got {policy!r}")
        if len(streams) < 2:
            raise ValueError("MixedStreams needs two or more streams")
        if weights is not None and (len(weights) != len(streams) or min(weights) <= 0):
            raise ValueError(f"weights: one positive number per stream ({len(streams)}), got {list(weights)}")
        self.streams, self.names = dict(streams), list(streams)
        self.policy, self.weights, self.seed = policy, list(weights or [1.0] * len(streams)), seed
        self.batch_size = batch_size
        self._states: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max(2, keep_states))
        self._resume: dict[str, Any] | None = None
        self.epoch, self.batches = 0, 0

    def bind(self, batch_size: int) -> None:
        """The per-process batch, for this mix and every source."""
        self.batch_size = batch_size
        for stream in self.streams.values():
            stream.batch_size = batch_size

    def state_at(self, batches: int) -> dict[str, Any]:
        """The state after ``batches`` batches of this process (one of the last kept)."""
        for done, state in reversed(self._states):
            if done == batches:
                return _copy_mix_state(state)
        raise KeyError(f"no state of the mixed streams after {batches} batches (kept: {[d for d, _ in self._states]})")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("names") != self.names or state.get("policy") != self.policy:
            raise ValueError(f"the saved mix read {state.get('names')} ({state.get('policy')}), this one reads "
                             f"{self.names} ({self.policy})")  # fmt: skip
        self._resume = _copy_mix_state(state)

    def _snapshot(self, rng: random.Random, started: set[str]) -> dict[str, Any]:
        """This mix's state; a source started this epoch by its latest state (it is read in whole batches)."""
        return {"names": self.names, "policy": self.policy, "epoch": self.epoch, "batches": self.batches,
                "rng": _rng_state(rng), "sources": {n: self.streams[n].latest_state() for n in sorted(started)}}  # fmt: skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        resume, self._resume = self._resume, None
        if resume is None:
            rng, started = random.Random(f"mix-{self.seed}-{self.epoch}"), set()
        else:
            self._states.clear()
            self.epoch, self.batches, rng = resume["epoch"], resume["batches"], _rng_from(resume["rng"])
            started = set(resume["sources"])
            for name, state in resume["sources"].items():
                self.streams[name].load_state_dict(state)
        if self.policy == "round_robin":  # every source not resumed restarts with the mix's epoch: a new order
            for name in self.names:
                if name not in started:
                    self.streams[name].restart(self.epoch)
        iterators = {name: iter(self.streams[name]) for name in self.names}
        self._states.append((self.batches, self._snapshot(rng, started)))
        while True:
            if self.policy == "round_robin":
                name = self.names[self.batches % len(self.names)]
            else:
                name = rng.choices(self.names, weights=self.weights)[0]
            rows = self._batch(name, iterators)
            if rows is None:  # round robin: a source ended, and so does this epoch
                self.epoch += 1
                return
            started.add(name)
            self.batches += 1
            self._states.append((self.batches, self._snapshot(rng, started)))
            yield from rows

    def _batch(self, name: str, iterators: dict[str, Iterator[dict[str, Any]]]) -> list[dict[str, Any]] | None:
        """``batch_size`` rows of source ``name``; a source that runs out first starts its next epoch (``weighted``:
        the incomplete batch is dropped, as a loader with drop_last drops it) or ends the mix's epoch (``None``)."""
        rows: list[dict[str, Any]] = []
        while len(rows) < self.batch_size:
            try:
                rows.append({**next(iterators[name]), SOURCE_KEY: name})
            except StopIteration:
                if self.policy == "round_robin":
                    return None
                iterators[name] = iter(self.streams[name])
                rows.clear()
        return rows


def _copy_mix_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A kept state of the mix: each source's by :func:`~hfcontrast.collators.streams.copy_state`, the rest deep."""
    rest = copy.deepcopy({k: v for k, v in state.items() if k != "sources"})
    return {**rest, "sources": {name: copy_state(source) for name, source in state["sources"].items()}}
