"""One run per output folder: a lock while a run writes, and no silent mixing with a previous run.

transformers 5 dropped ``overwrite_output_dir``: two runs could share a folder and leave checkpoints
of both, or one run's model beside another's code files. :func:`claim_output_dir` restores the
transformers 4 convention and adds a lock:

* a lock file (``.hfcontrast.lock``: PID, host, start time) is created atomically; a second run that
  finds it held by a live process fails at once and names that process. A lock left by a killed
  process (no such PID on this host) is taken over, with a warning;
* a folder that holds anything else is refused, unless the run resumes from a checkpoint in it
  (``--resume_from_checkpoint``) or passes ``--overwrite_output_dir``, which first removes the
  previous run's checkpoints and artefacts.

The main process decides; every process gets the same answer, so all fail or all go on.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..distributed import broadcast_object

logger = logging.getLogger(__name__)
LOCK_NAME = ".hfcontrast.lock"


class OutputDirError(RuntimeError):
    """The output folder is in use by another run, or holds a previous run's files."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@dataclass
class OutputLock:
    """A held lock on ``folder``; :meth:`release` (also run at exit) removes the lock file."""

    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def release(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)


def _acquire(folder: Path) -> OutputLock:
    folder.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(folder)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            handle = os.open(lock.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            pid, host = holder.get("pid"), holder.get("host")
            if pid == record["pid"] and host == record["host"]:  # this process's earlier run
                return lock
            if isinstance(pid, int) and (host != record["host"] or _alive(pid)):
                raise OutputDirError(
                    f"output_dir {folder} is in use by another run: PID {pid} on {host}, started "
                    f"{holder.get('started')} (lock file {lock.path}). Choose another output_dir, or wait "
                    "for that run to finish"
                ) from None
            logger.warning("taking over the lock of a run that is gone (%s): %s", holder or "unreadable", lock.path)
            lock.path.unlink(missing_ok=True)
            continue
        with os.fdopen(handle, "w") as stream:
            json.dump(record, stream)
        atexit.register(lock.release)
        return lock
    raise OutputDirError(f"could not take the lock {lock.path}: another run is taking it at the same time")


def _previous_run(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.name != LOCK_NAME)


def _clear(folder: Path, entries: list[str]) -> None:
    """Remove a previous run's files, refusing folders that are plainly not run folders."""
    here = Path.cwd().resolve()
    if ".git" in entries or folder.resolve() in (here, *here.parents, Path.home().resolve()):
        raise OutputDirError(
            f"overwrite_output_dir=True would delete {folder} ({len(entries)} entries), which holds a repository "
            "or your working directory; pass a folder for this run's outputs"
        )
    for name in entries:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    logger.warning("overwrite_output_dir: removed the previous run's %d entries from %s", len(entries), folder)


def _decide(folder: Path, *, overwrite: bool, resuming: bool) -> str | None:
    """On the main process: take the lock and settle what is already in the folder. ``None`` or an error."""
    try:
        lock = _acquire(folder)
        entries = _previous_run(folder)
        if entries and not resuming:
            if not overwrite:
                lock.release()
                shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
                return (
                    f"output_dir {folder} is not empty ({len(entries)} entries: {shown}); a new run would mix "
                    "its files with the previous run's. Pass overwrite_output_dir=True to replace that run, "
                    "resume_from_checkpoint='latest' to continue it, or another output_dir"
                )
            _clear(folder, entries)
    except OutputDirError as error:
        return str(error)
    return None


def claim_output_dir(output_dir: str, *, overwrite: bool, resuming: bool, is_main_process: bool) -> None:
    """Lock ``output_dir`` for this run (on every process: the main one decides) or raise :class:`OutputDirError`.

    Call it once per run, before anything is written (``ContrastiveTrainer.claim_output_dir`` does,
    once per trainer). A later run of the same process is a new run: the lock is its own, and the
    folder's contents are judged again.
    """
    folder = Path(output_dir).absolute()
    problem = _decide(folder, overwrite=overwrite, resuming=resuming) if is_main_process else None
    problem = broadcast_object(problem)
    if problem is not None:
        raise OutputDirError(str(problem))


def release_output_dir(output_dir: str) -> None:
    """Remove this process's lock on ``output_dir`` (it is removed at exit otherwise)."""
    OutputLock(Path(output_dir).absolute()).release()
