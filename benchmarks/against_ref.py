"""This checkout against an earlier commit, in the same run: did a change slow the hot paths down?

The loss kernels (``loss_kernels.py``'s worker: InfoNCE, CLIP, SigLIP forward+backward at
B 256/1024/4096), one training step loop of the text benchmark (``text_vs_sentence_transformers.py``'s
"ours" worker, MiniLM and a random 2-layer BERT) and of the image benchmark (``image_vs_lightly.py``'s
"ours" worker, SimCLR and MoCo v2 on Fashion-MNIST, from the same initial weights) run from both trees with
the same Python and packages, alternating A B B A so that drifting load hits both sides alike. It prints
speed ratios "this / ref" (above 1: this checkout is faster), per round and their median.

    python benchmarks/against_ref.py --ref a00f6d8            # loss kernels, text and images, --reps 4
    python benchmarks/against_ref.py --ref HEAD~3 --only losses

The ref's tree is extracted with ``git archive``; its text benchmark reads the demo data from
``HFCONTRAST_SHARED_DATA`` (default: its own packaged data, else ``../shared/data``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

from claims import ratio_interval
from common import (
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    median,
    run_worker,
    save_results,
    wait_until_quiet,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZES = (256, 1024, 4096)


def extract(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def timed(tree: Path, argv: list[str], key: str) -> float:
    env = {"PYTHONPATH": str(tree)}
    shared = os.environ.get("HFCONTRAST_SHARED_DATA")
    if shared is None and not (tree / "hfcontrast" / "demo" / "data" / "nli").is_dir():
        shared = str(REPO.parent / "shared" / "data")  # an old tree that does not ship the text data
    if shared is not None:
        env["HFCONTRAST_SHARED_DATA"] = shared
    return float(run_worker([str(tree / "benchmarks" / argv[0]), *argv[1:]], env=env, cwd=tree)[key])


def cases(
    only: str, models: dict[str, str], steps: int, images: Path | None, sizes: tuple[int, ...] = SIZES,
    train_samples: int = 20000,
) -> list[tuple[str, list[str], str, bool]]:
    """(name, worker argv, result key, higher is better)."""
    out: list[tuple[str, list[str], str, bool]] = []
    if only in ("all", "images") and images is not None:
        for method in ("simclr", "moco"):
            out.append((f"image {method}", ["image_vs_lightly.py", "--worker", "ours", "--method", method,
                        "--init", str(images / "init.safetensors"), "--eval-dir", str(images), "--prefix", "{export}",
                        "--steps", str(steps + 3), "--warmup", "3", "--batch-size", "128", "--lr", "2e-3", "--seed", "42",
                        "--threads", "1", "--num-workers", "0", "--train-samples", str(train_samples)], "samples_per_s", True))  # fmt: skip
    if only in ("all", "losses"):
        for loss in ("info_nce", "clip", "siglip"):
            for batch in sizes:
                out.append((f"{loss} B={batch}", ["loss_kernels.py", "--worker", "--loss", loss, "--impl", "ours",
                            "--batch", str(batch), "--warmup", "3" if batch < 4096 else "1",
                            "--repeats", {256: "300", 1024: "40"}.get(batch, "6"),  # ~1 s of timed calls
                            "--threads", "1"], "ms", False))
    if only in ("all", "text"):
        for model, path in models.items():
            n = steps * (5 if model == "random-bert" else 1)  # a random-BERT step is ~0.2 s
            out.append((f"text {model}", ["text_vs_sentence_transformers.py", "--worker", "train", "--lib", "ours",
                        "--model-path", path, "--export", "{export}", "--warmup", "3", "--batch-size", "32",
                        "--lr", "5e-5", "--scale", "20", "--max-length", "32", "--seed", "42", "--threads", "1",
                        "--steps", str(n)], "samples_per_s", True))
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the commit to compare against (any git revision)")
    parser.add_argument("--only", choices=("all", "losses", "text", "images"), default="all")
    parser.add_argument("--steps", type=int, default=24, help="timed text steps (x5 for the random BERT)")
    a = parser.parse_args()
    smoke = apply_smoke(a, steps=4)  # the text workers time after 3 warm-up steps
    reps = a.reps or 4
    quiet = wait_until_quiet(a.wait_quiet) if a.wait_quiet else None
    with tempfile.TemporaryDirectory(prefix="against_ref_") as tmp_dir:
        tmp = Path(tmp_dir)
        trees = {"ref": extract(a.ref, tmp / "ref"), "this": REPO}
        models: dict[str, str] = {}
        sys.path.insert(0, str(REPO))
        if a.only in ("all", "text"):
            from text_vs_sentence_transformers import make_random_bert

            from hfcontrast.demo import default_text_model

            models["minilm"] = default_text_model()
            models["random-bert"] = make_random_bert(tmp / "random-bert", models["minilm"], 42)
        images: Path | None = None
        if a.only in ("all", "images"):
            from image_vs_lightly import prepare

            from hfcontrast.demo import has_fashion_mnist

            if has_fashion_mnist():
                images = tmp / "images"
                images.mkdir()
                prepare(images, 64 if smoke else 1000, 42)  # shared initial weights and a small kNN bank (not timed)
            else:
                print("no Fashion-MNIST: the image cases are left out (apt-get install dataset-fashion-mnist)")
        rows, runs = [], []
        small = {"sizes": (64,), "train_samples": 1024} if smoke else {}
        chosen = cases(a.only, models, a.steps, images, **small)
        if smoke:  # one case of each kind: the loss worker, the text worker, the image worker
            chosen = [next(c for c in chosen if c[0].startswith(kind)) for kind in ("info_nce", "text random", "image")
                      if any(c[0].startswith(kind) for c in chosen)]  # fmt: skip
        for name, argv, key, higher in chosen:
            speeds: dict[str, list[float]] = {"ref": [], "this": []}
            for rep in range(reps):
                for side in ("ref", "this") if rep % 2 == 0 else ("this", "ref"):
                    args = [x.replace("{export}", f"export-{side}-{rep}" if name.startswith("image") else str(tmp / f"export-{side}-{rep}"))
                            for x in argv]
                    value = timed(trees[side], args, key)
                    speeds[side].append(value if higher else 1.0 / value)
            per_round = [t / r for t, r in zip(speeds["this"], speeds["ref"], strict=True)]
            interval = ratio_interval(speeds["this"], speeds["ref"]) if reps > 1 else None
            rows.append([name, *(f"{x:.3f}" for x in per_round), f"{median(per_round):.3f}"])
            runs.append({"case": name, "speed_this": speeds["this"], "speed_ref": speeds["ref"],
                         "ratio_per_round": per_round, "ratio_median": median(per_round), "ratio_interval": interval})
            print(f"[{name}] this/ref {median(per_round):.3f} ({', '.join(f'{x:.3f}' for x in per_round)})", flush=True)
    print(format_table(["case", *(f"round {i + 1}" for i in range(reps)), "median this/ref"], rows))
    payload: dict[str, Any] = {"name": "against_ref", "ref": a.ref, "machine": machine_info(), "runs": runs}
    if quiet:
        payload["machine"]["wait_quiet"] = quiet
    save_results(a.results_dir, "against_ref", payload)


if __name__ == "__main__":
    main()
