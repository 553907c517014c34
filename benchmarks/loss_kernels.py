"""Forward+backward time and peak memory of hfcontrast's InfoNCE / CLIP / SigLIP losses vs the references.

    python benchmarks/loss_kernels.py --quick      # B up to 4096, ~3 min on 2 CPU cores
    python benchmarks/loss_kernels.py              # B up to 16384 (needs ~8 GiB free memory)

Embeddings ``[B, 256]`` (fp32, requires grad) -> loss -> ``backward()``. The references are what a
user writes with torch's fused kernels (they are also the tests' ground truth):

* InfoNCE: ``logits = q_n @ k_n.T / tau``, ``F.cross_entropy(logits, arange(B))``; the textbook formula
  ``-(diag(logits) - log(exp(logits).sum(1))).mean()`` (exp, then sum, then log) is a second, "naive"
  column, not the peer;
* CLIP: the ``transformers`` ``CLIPModel`` formulation, ``logits_per_text = s * t_n @ i_n.T`` and its
  transpose, ``(CE(logits_per_text) + CE(logits_per_image)) / 2``;
* SigLIP: the paper's pseudo-code, ``labels = 2 * eye(B) - 1``,
  ``-logsigmoid(labels * (s * i_n @ t_n.T + b)).sum() / B``.

Each (loss, implementation, B) runs in its own process: time = median of repeated forward+backward
after warm-up; memory = the high-water mark of that process's RSS during its first forward+backward
minus its RSS just before it (inputs already allocated; ``VmHWM`` reset through
``/proc/self/clear_refs``), i.e. the peak of the loss's own allocations.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    LoadSampler,
    apply_smoke,
    base_parser,
    format_table,
    hwm_rss_mb,
    machine_info,
    median,
    ratio,
    reset_peak_rss,
    run_worker,
    save_results,
    time_call,
    wait_until_quiet,
    write_result,
)

NAME = "loss_kernels"
LOSSES = ("info_nce", "clip", "siglip")
DIM, TAU, SCALE, BIAS = 256, 0.05, 10.0, -10.0


def reference(loss: str) -> Any:
    import torch
    import torch.nn.functional as F

    def info_nce(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T / TAU
        return F.cross_entropy(logits, torch.arange(len(q)))

    def naive_info_nce(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T / TAU
        return -(logits.diagonal() - torch.log(torch.exp(logits).sum(dim=1))).mean()

    def clip(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        logits_per_text = SCALE * F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T
        labels = torch.arange(len(text))
        return (F.cross_entropy(logits_per_text, labels) + F.cross_entropy(logits_per_text.T, labels)) / 2

    def siglip(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        logits = SCALE * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T + BIAS
        labels = 2 * torch.eye(len(image)) - 1
        return -F.logsigmoid(labels * logits).sum() / len(image)

    return {"info_nce": info_nce, "clip": clip, "siglip": siglip, "naive_info_nce": naive_info_nce}[loss]


def ours(loss: str) -> Any:
    from hfcontrast.losses import clip_loss, info_nce, siglip_loss

    return {
        "info_nce": lambda q, k: info_nce(q, k, temperature=TAU).loss,
        "clip": lambda i, t: clip_loss(i, t, logit_scale=SCALE).loss,
        "siglip": lambda i, t: siglip_loss(i, t, logit_scale=SCALE, logit_bias=BIAS).loss,
    }[loss]


def worker(a: Any) -> dict[str, Any]:
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    fn = ours(a.loss) if a.impl == "ours" else reference(a.loss if a.impl == "reference" else f"naive_{a.loss}")
    torch.manual_seed(0)
    x = torch.randn(a.batch, DIM, requires_grad=True)
    y = torch.randn(a.batch, DIM, requires_grad=True)

    def step() -> None:
        x.grad = y.grad = None
        fn(x, y).backward()

    # Memory of the first step (the allocator has cached nothing yet): peak RSS above the RSS with
    # the inputs allocated. Large buffers are mmapped by malloc and returned on free, so RSS tracks them.
    before = reset_peak_rss()
    step()
    peak = hwm_rss_mb() - before
    times = time_call(step, warmup=a.warmup, repeats=a.repeats)
    return {"ms": 1000 * median(times), "times_s": times, "peak_mib": peak, "threads": torch.get_num_threads()}


def check_agreement(batch: int = 256) -> dict[str, float]:
    """|ours - reference| of the loss value and of the gradient, per loss."""
    import torch

    out = {}
    for loss in LOSSES:
        torch.manual_seed(1)
        x = torch.randn(batch, DIM, dtype=torch.float64, requires_grad=True)
        y = torch.randn(batch, DIM, dtype=torch.float64, requires_grad=True)
        values, grads = [], []
        for fn in (ours(loss), reference(loss)):
            x.grad = None
            value = fn(x, y)
            value.backward()
            values.append(value.detach())
            grads.append(x.grad.clone())
        out[loss] = max(float((values[0] - values[1]).abs()), float((grads[0] - grads[1]).abs().max()))
    return out


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for loss, color in zip(LOSSES, ("C0", "C1", "C2")):
        for impl, style in (("ours", "-o"), ("reference", "--x")):
            mine = [r for r in rows if r["loss"] == loss and r["impl"] == impl]
            xs = [r["batch"] for r in mine]
            axes[0].plot(xs, [r["ms"] for r in mine], style, color=color, label=f"{loss} {impl}")
            axes[1].plot(xs, [max(r["peak_mib"], 1.0) for r in mine], style, color=color, label=f"{loss} {impl}")
    for ax, title in zip(axes, ("forward+backward ms (median)", "peak memory above inputs, MiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch B (d=256)")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--loss", choices=LOSSES)
    parser.add_argument("--impl", choices=("ours", "reference", "naive"))
    parser.add_argument("--batch", type=int)
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (0: torch default; default: 1 with --quick, else 0)")
    parser.add_argument("--result")
    a = parser.parse_args()
    if a.threads is None:  # one thread per run on a shared 2-core machine: no spin-wait oversubscription
        a.threads = 1 if a.quick else 0
    if a.worker:
        return write_result(a.result, worker(a))

    apply_smoke(a, sizes=[64], warmup=1, repeats=2)
    sizes = a.sizes or ([256, 1024, 4096] if a.quick else [256, 1024, 4096, 16384])
    quiet = wait_until_quiet(a.wait_quiet) if a.wait_quiet else None
    agreement = check_agreement()
    rows: list[dict[str, Any]] = []
    with LoadSampler() as load:
        for loss in LOSSES:
            for batch in sizes:
                warmup = a.warmup if a.warmup is not None else (1 if batch >= 4096 else 3)
                repeats = a.repeats or (3 if batch >= 16384 else 5 if a.quick else 10)
                for impl in ("ours", "reference", "naive") if loss == "info_nce" else ("ours", "reference"):
                    run = run_worker([__file__, "--worker", "--loss", loss, "--impl", impl, "--batch", str(batch),
                                      "--warmup", str(warmup), "--repeats", str(repeats),
                                      "--threads", str(a.threads)])
                    run.update(loss=loss, impl=impl, batch=batch)
                    rows.append(run)
                    print(f"[{loss} B={batch} {impl:9s}] {run['ms']:.1f} ms, {run['peak_mib']:.0f} MiB", flush=True)

    table, summary = [], {}
    for loss in LOSSES:
        for batch in sizes:
            mine = {r["impl"]: r for r in rows if r["loss"] == loss and r["batch"] == batch}
            speedup = ratio(mine["reference"]["ms"], mine["ours"]["ms"])
            memory = ratio(mine["ours"]["peak_mib"], mine["reference"]["peak_mib"])
            naive = mine.get("naive")
            summary[f"{loss}@{batch}"] = {"speedup": speedup, "memory_ratio": memory,
                                          "speedup_vs_naive": ratio(naive["ms"], mine["ours"]["ms"]) if naive else None}
            table.append([loss, batch, mine["ours"]["ms"], mine["reference"]["ms"], speedup,
                          mine["ours"]["peak_mib"], mine["reference"]["peak_mib"], memory,
                          naive["ms"] if naive else "-"])  # fmt: skip
    info = machine_info()
    info.update(load.summary())
    if quiet:
        info["wait_quiet"] = quiet
    payload = {"name": NAME, "machine": info,
               "settings": {"quick": a.quick, "sizes": sizes, "dim": DIM, "threads": a.threads},
               "max_abs_diff_vs_reference_fp64_B256": agreement, "summary": summary, "runs": rows}
    save_results(a.results_dir, NAME, payload)
    plot(Path(a.results_dir) / f"{NAME}.png", rows)
    print(f"\nload average (1 min) during the runs: {info['load1_min']:.2f} .. {info['load1_max']:.2f}; "
          f"max |ours - reference| (loss and grad, fp64, B=256): "
          + ", ".join(f"{k} {v:.1e}" for k, v in agreement.items()))
    print(f"{NAME}: d={DIM}, fp32; speedup = reference ms / ours ms (the reference: F.cross_entropy / "
          "logsigmoid); memory = ours MiB / reference MiB; naive: InfoNCE as exp, sum, log")
    print(format_table(["loss", "B", "ours ms", "ref ms", "speedup", "ours MiB", "ref MiB", "memory ratio",
                        "naive ms"], table))  # fmt: skip


if __name__ == "__main__":
    main()
