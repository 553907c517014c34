"""Training rows from streams larger than memory: checked as they arrive, shuffled by a buffer, resumable exactly.

:class:`StreamedRows` reads one or more ``datasets`` streaming ``IterableDataset`` s (one per file, or per source)
in turn and is itself a ``torch`` ``IterableDataset`` of rows:

* **each process its share:** row ``i`` of the concatenated stream goes to process ``i % num_processes`` (every
  process reads the stream and keeps its rows; the order does not depend on the number of data workers);
* ``index_column`` (optional) gets each row's ``(epoch << 40) | position in the stream``: the per-row seed of the
  image views (:class:`~hfcontrast.collators.MultiViewCollator`), so a resumed run draws the same views;
* **blank lines** of the ``drop_blank`` columns (a ``.txt`` file's ``text``) are left out, their count logged per
  source, as the map-style reader removes them;
* **checked as they arrive** with the collator's :class:`~hfcontrast.collators.checks.RowSpec`, the checks map-style
  data gets before step 1: under ``policy="error"`` a bad row raises :class:`BadRowsError` naming the source, the
  row's index within it and the column, when the row is read, so before the step that would use it; under
  ``"skip"`` it is left out and appended to ``rejected_path`` (source, row, column, problem, values);
* **shuffled** by a buffer of ``shuffle_buffer_size`` rows (``0``: stream order), seeded by ``(seed, epoch,
  process)``; each full pass is an epoch, counted here (a resumed run continues the epoch it was in);
* **resumable:** :meth:`state_at` gives the state after ``k`` whole batches of ``batch_size`` rows (counted over
  every epoch, as a loader that drops each epoch's last incomplete batch forms them): the sources'
  ``state_dict()``, the buffer's rows and the generator's state, kept for the last ``keep_states`` batches. A
  checkpoint so records the batches the trainer consumed, not those a prefetching loader has read ahead, and
  :meth:`load_state_dict` resumes there without reading the rows before it again (records of rows rejected after
  that state are dropped from ``rejected_path``, since they are read again).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from .checks import BadRowsError, RowSpec, _row_problems, _shown_value

logger = logging.getLogger(__name__)


class StreamedRows(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Rows of ``sources`` (``{name: streaming IterableDataset}``, read in order) as described in the module.

    ``batch_size`` is the per-process batch: a state is kept at every multiple of it (the last ``keep_states``)."""

    def __init__(
        self,
        sources: Mapping[str, Any],
        spec: RowSpec | None = None,
        *,
        policy: str = "error",
        rejected_path: str | None = None,
        shuffle_buffer_size: int = 0,
        seed: int = 0,
        batch_size: int = 1,
        process_index: int = 0,
        num_processes: int = 1,
        keep_states: int = 8,
        drop_blank: tuple[str, ...] = (),
        index_column: str | None = None,
    ) -> None:
        if policy not in ("error", "skip"):
            raise ValueError(f"policy must be 'error' or 'skip', got {policy!r}")
        if not sources:
            raise ValueError("StreamedRows needs at least one source")
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index {process_index} is not in [0, {num_processes})")
        self.sources, self.names = dict(sources), list(sources)
        self.spec, self.policy, self.rejected_path = spec, policy, rejected_path
        self.buffer_size, self.seed, self.batch_size = max(0, shuffle_buffer_size), seed, max(1, batch_size)
        self.process_index, self.num_processes, self.drop_blank = process_index, num_processes, drop_blank
        self.index_column = index_column
        self._initial = {name: copy.deepcopy(source.state_dict()) for name, source in self.sources.items()}
        self._states: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max(2, keep_states))
        self._resume: dict[str, Any] | None = None
        self.epoch, self.rejected, self.batches_before = 0, 0, 0  # batches_before: whole batches of earlier epochs
        self._live: dict[str, Any] = {}

    # ------------------------------------------------------------------ state
    def state_at(self, batches: int) -> dict[str, Any]:
        """The state after ``batches`` whole batches of this process (one of the last ``keep_states``)."""
        for done, state in reversed(self._states):
            if done == batches:
                return copy_state(state)
        kept = [done for done, _ in self._states]
        raise KeyError(f"no stream state after {batches} batches (kept: {kept}): is the loader's batch size "
                       f"{self.batch_size}, with drop_last?")  # fmt: skip

    def latest_state(self) -> dict[str, Any]:
        """The state after the last whole batch this stream yielded (for a reader that takes whole batches), or the
        one it will resume from."""
        if self._resume is not None:
            return copy_state(self._resume)
        if not self._states:
            raise KeyError("the stream has yielded no batch yet")
        return copy_state(self._states[-1][1])

    def restart(self, epoch: int) -> None:
        """The next iteration reads epoch ``epoch`` from its beginning (a pending resume is dropped)."""
        self._resume, self.epoch = None, int(epoch)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state`` (from :meth:`state_at`): the next iteration continues from there."""
        if state.get("sources") != self.names:
            raise ValueError(f"the saved stream read {state.get('sources')}, this one reads {self.names}")
        self._resume = copy_state(state)
        self.epoch, self.rejected, self.batches_before = int(state["epoch"]), int(state["rejected"]), int(state["batches_before"])

    def _snapshot(self) -> dict[str, Any]:
        live = self._live
        source = self.sources[self.names[live["file"]]] if live["file"] < len(self.names) else None
        return {
            "sources": self.names, "epoch": self.epoch, "batches_before": self.batches_before, "file": live["file"], "row_in_file": live["row_in_file"],
            "read": live["read"], "yielded": live["yielded"], "rejected": self.rejected, "draining": live["draining"],
            "source_state": copy.deepcopy(source.state_dict()) if source is not None else None,
            "buffer": list(live["buffer"]), "rng": _rng_state(live["rng"]),
        }  # fmt: skip

    # ------------------------------------------------------------------ reading
    def _rows(self) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """``(source, row within it, row)`` of this process's share, checked, from the live position on."""
        live = self._live
        while live["file"] < len(self.names):
            name = self.names[live["file"]]
            source = self.sources[name]
            blank = 0
            for row in self._readable(name, source):
                if any(isinstance(row.get(c), str) and not row[c].strip() for c in self.drop_blank):
                    live["row_in_file"] += 1
                    blank += 1
                    continue
                index, mine = live["row_in_file"], live["read"] % self.num_processes == self.process_index
                live["row_in_file"] += 1
                live["read"] += 1
                if not mine:
                    continue
                out = dict(row)
                if self.index_column is not None:  # unique per (epoch, row): the row's augmentation seed
                    out[self.index_column] = (self.epoch << 40) | (live["read"] - 1)
                if self._accepted(name, index, out):
                    yield name, index, out
            if blank:
                logger.warning("%s: left out %d blank lines", name, blank)
            live["file"] += 1
            live["row_in_file"] = 0
            if live["file"] < len(self.names):
                self.sources[self.names[live["file"]]].load_state_dict(copy.deepcopy(self._initial[self.names[live["file"]]]))

    def _readable(self, name: str, source: Any) -> Iterator[Mapping[str, Any]]:
        """The rows of ``source`` until it ends, or until its reader fails (a truncated shard): then the rest of the
        source is one bad row, an error under ``policy="error"``, recorded and passed over under ``"skip"``."""
        rows = iter(source)
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as error:  # the reader's own: a truncated archive, a file cut short
                problem = f"unreadable from here on ({type(error).__name__}: {error})"
                if self.policy == "error" or self._live["read"] % self.num_processes == self.process_index:
                    self._reject(name, self._live["row_in_file"], [("*", problem)], {})  # once, by the row's owner
                return
            yield row

    def _reject(self, name: str, index: int, problems: list[tuple[str, str]], row: Mapping[str, Any]) -> None:
        """Raise (``policy="error"``) or record a bad row."""
        if self.policy == "error":
            lines = "\n".join(f"  row {index}, column {column!r}: {problem}" for column, problem in problems)
            raise BadRowsError(f"{name}: a row of the stream cannot be used (found as it was read, before the step "
                               f"that would use it):\n{lines}\nFix it, or pass bad_rows='skip' to train without it "
                               "(it is written to rejected_rows.jsonl)")  # fmt: skip
        self.rejected += 1
        if self.rejected_path is not None:
            os.makedirs(os.path.dirname(self.rejected_path) or ".", exist_ok=True)
            values = {column: _shown_value(row.get(column)) for column in (self.spec.columns if self.spec else ())}
            record = {"source": name, "row": index, "problems": [{"column": c, "problem": p} for c, p in problems],
                      "values": values}  # fmt: skip
            with open(self.rejected_path, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(record) + "\n")

    def _accepted(self, name: str, index: int, row: Mapping[str, Any]) -> bool:
        if self.spec is None:
            return True
        missing = [column for column in self.spec.columns if column not in row]
        problems = [(column, "missing column") for column in missing] or _row_problems(row, self.spec)
        if not problems:
            return True
        self._reject(name, index, problems, row)
        return False

    def _start(self) -> None:
        resume, self._resume = self._resume, None
        if resume is None:
            for name in self.names:
                self.sources[name].load_state_dict(copy.deepcopy(self._initial[name]))
            rng = random.Random(f"{self.seed}-{self.epoch}-{self.process_index}")
            self._live = {"file": 0, "row_in_file": 0, "read": 0, "yielded": 0, "buffer": [], "rng": rng,
                          "draining": False}  # fmt: skip
        else:
            self._states.clear()
            self._forget_rejections_after(int(resume["rejected"]))
            if resume["file"] < len(self.names) and resume["source_state"] is not None:
                self.sources[self.names[resume["file"]]].load_state_dict(resume["source_state"])
            self._live = {key: resume[key] for key in ("file", "row_in_file", "read", "yielded", "draining")}
            self._live["buffer"], self._live["rng"] = list(resume["buffer"]), _rng_from(resume["rng"])
        self._keep_state()

    def _forget_rejections_after(self, count: int) -> None:
        """On resume, the rows read after the saved state are read again: their records (written when a prefetching
        loader read ahead of the checkpoint) are dropped, so each bad row is recorded once."""
        if self.rejected_path is None or not os.path.exists(self.rejected_path):
            return
        with open(self.rejected_path, encoding="utf-8") as stream:
            records = stream.readlines()
        if len(records) > count:
            with open(self.rejected_path, "w", encoding="utf-8") as stream:
                stream.writelines(records[:count])

    def _keep_state(self) -> None:
        yielded = self._live["yielded"]
        if yielded % self.batch_size == 0:
            self._states.append((self.batches_before + yielded // self.batch_size, self._snapshot()))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._start()
        live = self._live
        buffer, rng = live["buffer"], live["rng"]
        if not live["draining"]:
            for item in self._rows():
                if len(buffer) < self.buffer_size:
                    buffer.append(item)
                    continue
                if self.buffer_size:
                    pick = rng.randrange(len(buffer))
                    item, buffer[pick] = buffer[pick], item
                yield self._out(item)
            live["draining"] = True
        while buffer:
            yield self._out(buffer.pop(rng.randrange(len(buffer))))
        self.batches_before += live["yielded"] // self.batch_size  # the incomplete last batch is dropped
        self.epoch += 1

    def _out(self, item: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        self._live["yielded"] += 1
        self._keep_state()
        return dict(item[2])  # a copy: the kept states share the buffer's rows, which no reader may change


def copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A kept state, to save or load: its own buffer list (the rows, never handed out, are shared, not copied: a
    deep copy of a large buffer would cost each checkpoint seconds) and deep copies of the rest."""
    return {**copy.deepcopy({k: v for k, v in state.items() if k != "buffer"}), "buffer": list(state["buffer"])}


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from(state: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng
