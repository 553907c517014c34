"""Quality of the text techniques on the packaged data, each against the run without it (same steps).

    python benchmarks/text_techniques.py              # every table, about 90 min on 2 CPU cores
    python benchmarks/text_techniques.py matryoshka   # one of: matryoshka, mining, distillation, retrieval,
                                                      # retrieval-student, retrieval-ict, retrieval-ict-3ep (the last three not by default)
    python benchmarks/text_techniques.py --smoke      # each technique's run for 2 steps of 8 rows, in a temporary folder
    python benchmarks/text_techniques.py retrieval-ict-3ep --jobs 2   # two runs at a time, one core and thread each

* **matryoshka** (3 seeds): supervised SimCSE with and without ``--matryoshka_dims``, STS-B dev Spearman at
  every width (the plain run's embedding simply cut), in two settings: from MiniLM on all the packaged
  supervised data (the SNLI triplets and the STS-B train pairs scored 4 or more, one epoch), and from a
  random-init 2-layer BERT (256 wide, MiniLM's tokenizer) on the same data for 6 epochs, where truncation
  hurts most.
* **mining** (3 seeds): supervised SimCSE from MiniLM on (premise, entailment) pairs, in-batch negatives only vs
  one negative mined (``recipes/mine_negatives.py``, rank window 10-100, ``max_score_ratio`` 0.95) from
  the SNLI sentence pool.
* **distillation**: a 2-layer student cut from MiniLM on the Wikipedia sentences: unsupervised SimCSE vs
  in-batch KL distillation from MiniLM (teacher embeddings ahead of time; tau = tau_t = 1), same steps.
* **retrieval** (3 seeds): ``--demo retrieval`` (SNLI premise -> entailed hypothesis, held-out premises
  against their hypotheses and 2,000 Wikipedia distractors), nDCG@10 and MRR@10 from MiniLM after one epoch
  of the training premises: in-batch negatives only, + one mined negative (from the training positives, window
  10-100, ratio 0.95), + the GISTEmbed guide (MiniLM itself, frozen), + SNLI's written contradiction.
  ``retrieval-student``: the same arms from a 2-layer student cut from MiniLM (lr 1e-4), where the guide (the
  whole MiniLM) is stronger than the model trained, as in GISTEmbed.
  ``retrieval-ict``: in-batch, mined and guided training of that student on a set with complete labels built
  from the Wikipedia sentences (:func:`inverse_cloze_task`). ``retrieval-ict-3ep``: the same for 3 epochs, with
  the mined negatives unguarded, with the guide, and from ranks 20-100.

Each run is a recipe under ``outputs/bench-text/`` and its ``eval_results.json`` gives the numbers; the
table prints at the end (and to ``outputs/bench-text/results.md``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import mean_sd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "outputs" / "bench-text"
SNLI = ROOT / "hfcontrast" / "demo" / "data" / "nli" / "snli_dev_triplets.csv"
COMMON = ["--per_device_train_batch_size", "64", "--eval_strategy", "no", "--overwrite_output_dir"]
SEEDS = (42, 1, 2)
#: With ``--smoke``: 2 steps of 8 rows, one seed, the STS file cut to 40 pairs, a temporary OUT, and each table's
#: arm with its technique only (the run without it is the same recipe with a flag fewer).
SMOKE = ["--per_device_train_batch_size", "8", "--max_steps", "2", "--max_train_samples", "32"]
EXTRA: list[str] = []
#: ``--jobs N``: runs at a time, each pinned to a core with one thread (default: one run, every thread).
JOBS = 1


def recipe(name: str, *args: str, seed: int = 42, core: int | None = None) -> dict[str, float]:
    """``recipes/simcse.py`` once into ``OUT/name`` (its ``eval_results.json`` reused after); with ``core``, on that
    core alone with one thread."""
    out = OUT / (name if seed == 42 else f"{name}-seed{seed}")
    if not (out / "eval_results.json").is_file():
        cmd = [sys.executable, str(ROOT / "recipes" / "simcse.py"), "--output_dir", str(out), *COMMON,
               "--seed", str(seed), *args, *EXTRA]  # fmt: skip
        env = None
        if core is not None:
            cmd, env = ["taskset", "-c", str(core), *cmd], {**os.environ, "OMP_NUM_THREADS": "1"}
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
    return json.loads((out / "eval_results.json").read_text())


def _sts_positive_pairs() -> Path:
    """The STS-B train pairs scored 4 or more (of 5) as (sent0, sent1) positives."""
    import csv

    path = OUT / "stsb-train-positives.csv"
    if not path.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        lines = (ROOT / "hfcontrast" / "demo" / "data" / "stsb" / "sts-train.csv").read_text(encoding="utf-8").splitlines()
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sent0", "sent1"])
            for fields in (line.split("\t") for line in lines):
                if float(fields[4]) >= 4.0:
                    writer.writerow(fields[5:7])
    return path


MATRYOSHKA = {  # setting: (label, widths, recipe arguments)
    "minilm": ("MiniLM, 1 epoch, lr 5e-5", (384, 256, 128, 64, 32),
               ["--num_train_epochs", "1", "--learning_rate", "5e-5"]),
    "random": ("random-init BERT 2x256, 6 epochs, lr 3e-4", (256, 128, 64, 32, 16),
               ["--config_name", "MINILM", "--config_overrides",
                "num_hidden_layers=2,hidden_size=256,intermediate_size=1024,num_attention_heads=4",
                "--num_train_epochs", "6", "--learning_rate", "3e-4", "--warmup_steps", "30"]),
}  # fmt: skip


def matryoshka() -> list[list[str]]:
    from hfcontrast.demo import default_text_model

    data = ["--train_file", str(SNLI), str(_sts_positive_pairs()), "--multi_dataset_policy", "proportional"]
    rows = []
    for setting, (label, widths, steps) in MATRYOSHKA.items():
        if EXTRA and setting == "minilm":
            continue  # the smoke run: the random-init setting only (the same code, a faster model)
        steps = [default_text_model() if arg == "MINILM" else arg for arg in steps]
        dims = ",".join(str(d) for d in widths)
        for nested in (True,) if EXTRA else (False, True):
            extra = ["--matryoshka_dims", dims] if nested else ["--eval_dims", dims.split(",", 1)[1]]
            runs = [recipe(f"matryoshka-{setting}-{'on' if nested else 'off'}", *data, *steps, *extra, seed=s)
                    for s in (SEEDS[:1] if EXTRA else SEEDS)]  # fmt: skip
            name = f"{label}: {'--matryoshka_dims ' + dims if nested else 'plain, cut'}"
            cells = []
            for i, width in enumerate(widths):
                key = "eval_sts_spearman" if i == 0 else f"eval_sts_dim_{width}_spearman"
                cells.append(f"{width}: {mean_sd([100 * r[key] for r in runs], 2)}")
            rows.append([name, *cells])
    return rows


def mine(output: Path, *options: str) -> int:
    """``recipes/mine_negatives.py`` with ``options`` (its window and guard, the pairs), once: the rows it kept."""
    import datasets

    if not output.is_file():
        subprocess.run([sys.executable, str(ROOT / "recipes" / "mine_negatives.py"), "--output_file", str(output), *options],
                       check=True, cwd=ROOT)  # fmt: skip
    return int(datasets.load_dataset("json", data_files=str(output), split="train").num_rows)


def mining() -> list[list[str]]:
    import datasets

    pairs = OUT / "snli-pairs.csv"
    mined = OUT / "snli-mined.jsonl"
    OUT.mkdir(parents=True, exist_ok=True)
    if not pairs.is_file():
        datasets.load_dataset("csv", data_files=str(SNLI), split="train").select_columns(["sent0", "sent1"]).to_csv(pairs)
    smoke = ["--max_train_samples", "32", "--range_min", "1", "--range_max", "8"] if EXTRA else []
    mine(mined, "--range_min", "10", "--range_max", "100", "--max_score_ratio", "0.95", *smoke)
    steps = ["--max_steps", "46", "--learning_rate", "2e-5"]
    rows = []
    arms = (("in-batch negatives", pairs), ("+ 1 mined negative", mined))
    for name, train in arms[1:] if EXTRA else arms:
        runs = [recipe(f"mining-{'on' if train == mined else 'off'}", "--train_file", str(train), *steps, seed=s)
                for s in (SEEDS[:1] if EXTRA else SEEDS)]
        after = [r["eval_sts_spearman"] for r in runs]
        rows.append([name, f"{runs[0]['before_sts_spearman']:.4f}", mean_sd(after), " / ".join(f"{a:.4f}" for a in after)])
    return rows


def distillation() -> list[list[str]]:
    steps = ["--config_overrides", "num_hidden_layers=2", "--max_steps", "186", "--learning_rate", "5e-5"]
    from hfcontrast.demo import default_text_model

    simcse = None if EXTRA else recipe("distill-off", *steps)
    kl = recipe("distill-on", *steps, "--teacher_model_name_or_path", default_text_model(), "--temperature", "1.0",
                "--teacher_temperature", "1.0", "--teacher_cache_dir", str(OUT / "teacher-cache"))  # fmt: skip
    return [[name, f"{r['before_sts_spearman']:.4f}", f"{r['eval_sts_spearman']:.4f}"]
            for name, r in (("unsupervised SimCSE", simcse), ("in-batch KL from MiniLM (tau 1)", kl)) if r]  # fmt: skip


def _smoke_ir_data(task: Any) -> list[str]:
    """With ``--smoke``: ``--ir_eval_data`` of a BEIR folder of 20 of the demo's queries and 50 distractors."""
    if not EXTRA:
        return []
    folder = OUT / "ir-smoke"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    queries = dict(list(task.queries.items())[:20])
    docs = {d for q in queries for d in task.relevant[q]} | set(list(task.corpus)[-50:])
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": task.corpus[d]}) + "\n" for d in docs))
    qrels = [f"{q}\t{d}\t{g}\n" for q in queries for d, g in task.relevant[q].items()]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels))
    return ["--ir_eval_data", str(folder)]


def retrieval(student: bool = False) -> list[list[str]]:
    """The retrieval demo's arms from MiniLM or (``student``) from a 2-layer student cut from it (lr 1e-4), where
    the guide (the whole MiniLM) is stronger than the model trained, as in GISTEmbed."""

    from hfcontrast.demo import default_text_model, snli_retrieval

    OUT.mkdir(parents=True, exist_ok=True)
    task = snli_retrieval()
    pairs, written, mined = OUT / "retrieval-pairs.csv", OUT / "retrieval-triplets.csv", OUT / "retrieval-mined.jsonl"
    if not pairs.is_file():
        task.train.select_columns(["query", "positive"]).to_csv(pairs)
        task.train.to_csv(written)
    steps = ["--demo", "retrieval", "--num_train_epochs", "1", "--learning_rate", "1e-4" if student else "5e-5",
             *(["--config_overrides", "num_hidden_layers=2"] if student else []), *_smoke_ir_data(task)]
    guide = "+ GISTEmbed guide (MiniLM, frozen)"
    arms = {"in-batch negatives only": ["--train_file", str(pairs)],
            guide: ["--train_file", str(pairs), "--guide_model_name_or_path", default_text_model()]}  # fmt: skip
    if EXTRA:  # the smoke run trains the guide's arm only (the others differ only in their file)
        arms = {guide: arms[guide]}
    else:
        kept = mine(mined, "--train_file", str(pairs), "--range_min", "10", "--range_max", "100", "--max_score_ratio", "0.95")
        arms = {"in-batch negatives only": arms["in-batch negatives only"],
                f"+ 1 mined negative ({kept} of {task.train.num_rows} pairs kept)": ["--train_file", str(mined)],
                guide: arms[guide], "+ SNLI's contradiction as hard negative": ["--train_file", str(written)]}  # fmt: skip
        if student:  # two ways to keep false negatives out of the mined ones, and mining from the documents
            strict = OUT / "retrieval-mined-strict.jsonl"
            kept = mine(strict, "--train_file", str(pairs), "--range_min", "30", "--range_max", "200", "--max_score_ratio", "0.8")
            arms[f"+ 1 mined negative, window 30-200, ratio 0.8 ({kept} kept)"] = ["--train_file", str(strict)]
            arms["+ 1 mined negative + the guide, margin 0.1"] = ["--train_file", str(mined), "--guide_model_name_or_path",
                                                                  default_text_model(), "--guide_margin", "0.1"]  # fmt: skip
            documents, from_documents = OUT / "retrieval-documents.csv", OUT / "retrieval-mined-documents.jsonl"
            if not documents.is_file():  # every hypothesis of the training premises: their contradictions too
                task.train.select_columns(["negative"]).rename_column("negative", "text").to_csv(documents)
            kept = mine(from_documents, "--train_file", str(pairs), "--corpus_file", str(documents), "--range_min", "0",
                        "--range_max", "10")  # fmt: skip
            arms["+ 1 mined negative from the training documents, window 0-10"] = ["--train_file", str(from_documents)]
            arms["+ the same + the guide"] = ["--train_file", str(from_documents), "--guide_model_name_or_path",
                                              default_text_model()]  # fmt: skip
    prefix = "retrieval-student" if student else "retrieval"
    rows = _retrieval_rows(prefix, steps, arms)
    if student and not EXTRA:
        rows.append([f"top-1 misses of in-batch training, seed 42: {top1_misses(OUT / f'{prefix}-0', task)}", "", "", "", ""])
    return rows


def _retrieval_rows(prefix: str, steps: list[str], arms: dict[str, list[str]]) -> list[list[str]]:
    """One row per arm: nDCG@10 before, nDCG@10 and MRR@10 after (mean ± sd over the seeds), nDCG@10 per seed."""
    seeds = SEEDS[:1] if EXTRA else SEEDS
    jobs = [(f"{prefix}-{i}", args, seed) for i, args in enumerate(arms.values()) for seed in seeds]
    with ThreadPoolExecutor(JOBS) as pool:
        done = list(pool.map(lambda j: recipe(j[1][0], *steps, *j[1][1], seed=j[1][2], core=j[0] % JOBS if JOBS > 1 else None),
                             enumerate(jobs)))  # fmt: skip
    rows = []
    for i, name in enumerate(arms):
        runs = done[i * len(seeds) : (i + 1) * len(seeds)]
        rows.append([name, f"{runs[0]['before_ir_ndcg@10']:.4f}", mean_sd([r["eval_ir_ndcg@10"] for r in runs]),
                     mean_sd([r["eval_ir_mrr@10"] for r in runs]), " / ".join(f"{r['eval_ir_ndcg@10']:.4f}" for r in runs)])  # fmt: skip
    return rows


def inverse_cloze_task(folder: Path) -> Path:
    """A retrieval set with complete labels from the packaged Wikipedia sentences, after the inverse cloze task (Lee,
    Chang & Toutanova 2019): the file cut into blocks of 4 consecutive lines; in each, one line of 8 words or more
    (seeded) is the query and the other 3 joined are its passage, the only relevant one. The first 80 % of the
    blocks train (``pairs.csv``); the rest are the evaluation's queries and passages, with the training passages as
    distractors (BEIR folder ``beir``). Returns the pairs' path."""
    import csv
    import random

    from hfcontrast.demo import WIKI_SENTENCES, data_file

    pairs, beir = folder / "pairs.csv", folder / "beir"
    if pairs.is_file():
        return pairs
    with open(data_file(WIKI_SENTENCES), encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    rng, blocks = random.Random(0), []
    for start in range(0, len(lines) - 3, 4):
        block = lines[start : start + 4]
        choices = [j for j, line in enumerate(block) if len(line.split()) >= 8]
        if choices:
            j = rng.choice(choices)
            blocks.append((block[j], " ".join(line for k, line in enumerate(block) if k != j)))
    cut = int(len(blocks) * 0.8)
    train, held_out = blocks[:cut], blocks[cut:]
    (beir / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = [(f"d{i}", passage) for i, (_, passage) in enumerate(held_out)] + [(f"t{i}", p) for i, (_, p) in enumerate(train)]
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in corpus))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, (q, _) in enumerate(held_out)))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(held_out))))
    with pairs.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "positive"])
        writer.writerows(train)
    return pairs


def retrieval_ict(epochs: int = 1) -> list[list[str]]:
    """The retrieval arms on :func:`inverse_cloze_task` (complete labels), from the 2-layer student of MiniLM, for
    ``epochs``; at 3, the mined negatives unguarded, from a farther window, and with the guide."""
    from hfcontrast.demo import default_text_model

    folder = OUT / "ict"
    pairs = inverse_cloze_task(folder)
    steps = ["--num_train_epochs", str(epochs), "--learning_rate", "1e-4", "--max_seq_length", "128", "--ir_eval_data",
             str(folder / "beir"), "--config_overrides", "num_hidden_layers=2"]  # fmt: skip
    unguarded = folder / "mined-unguarded.jsonl"  # every pair kept: the same rows as in-batch training
    kept_all = mine(unguarded, "--train_file", str(pairs), "--max_seq_length", "128", "--range_min", "0", "--range_max", "50")
    guide = ["--guide_model_name_or_path", default_text_model()]
    if epochs == 1:
        mined = folder / "mined.jsonl"
        kept = mine(mined, "--train_file", str(pairs), "--max_seq_length", "128", "--range_min", "0", "--range_max", "50",
                    "--max_score_ratio", "0.95")  # fmt: skip
        arms = {"in-batch negatives only": ["--train_file", str(pairs)],
                f"+ 1 mined negative, window 0-50, ratio 0.95 ({kept} kept)": ["--train_file", str(mined)],
                "+ GISTEmbed guide (MiniLM, frozen)": ["--train_file", str(pairs), *guide],
                f"+ 1 mined negative, window 0-50, no guard ({kept_all} kept)": ["--train_file", str(unguarded)]}  # fmt: skip
        return _retrieval_rows("retrieval-ict", steps, arms)
    far = folder / "mined-far.jsonl"  # past the passages nearest the query (often its own article's)
    kept_far = mine(far, "--train_file", str(pairs), "--max_seq_length", "128", "--range_min", "20", "--range_max", "100")
    arms = {"in-batch negatives only": ["--train_file", str(pairs)],
            f"+ 1 mined negative, window 0-50, no guard ({kept_all} kept)": ["--train_file", str(unguarded)],
            "+ the same + the GISTEmbed guide (MiniLM, frozen)": ["--train_file", str(unguarded), *guide],
            f"+ 1 mined negative, window 20-100, no guard ({kept_far} kept)": ["--train_file", str(far)],
            "+ GISTEmbed guide (MiniLM, frozen)": ["--train_file", str(pairs), *guide]}  # fmt: skip
    rows = _retrieval_rows(f"retrieval-ict-{epochs}ep", steps, arms)
    near = {window: neighbouring_negatives(pairs, file) for window, file in (("0-50", unguarded), ("20-100", far))}
    rows.append([f"mined negatives from within 2 blocks of the query's own: {near}", "", "", "", ""])
    return rows


def neighbouring_negatives(pairs: Path, mined: Path, blocks: int = 2) -> int:
    """How many of ``mined``'s negatives are the passage of a training block within ``blocks`` of the query's own
    (the same stretch of its article, as the blocks are consecutive lines)."""
    import csv

    with pairs.open(newline="") as handle:
        block_of = {row["positive"]: i for i, row in enumerate(csv.DictReader(handle))}
    near = 0
    for line in mined.read_text().splitlines():
        row = json.loads(line)
        negative = block_of.get(row["negative_1"])  # None: not a training passage
        near += negative is not None and abs(negative - block_of[row["positive"]]) <= blocks
    return near


def top1_misses(folder: Path, task: Any) -> str:
    """What the export in ``folder`` ranks first where it misses: the query's own contradiction, another premise's
    hypothesis, or a Wikipedia distractor (scored by sentence-transformers, independently of the recipe)."""
    from sentence_transformers import SentenceTransformer

    from hfcontrast.demo import SNLI_TRIPLETS, data_file, load_text_dataset

    rows = load_text_dataset(data_file(SNLI_TRIPLETS))
    contradiction, hypotheses = dict(zip(rows["sent0"], rows["hard_neg"], strict=True)), {*rows["sent1"], *rows["hard_neg"]}
    model = SentenceTransformer(str(folder), device="cpu")
    ids, qids = list(task.corpus), list(task.queries)
    docs = model.encode([task.corpus[d] for d in ids], batch_size=128, normalize_embeddings=True)
    queries = model.encode([task.queries[q] for q in qids], batch_size=128, normalize_embeddings=True)
    kinds = {"own contradiction": 0, "another premise's hypothesis": 0, "Wikipedia": 0}
    for qid, scores in zip(qids, queries @ docs.T, strict=True):
        first = ids[int(scores.argmax())]
        if first in task.relevant[qid]:
            continue
        text = task.corpus[first]
        own = text == contradiction[task.queries[qid]]
        kinds["own contradiction" if own else "another premise's hypothesis" if text in hypotheses else "Wikipedia"] += 1
    return f"{sum(kinds.values())} of {len(qids)} queries: " + ", ".join(f"{k} {v}" for k, v in kinds.items())


TABLES = {
    "matryoshka": (matryoshka, ["run (SNLI + STS-B train >= 4, batch 64)", "STS x 100 at each width (3 seeds)", "", "", "", ""]),
    "mining": (mining, ["run (SNLI pairs, 46 steps of 64)", "STS before", "STS after (3 seeds)", "seeds 42 / 1 / 2"]),
    "distillation": (distillation, ["2-layer student (Wikipedia, 186 steps of 64)", "STS before", "STS after"]),
    "retrieval": (retrieval, ["run (--demo retrieval, 1 epoch of 64)", "nDCG@10 before", "nDCG@10 after (3 seeds)",
                              "MRR@10 after", "seeds 42 / 1 / 2"]),
    "retrieval-student": (lambda: retrieval(student=True), ["run (2-layer student, 1 epoch of 64, lr 1e-4)", "nDCG@10 before",
                                                            "nDCG@10 after (3 seeds)", "MRR@10 after", "seeds 42 / 1 / 2"]),
    "retrieval-ict": (retrieval_ict, ["run (2-layer student, inverse cloze on Wikipedia, 1 epoch of 64, lr 1e-4)",
                                      "nDCG@10 before", "nDCG@10 after (3 seeds)", "MRR@10 after", "seeds 42 / 1 / 2"]),
    "retrieval-ict-3ep": (lambda: retrieval_ict(epochs=3), ["run (the same, 3 epochs of 64)", "nDCG@10 before",
                                                            "nDCG@10 after (3 seeds)", "MRR@10 after", "seeds 42 / 1 / 2"]),
}
#: Run by default and by --smoke (the student table is the retrieval table's code with other arguments).
DEFAULT = ("matryoshka", "mining", "distillation", "retrieval")


def main() -> None:
    global OUT
    global JOBS
    args = sys.argv[1:]
    if "--jobs" in args:
        at = args.index("--jobs")
        JOBS = int(args[at + 1])
        del args[at : at + 2]
    chosen = [arg for arg in args if arg != "--smoke"] or list(DEFAULT)
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
