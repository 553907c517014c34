"""Peak memory and time of the plain vs the chunked InfoNCE (forward + backward) as the batch grows.

    python benchmarks/chunked_loss_memory.py            # B in 256, 1024, 4096, 16384 at d=256
    python benchmarks/chunked_loss_memory.py --quick    # B in 256, 1024, 2048

Each (B, loss) runs in a fresh subprocess, which measures the growth of its peak resident set
(``ru_maxrss``) over a baseline taken after the inputs are allocated (on CUDA: ``max_memory_allocated``).
The plain loss (:func:`hfcontrast.losses.info_nce`) materialises the ``B x B`` logits, their softmax
and gradient: quadratic in B. The chunked loss (:func:`hfcontrast.losses.chunked_info_nce`) holds a
``chunk x B`` block at a time, in the forward and in the (recomputing) backward: linear in B. Results
go to ``benchmarks/results/chunked_loss_memory.json``; the script also checks that both losses agree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "chunked_loss_memory.json"


def _status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status`` in MiB (``None`` off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_peak() -> float:
    """Reset the peak-RSS mark (``VmHWM``) to the current RSS (Linux ``clear_refs`` 5); return that RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return _status_mib("VmRSS") or 0.0


def _peak() -> float:
    hwm = _status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(batch: int, dim: int, mode: str, chunk: int, device: str, threads: int) -> dict[str, float]:
    """One forward + backward of the loss on fresh random inputs; peak memory growth and wall time."""
    import torch

    from hfcontrast.losses import chunked_info_nce, info_nce

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    small = torch.randn(8, dim, generator=gen, device=device, requires_grad=True)  # warm-up: lazy inits
    info_nce(small, small.detach(), temperature=0.05).loss.backward()
    chunked_info_nce(small, small.detach(), temperature=0.05, chunk_size=4).loss.backward()
    query = torch.randn(batch, dim, generator=gen).to(device).requires_grad_()
    keys = torch.randn(batch, dim, generator=gen).to(device).requires_grad_()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _reset_peak()
    start = time.perf_counter()
    if mode == "plain":
        loss = info_nce(query, keys, temperature=0.05).loss
    else:
        loss = chunked_info_nce(query, keys, temperature=0.05, chunk_size=chunk).loss
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = _peak()
    seconds = time.perf_counter() - start
    return {"peak_mib": peak - base, "seconds": seconds, "loss": float(loss)}


def check_equal(batch: int, dim: int, chunk: int) -> dict[str, float]:
    """Loss and gradients of both forms on the same inputs (fp32): the largest differences."""
    import torch

    from hfcontrast.losses import chunked_info_nce, info_nce

    gen = torch.Generator().manual_seed(1)
    query = torch.randn(batch, dim, generator=gen).requires_grad_()
    keys = torch.randn(batch, dim, generator=gen).requires_grad_()
    plain = info_nce(query, keys, temperature=0.05).loss
    grads = torch.autograd.grad(plain, (query, keys))
    chunked = chunked_info_nce(query, keys, temperature=0.05, chunk_size=chunk).loss
    chunked_grads = torch.autograd.grad(chunked, (query, keys))
    return {
        "batch": batch,
        "loss_abs_diff": abs(float(plain.detach() - chunked.detach())),
        "grad_max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(grads, chunked_grads)),
        "grad_max_abs": max(float(g.abs().max()) for g in grads),
    }


def run(batch: int, args: argparse.Namespace, mode: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", mode, "--batch", str(batch), "--dim", str(args.dim)]
    command += ["--chunk_size", str(args.chunk_size), "--device", args.device, "--threads", str(args.threads)]
    # A fixed mmap threshold: large buffers are mmapped and returned on free, so RSS follows live memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        return {
            "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"
        }  # type: ignore[dict-item]
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth(rows: list[dict], key: str) -> list[float | None]:
    """Exponent ``k`` in ``memory ~ B^k`` between consecutive batch sizes (1: linear, 2: quadratic)."""
    out: list[float | None] = [None]
    for a, b in itertools.pairwise(rows):
        ma, mb = a.get(key, {}).get("peak_mib"), b.get(key, {}).get("peak_mib")
        ok = ma and mb and ma > 0 and mb > 0
        out.append(round(math.log(mb / ma) / math.log(b["batch"] / a["batch"]), 2) if ok else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="B in 256, 1024, 2048 (a minute on 2 CPU cores)")
    parser.add_argument("--smoke", action="store_true", help="B in 64, 128, chunk 32; the report goes to a temporary file")
    parser.add_argument("--batches", type=int, nargs="*", default=None)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--chunk_size", type=int, default=256)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=["plain", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(
            json.dumps(worker(args.batch, args.dim, args.worker, args.chunk_size, args.device, args.threads))
        )
        return

    if args.smoke:
        import tempfile

        args.batches, args.chunk_size = [64, 128], 32
        args.output = Path(tempfile.mkdtemp(prefix="bench_smoke_")) / "chunked_loss_memory.json"
    batches = args.batches or ([256, 1024, 2048] if args.quick else [256, 1024, 4096, 16384])
    equality = check_equal(min(1024, max(batches)), args.dim, args.chunk_size)
    rows = []
    print(f"d={args.dim}, chunk={args.chunk_size}, device={args.device}; peak memory growth over the inputs")
    print(
        f"{'B':>6} | {'plain MiB':>10} {'plain s':>8} | {'chunked MiB':>11} {'chunked s':>9} | {'B^2 fp32 MiB':>12}"
    )
    for batch in batches:
        row = {"batch": batch, "logits_fp32_mib": batch * batch * 4 / 2**20}
        for mode in ("plain", "chunked"):
            row[mode] = run(batch, args, mode)
        rows.append(row)
        p, c = row["plain"], row["chunked"]

        def cell(result: dict, key: str, width: int) -> str:
            return f"{result[key]:>{width}.1f}" if key in result else f"{'error':>{width}}"

        print(
            f"{batch:>6} | {cell(p, 'peak_mib', 10)} {cell(p, 'seconds', 8)} | "
            f"{cell(c, 'peak_mib', 11)} {cell(c, 'seconds', 9)} | {row['logits_fp32_mib']:>12.1f}"
        )
    for mode in ("plain", "chunked"):
        for row, k in zip(rows, growth(rows, mode)):
            row[mode]["growth_exponent"] = k  # type: ignore[index]
        print(
            f"{mode}: memory growth exponent per step in B: {[r[mode].get('growth_exponent') for r in rows][1:]}"
        )
    print(
        f"equality at B={equality['batch']}: |loss diff| {equality['loss_abs_diff']:.2e}, "
        f"max |grad diff| {equality['grad_max_abs_diff']:.2e} (max |grad| {equality['grad_max_abs']:.2e})"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "chunked_loss_memory",
        "dim": args.dim,
        "chunk_size": args.chunk_size,
        "device": args.device,
        "threads": args.threads,
        "machine": platform.platform(),
        "method": "peak RSS (VmHWM, reset after allocating the inputs) minus the RSS then, one subprocess per "
        "(B, loss), forward + backward; CUDA: max_memory_allocated minus memory_allocated",
        "load_average": os.getloadavg(),
        "rows": rows,
        "equality": equality,
        "provenance": provenance(),
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
