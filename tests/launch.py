"""Run a script under ``accelerate launch`` with 2 CPU processes (gloo), as users do on GPUs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accelerate_launch(
    script: str | Path, *args: str, num_processes: int = 2, timeout: int = 600, cpu: bool = True
) -> str:
    """``accelerate launch --multi_gpu --num_processes N`` on CPU (``cpu=False``: on the GPUs); returns
    stdout, raises with the log."""
    return run(accelerate_command(script, *args, num_processes=num_processes), timeout=timeout, cpu=cpu)


def run_python(script: str | Path, *args: str, timeout: int = 600, cpu: bool = True) -> str:
    return run([sys.executable, str(script), *args], timeout=timeout, cpu=cpu)


def run(command: list[str], timeout: int = 600, cpu: bool = True) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result.stdout


def accelerate_command(script: str | Path, *args: str, num_processes: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(script), *args,
    ]  # fmt: skip


def start(command: list[str]) -> subprocess.Popen[str]:
    """Start ``command`` in a session of its own (so that its whole process tree can be killed)."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def run_two_machines(script: str | Path, *args: str, timeout: int = 300) -> None:
    """``script`` on two "machines" on this host (``accelerate launch --num_machines 2``, one process each, gloo on
    localhost), both started at once; fails with a machine's stderr when either exits non-zero."""
    port = str(free_port())
    machines = [start([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
                       "--machine_rank", str(r), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
                       "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no", str(script),
                       *args]) for r in (0, 1)]  # fmt: skip
    for machine in machines:
        try:
            _, err = machine.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            machine.kill()
            raise
        assert machine.returncode == 0, err[-4000:]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL the launcher, every worker below it and their process groups, as a pre-emption would."""
    import contextlib
    import signal

    victims = [process.pid, *descendants(process.pid)]
    for pid in victims:
        for kill in (lambda p: os.killpg(os.getpgid(p), signal.SIGKILL), lambda p: os.kill(p, signal.SIGKILL)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid)
    process.wait(timeout=60)


def run_failing(command: list[str], timeout: int = 600) -> str:
    """Run ``command`` that must fail; return its stdout and stderr together."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode != 0, f"{' '.join(command)} succeeded:\n{result.stdout[-3000:]}"
    return result.stdout + result.stderr


def assert_same_run(
    ranks: list[dict],
    reference: dict,
    name: str,
    *,
    steps: int,
    loss_rel: float,
    rel: float,
    atol: float,
    global_loss: bool = False,
) -> None:
    """Dumps of a parity script (tests/distributed/*_parity.py): the processes' local losses average to the
    single process's, micro-batch by micro-batch (``global_loss``: a loss of the gathered global batch, the same on
    every process), and every process's gradients, weights and objective state equal the single process's
    (``rtol=rel``, ``atol``)."""
    import pytest
    import torch

    assert not reference["ddp"] and all(dump["ddp"] for dump in ranks)
    local = [dump["losses"] for dump in ranks]
    if global_loss:
        assert local[0] == pytest.approx(local[1], rel=loss_rel), name
    else:
        assert local[0] != local[1]  # the ranks really held different rows
    assert [(a + b) / 2 for a, b in zip(*local)] == pytest.approx(reference["losses"], rel=loss_rel), name
    assert len(reference["grads"]) == steps
    for dump in ranks:
        for got, want in zip(dump["grads"], reference["grads"], strict=True):
            assert got.keys() == want.keys()
            for key, value in want.items():
                torch.testing.assert_close(got[key], value, rtol=rel, atol=atol, msg=f"{name} {key}")
        for part in ("weights", "objective"):
            assert dump[part].keys() == reference[part].keys()
            for key, value in reference[part].items():
                torch.testing.assert_close(dump[part][key], value, rtol=rel, atol=atol, msg=f"{name} {part} {key}")
