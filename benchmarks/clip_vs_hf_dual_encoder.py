"""CLIP with hfcontrast vs the stock ``transformers.Trainer`` + ``VisionTextDualEncoderModel`` (run_clip.py).

    python benchmarks/clip_vs_hf_dual_encoder.py --quick      # ~7 min on 2 idle CPU cores
    python benchmarks/clip_vs_hf_dual_encoder.py              # full

Same towers and data as ``recipes/clip.py``'s default (``hfcontrast.cli.clip``'s builders): a random-init
ViT (28 px, patch 4, 4 layers, hidden 128) and all-MiniLM-L6-v2 with the text tower frozen, projection 128,
on captioned Fashion-MNIST. Both models are the same network: ``VisionTextDualEncoderModel`` pools by the
towers' ``pooler_output`` only, so ours pools that way too here (the recipe's default mean-pools the text),
and the peer loads our whole initial state dict **strictly** (towers, poolers, projections, ``logit_scale``).
Same batch, steps, seed, optimizer (AdamW, lr 1e-3, weight decay 0.05, cosine, 10 % warm-up).

* peer: ``VisionTextDualEncoderModel``, ``return_loss=True``, the stock ``Trainer``; images through the
  image processor in ``set_transform`` as ``examples/pytorch/contrastive-image-text/run_clip.py`` does,
  captions padded per batch to the longest (as ours; run_clip.py pads to ``max_length``), text tower frozen
  as its ``--freeze_text_model``; one caption per image (seeded choice);
* ours: ``ImageTextCollator``, ``CLIP`` objective (learnable, clamped temperature), ``ContrastiveTrainer``.

Also the 2-process run of each (``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2``,
per-device batch = half, so the global batch is the same): the peer's loss then sees only its local
batch as negatives, ours gathers the other process's embeddings (with gradient).

Quality, by one evaluation code for both exported models (``get_image_features`` /
``get_text_features`` on the same pixels and tokens): zero-shot top-1 on the test images with the
held-out prompt templates, and text->image / image->text R@1 on the recipe's retrieval pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import interval_text, interval_verdicts
from common import (
    SEEDS,
    LoadSampler,
    LoopTimer,
    apply_smoke,
    base_parser,
    format_table,
    machine_info,
    median,
    peak_rss_mb,
    plot_side_by_side,
    ratio,
    run_worker,
    save_results,
    step_timer_callback,
    wait_until_quiet,
    write_result,
)

NAME = "clip_vs_hf_dual_encoder"
TARGET_THROUGHPUT = 1.0
TARGET_ZEROSHOT_DELTA = -1.0  # points of zero-shot top-1 against the peer
MAX_LENGTH = 32


def training_args(a: argparse.Namespace, output_dir: str, world: int) -> dict[str, Any]:
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": a.batch_size // world,
        "learning_rate": 1e-3,
        "weight_decay": 0.05,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1,
        "max_steps": a.steps,
        "seed": a.seed,
        "data_seed": a.seed,
        "logging_steps": 10,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_drop_last": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "use_cpu": True,
        "ddp_backend": "gloo" if world > 1 else None,
    }


def train_worker(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import set_seed

    from hfcontrast.augment import eval_pipeline, normalization_from_processor
    from hfcontrast.cli.clip import DualModelArguments, build_dual_encoder_from, image_processor_for
    from hfcontrast.demo import captions

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if a.threads:
        torch.set_num_threads(a.threads)
    set_seed(a.seed)
    # The recipe's default model (text tower locked), pooled as the peer can pool: by pooler_output.
    arguments = DualModelArguments(text_pooler="pooler_output", vision_pooler="pooler_output")
    model, tokenizer, _ = build_dual_encoder_from(arguments, siglip=False)
    processor = image_processor_for(model, None)
    train = captions.fashion_mnist_captions("train", max_samples=a.train_samples)
    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as scratch:
        if a.lib == "ours":
            from hfcontrast.collators import ImageTextCollator, with_index_column
            from hfcontrast.objectives import CLIP
            from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

            mean, std = normalization_from_processor(processor)
            size = int(model.config.vision_config.image_size)
            collator = ImageTextCollator(
                eval_pipeline(size, mean, std, resize_size=size),
                tokenizer,
                seed=a.seed,
                index_column="idx",
                max_length=MAX_LENGTH,
            )
            trainer: Any = ContrastiveTrainer(
                model=model,
                args=ContrastiveTrainingArguments(**training_args(a, scratch, world)),
                objective=CLIP(),
                train_dataset=with_index_column(train, "idx"),
                data_collator=collator,
                callbacks=[step_timer_callback(timer)],
            )
        else:
            from transformers import (
                Trainer,
                TrainingArguments,
                VisionTextDualEncoderConfig,
                VisionTextDualEncoderModel,
            )

            config = VisionTextDualEncoderConfig.from_vision_text_configs(
                model.config.vision_config,
                model.config.text_config,
                projection_dim=model.config.projection_dim,
            )
            peer = VisionTextDualEncoderModel(config)
            # The same starting weights, loaded strictly: towers (MiniLM, the ViT init), poolers, projections, scale.
            result = peer.load_state_dict(model.state_dict(), strict=True)
            assert not result.missing_keys and not result.unexpected_keys, result
            for parameter in peer.text_model.parameters():  # run_clip.py --freeze_text_model
                parameter.requires_grad = False
            rng = random.Random(a.seed)
            train = train.map(lambda row: {"caption": rng.choice(row["caption"])})

            def transform_images(rows: dict[str, Any]) -> dict[str, Any]:  # run_clip.py's set_transform
                images = [image.convert("RGB") for image in rows["image"]]
                rows["pixel_values"] = list(processor(images=images, return_tensors="pt")["pixel_values"])
                return rows

            train.set_transform(transform_images)

            def collate_fn(
                rows: list[dict[str, Any]],
            ) -> dict[str, Any]:  # captions padded to the batch's longest
                text = tokenizer([row["caption"] for row in rows], max_length=MAX_LENGTH, padding=True,
                                 truncation=True, return_tensors="pt")  # fmt: skip
                return {
                    "pixel_values": torch.stack([row["pixel_values"] for row in rows]),
                    "input_ids": text["input_ids"],
                    "attention_mask": text["attention_mask"],
                    "return_loss": True,
                }

            model = peer
            trainer = Trainer(
                model=peer,
                args=TrainingArguments(**training_args(a, scratch, world)),
                train_dataset=train,
                data_collator=collate_fn,
                callbacks=[step_timer_callback(timer)],
            )
        result = trainer.train()
        rss = peak_rss_mb()
        trainer.save_model(a.export)
        if a.lib != "ours" and trainer.is_world_process_zero():
            tokenizer.save_pretrained(a.export)
    return {
        "lib": a.lib,
        "world_size": world,
        "peak_rss_mb": rss,
        "train_loss": float(result.training_loss),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **timer.throughput(a.warmup, (a.batch_size // world) * world),
    }


def eval_worker(a: argparse.Namespace) -> dict[str, Any]:
    """One evaluation for both exports: zero-shot top-1 and R@1 from projected, normalised features."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer, VisionTextDualEncoderModel

    import hfcontrast  # noqa: F401  (registers hfcontrast-dual with AutoModel)
    from hfcontrast.demo import captions, default_text_model

    if a.threads:
        torch.set_num_threads(a.threads)
    test = captions.fashion_mnist_captions("test", max_samples=a.test_samples)
    pairs = captions.unique_description_pairs(test)
    tokenizer = AutoTokenizer.from_pretrained(default_text_model())

    def pixels(images: list[Any]) -> torch.Tensor:  # resize 28 (a no-op here), [0, 1], mean/std 0.5
        arrays = [
            np.asarray(image.convert("RGB").resize((28, 28)), dtype=np.float32) / 255.0 for image in images
        ]
        return (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) - 0.5) / 0.5

    def tokens(texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(
            tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        )

    test_pixels, pair_pixels = pixels(test["image"]), pixels(pairs["image"])
    labels = torch.tensor(test["label"])
    prompts = [
        captions.fill(t, name)
        for name in captions.FASHION_MNIST_CLASS_NAMES
        for t in captions.HELD_OUT_TEMPLATES
    ]
    prompt_tokens, pair_tokens = tokens(prompts), tokens(list(pairs["caption"]))

    def features(output: Any) -> torch.Tensor:
        tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
        return F.normalize(tensor.float(), dim=-1)

    out = {}
    for path in a.paths:
        model = (
            (VisionTextDualEncoderModel if "peer" in Path(path).name else AutoModel)
            .from_pretrained(path)
            .eval()
        )
        with torch.inference_mode():
            image = torch.cat(
                [
                    features(model.get_image_features(pixel_values=test_pixels[i : i + 512]))
                    for i in range(0, len(test_pixels), 512)
                ]
            )
            classes = features(model.get_text_features(**prompt_tokens))
            classes = F.normalize(
                classes.view(len(captions.FASHION_MNIST_CLASS_NAMES), -1, classes.shape[-1]).mean(1), dim=-1
            )
            zero_shot = 100.0 * float(((image @ classes.T).argmax(1) == labels).float().mean())
            sims = (
                features(model.get_text_features(**pair_tokens))
                @ features(model.get_image_features(pixel_values=pair_pixels)).T
            )
            target = torch.arange(len(sims))
            out[path] = {
                "zeroshot_top1": zero_shot,
                "text_to_image_R@1": 100.0 * float((sims.argmax(1) == target).float().mean()),
                "image_to_text_R@1": 100.0 * float((sims.argmax(0) == target).float().mean()),
            }
    return {"metrics": out, "pairs": len(pairs), "test_images": len(test)}


def plot(path: Path, summary: dict[str, Any]) -> None:
    plot_side_by_side(
        path, summary,
        [("samples_per_s", "training samples/s (median)"), ("zeroshot_top1", "zero-shot top-1 %"),
         ("text_to_image_R@1", "text->image R@1 %")],
        [("peer", "HF Trainer + VisionTextDualEncoder"), ("ours", "hfcontrast")],
    )  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("train", "eval"))
    parser.add_argument("--lib", choices=("ours", "peer"))
    parser.add_argument("--export")
    parser.add_argument("--paths", nargs="*")
    parser.add_argument("--result")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps at the start")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch (per device: / processes)")
    parser.add_argument("--seed", type=int, default=42, help="a worker's seed")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="one pair of runs per seed (fixed in advance: the verdict's interval is over them)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (0: torch default; default: 1 with --quick, else 0)",
    )
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--test-samples", type=int, default=None)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2], help="1 and/or 2")
    a = parser.parse_args()
    if a.threads is None:  # one thread per run on a shared 2-core machine: no spin-wait oversubscription
        a.threads = 1 if a.quick else 0
    if a.worker == "train":
        return write_result(a.result, train_worker(a))
    if a.worker == "eval":
        return write_result(a.result, eval_worker(a))

    apply_smoke(
        a, steps=2, warmup=1, batch_size=8, train_samples=32, test_samples=40, processes=[1], seeds=[42]
    )
    a.steps = a.steps or (48 if a.quick else 200)  # enough steps for zero-shot to move well off chance
    a.warmup = a.warmup or (4 if a.quick else 10)
    a.train_samples = a.train_samples or (a.steps * a.batch_size if a.quick else 60000)
    a.test_samples = a.test_samples or (2000 if a.quick else 10000)
    quiet = wait_until_quiet(a.wait_quiet) if a.wait_quiet else None
    accelerate = str(Path(sys.executable).parent / "accelerate")
    runs: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_clip_"))
    try:
        with LoadSampler() as load:
            for processes in a.processes:
                launcher = None
                env = {}
                if processes > 1:
                    launcher = [
                        accelerate,
                        "launch",
                        "--multi_gpu",
                        "--num_processes",
                        str(processes),
                        "--num_machines",
                        "1",
                        "--mixed_precision",
                        "no",
                        "--dynamo_backend",
                        "no",
                    ]
                    env = {"ACCELERATE_USE_CPU": "1"}
                threads = a.threads or (1 if processes > 1 else 0)
                for rep, seed in enumerate(a.seeds):
                    for lib in ("peer", "ours") if rep % 2 == 0 else ("ours", "peer"):
                        export = tmp / f"{lib}-{processes}p-{seed}"
                        argv = [__file__, "--worker", "train", "--lib", lib, "--export", str(export)]
                        for flag, value in (
                            ("steps", a.steps),
                            ("warmup", a.warmup),
                            ("batch-size", a.batch_size),
                            ("seed", seed),
                            ("threads", threads),
                            ("train-samples", a.train_samples),
                        ):
                            argv += [f"--{flag}", str(value)]
                        run = run_worker(argv, launcher=launcher, env=env)
                        run.update(processes=processes, seed=seed, export=str(export))
                        runs.append(run)
                        print(
                            f"[{processes} proc seed {seed} {lib:4s}] {run['samples_per_s']:.1f} samples/s, "
                            f"rss {run['peak_rss_mb']:.0f} MiB, loss {run['train_loss']:.3f}",
                            flush=True,
                        )
        scored = run_worker(
            [
                __file__,
                "--worker",
                "eval",
                "--test-samples",
                str(a.test_samples),
                "--threads",
                str(a.threads),
                "--paths",
                *[r["export"] for r in runs],
            ]
        )
        for run in runs:
            run.update(scored["metrics"][run.pop("export")])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    keys = (
        "samples_per_s",
        "samples_per_cpu_s",
        "peak_rss_mb",
        "zeroshot_top1",
        "text_to_image_R@1",
        "image_to_text_R@1",
    )
    summary: dict[str, Any] = {}
    rows = []
    for processes in a.processes:
        name = f"{processes} process" + ("es" if processes > 1 else "")
        entry: dict[str, Any] = {}
        for lib in ("peer", "ours"):
            mine = [r for r in runs if r["processes"] == processes and r["lib"] == lib]
            entry[lib] = {k: median(r[k] for r in mine) for k in keys}
        entry["throughput_ratio"] = ratio(entry["ours"]["samples_per_s"], entry["peer"]["samples_per_s"])
        entry["zeroshot_delta"] = entry["ours"]["zeroshot_top1"] - entry["peer"]["zeroshot_top1"]
        pairs = [[next(r for r in runs if (r["processes"], r["seed"], r["lib"]) == (processes, seed, lib)) for lib in ("peer", "ours")]
                 for seed in a.seeds]  # fmt: skip
        # The target is the throughput; zero-shot is reported with its interval (no target: -inf).
        entry.update(
            interval_verdicts(
                pairs, "samples_per_s", "zeroshot_top1", TARGET_THROUGHPUT, TARGET_ZEROSHOT_DELTA, "zeroshot_delta"
            )
        )
        entry["negatives_per_row"] = {"peer": a.batch_size // processes, "ours": a.batch_size}
        summary[name] = entry
        rows.append(
            [
                name,
                entry["peer"]["samples_per_s"],
                entry["ours"]["samples_per_s"],
                interval_text(entry, "throughput_ratio"),
                entry["peer"]["zeroshot_top1"],
                entry["ours"]["zeroshot_top1"],
                entry["peer"]["text_to_image_R@1"],
                entry["ours"]["text_to_image_R@1"],
                entry["peer"]["image_to_text_R@1"],
                entry["ours"]["image_to_text_R@1"],
                f"{a.batch_size // processes} / {a.batch_size}",
                entry["target"],
            ]
        )
    info = machine_info()
    info.update(load.summary())
    if quiet:
        info["wait_quiet"] = quiet
    settings = {
        k: getattr(a, k)
        for k in (
            "quick",
            "steps",
            "warmup",
            "batch_size",
            "seed",
            "threads",
            "train_samples",
            "test_samples",
            "processes",
        )
    }
    settings.update(seeds=a.seeds, retrieval_pairs=scored["pairs"])
    payload = {
        "name": NAME,
        "machine": info,
        "settings": settings,
        "summary": summary,
        "runs": runs,
        "targets": {"throughput_ratio": TARGET_THROUGHPUT, "zeroshot_delta_points": TARGET_ZEROSHOT_DELTA},
    }
    save_results(a.results_dir, NAME, payload)
    plot(Path(a.results_dir) / f"{NAME}.png", summary)
    print(
        f"\nload average (1 min) during the runs: {info['load1_min']:.2f} .. {info['load1_max']:.2f}; "
        f"zero-shot on {scored['test_images']} test images, R@1 on {scored['pairs']} pairs"
    )
    print(
        f"{NAME}: global batch {a.batch_size}, {a.steps} steps; target samples/s >= {TARGET_THROUGHPUT}x the "
        f"HF dual encoder (gathered negatives on) at zero-shot delta >= {TARGET_ZEROSHOT_DELTA} points"
    )
    print(
        format_table(
            [
                "run",
                "HF samples/s",
                "ours samples/s",
                "ratio",
                "HF zero-shot",
                "ours zero-shot",
                "HF t2i R@1",
                "ours t2i R@1",
                "HF i2t R@1",
                "ours i2t R@1",
                "negatives HF / ours",
                "target",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
