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


def accelerate_launch(script: str | Path, *args: str, num_processes: int = 2, timeout: int = 600) -> str:
    """``accelerate launch --multi_gpu --num_processes N`` on CPU; returns stdout, raises with the log."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(script), *args,
    ]
    return run(command, timeout=timeout)


def run_python(script: str | Path, *args: str, timeout: int = 600) -> str:
    return run([sys.executable, str(script), *args], timeout=timeout)


def run(command: list[str], timeout: int = 600) -> str:
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result.stdout
