"""Quality of issue 15's techniques on the packaged data, each against the run without it (same steps).

    python benchmarks/text_techniques.py              # all three, about 40 min on 2 CPU cores
    python benchmarks/text_techniques.py matryoshka   # one of: matryoshka, mining, distillation
    python benchmarks/text_techniques.py --smoke      # every run for 2 steps of 8 rows, in a temporary folder

* **matryoshka**: supervised SimCSE from MiniLM on the SNLI triplets (2 epochs), with and without
  ``--matryoshka_dims 384,256,128,64,32``; STS-B dev Spearman at 384 and at 64 dimensions.
* **mining** (3 seeds): supervised SimCSE from MiniLM on (premise, entailment) pairs, in-batch negatives only vs
  one negative mined (``recipes/mine_negatives.py``, rank window 10-100, ``max_score_ratio`` 0.95) from
  the SNLI sentence pool.
* **distillation**: a 2-layer student cut from MiniLM on the Wikipedia sentences: unsupervised SimCSE vs
  in-batch KL distillation from MiniLM (teacher embeddings ahead of time; tau = tau_t = 1), same steps.

Each run is a recipe under ``outputs/bench-text/`` and its ``eval_results.json`` gives the numbers; the
table prints at the end (and to ``outputs/bench-text/results.md``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import mean_sd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "outputs" / "bench-text"
SNLI = ROOT / "hfcontrast" / "demo" / "data" / "nli" / "snli_dev_triplets.csv"
COMMON = ["--per_device_train_batch_size", "64", "--eval_strategy", "no", "--overwrite_output_dir"]
SEEDS = (42, 1, 2)
#: With ``--smoke``: 2 steps of 8 rows for every run, one seed, the STS file cut to 40 pairs, a temporary OUT.
SMOKE = ["--per_device_train_batch_size", "8", "--max_steps", "2", "--max_train_samples", "32"]
EXTRA: list[str] = []


def recipe(name: str, *args: str, seed: int = 42) -> dict[str, float]:
    out = OUT / (name if seed == 42 else f"{name}-seed{seed}")
    if not (out / "eval_results.json").is_file():
        cmd = [sys.executable, str(ROOT / "recipes" / "simcse.py"), "--output_dir", str(out), *COMMON,
               "--seed", str(seed), *args, *EXTRA]  # fmt: skip
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((out / "eval_results.json").read_text())


def matryoshka() -> list[list[str]]:
    steps = ["--demo", "supervised", "--num_train_epochs", "2", "--learning_rate", "5e-5", "--eval_dims", "64"]
    plain = recipe("matryoshka-off", *steps)
    nested = recipe("matryoshka-on", *steps, "--matryoshka_dims", "384,256,128,64,32")
    return [
        [name, f"{r['eval_sts_spearman']:.4f}", f"{r['eval_sts_dim_64_spearman']:.4f}",
         f"{r['eval_sts_dim_64_spearman'] / r['eval_sts_spearman']:.3f}"]
        for name, r in (("without Matryoshka", plain), ("--matryoshka_dims 384,256,128,64,32", nested))
    ]  # fmt: skip


def mining() -> list[list[str]]:
    import datasets

    pairs = OUT / "snli-pairs.csv"
    mined = OUT / "snli-mined.jsonl"
    OUT.mkdir(parents=True, exist_ok=True)
    if not pairs.is_file():
        datasets.load_dataset("csv", data_files=str(SNLI), split="train").select_columns(["sent0", "sent1"]).to_csv(pairs)
    if not mined.is_file():
        smoke = ["--max_train_samples", "32", "--range_min", "1", "--range_max", "8"] if EXTRA else []
        subprocess.run([sys.executable, str(ROOT / "recipes" / "mine_negatives.py"), "--output_file", str(mined),
                        "--range_min", "10", "--range_max", "100", "--max_score_ratio", "0.95", *smoke], check=True, cwd=ROOT)  # fmt: skip
    steps = ["--max_steps", "46", "--learning_rate", "2e-5"]
    rows = []
    for name, train in (("in-batch negatives", pairs), ("+ 1 mined negative", mined)):
        runs = [recipe(f"mining-{'on' if train == mined else 'off'}", "--train_file", str(train), *steps, seed=s)
                for s in (SEEDS[:1] if EXTRA else SEEDS)]
        after = [r["eval_sts_spearman"] for r in runs]
        rows.append([name, f"{runs[0]['before_sts_spearman']:.4f}", mean_sd(after), " / ".join(f"{a:.4f}" for a in after)])
    return rows


def distillation() -> list[list[str]]:
    steps = ["--config_overrides", "num_hidden_layers=2", "--max_steps", "186", "--learning_rate", "5e-5"]
    from hfcontrast.demo import default_text_model

    simcse = recipe("distill-off", *steps)
    kl = recipe("distill-on", *steps, "--teacher_model_name_or_path", default_text_model(), "--temperature", "1.0",
                "--teacher_temperature", "1.0", "--teacher_cache_dir", str(OUT / "teacher-cache"))  # fmt: skip
    return [[name, f"{r['before_sts_spearman']:.4f}", f"{r['eval_sts_spearman']:.4f}"]
            for name, r in (("unsupervised SimCSE", simcse), ("in-batch KL from MiniLM (tau 1)", kl))]  # fmt: skip


TABLES = {
    "matryoshka": (matryoshka, ["run (SNLI, 2 epochs, batch 64)", "STS 384-d", "STS 64-d", "64-d / 384-d"]),
    "mining": (mining, ["run (SNLI pairs, 46 steps of 64)", "STS before", "STS after (3 seeds)", "seeds 42 / 1 / 2"]),
    "distillation": (distillation, ["2-layer student (Wikipedia, 186 steps of 64)", "STS before", "STS after"]),
}


def main() -> None:
    global OUT
    chosen = [arg for arg in sys.argv[1:] if arg != "--smoke"] or list(TABLES)
    if "--smoke" in sys.argv:
        import tempfile

        OUT = Path(tempfile.mkdtemp(prefix="bench_smoke_"))
        sts = OUT / "sts-dev-40.csv"
        rows = (ROOT / "hfcontrast" / "demo" / "data" / "stsb" / "sts-dev.csv").read_text(encoding="utf-8").splitlines()
        sts.write_text("\n".join(rows[:40]) + "\n", encoding="utf-8")
        EXTRA.extend([*SMOKE, "--validation_file", str(sts)])
        print(f"[smoke] every run: {' '.join(EXTRA)}; outputs in {OUT}", flush=True)
    lines = []
    for name in chosen:
        run, header = TABLES[name]
        rows = run()
        lines += [f"\n{name}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    (OUT / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
