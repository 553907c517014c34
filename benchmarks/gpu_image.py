"""SimCLR and MoCo v2 images per second on one CUDA GPU, with the image recipes' defaults.

    python benchmarks/gpu_image.py            # on a CUDA machine: ~3 min on one H100/H200
    python benchmarks/gpu_image.py --smoke    # anywhere: 2 steps on the CPU

The recipes' model and step (``recipes/simclr.py``, ``recipes/moco.py``): the demo ResNet
(``hfcontrast.demo.demo_backbone_config("resnet")``), 28 px views of each paper's augmentation, batch 128,
AdamW; bf16 on the GPU, the views drawn by Pillow in 8 dataloader workers (as the recipes do on a GPU) or on the
device (``--augmentation-device cuda``, kornia). The images are random 28 px pictures made here: the work per
image does not depend on what it shows, and the GPU machine needs no data set. Each run is its own process;
throughput counts the steps after the warm-up, the device synchronised at both ends.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import apply_smoke, base_parser, format_table, machine_info, median, run_worker, save_results
from gpu_text import _Timed

NAME = "gpu_image"
TARGET_SIMCLR = 8000.0  # images/s on one H100/H200


def worker(a: Any) -> dict[str, Any]:
    import datasets
    import numpy as np
    import torch
    from PIL import Image
    from transformers import ConvNextImageProcessorPil

    from hfcontrast import (
        ContrastiveTrainer,
        ContrastiveTrainingArguments,
        ContrastiveVisionConfig,
        ContrastiveVisionModel,
    )
    from hfcontrast.demo import demo_backbone_config
    from hfcontrast.objectives import MoCo, SimCLR

    cuda = torch.cuda.is_available()
    steps = a.warmup + a.steps
    rng = np.random.default_rng(0)
    rows = [Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)) for _ in range(min(a.batch * steps, 8192))]
    data = datasets.Dataset.from_dict({"image": rows})
    while len(data) < a.batch * steps:
        data = datasets.concatenate_datasets([data, data])
    torch.manual_seed(0)
    model = ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=demo_backbone_config("resnet")))
    objective = SimCLR(0.1) if a.method == "simclr" else MoCo(queue_size=4096)
    timed = _Timed(a.warmup, steps)
    workers = min(8, os.cpu_count() or 1) if cuda else 0
    with tempfile.TemporaryDirectory() as folder:
        args = ContrastiveTrainingArguments(
            output_dir=folder, per_device_train_batch_size=a.batch, max_steps=steps, learning_rate=1e-3, bf16=cuda,
            use_cpu=not cuda, logging_steps=1000, save_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_drop_last=True, dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0,
            dataloader_pin_memory=cuda, channels_last=a.channels_last, seed=0,
        )  # fmt: skip
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 28}, crop_pct=1.0)  # the recipes' 28 px views
        trainer = ContrastiveTrainer(model=model, args=args, objective=objective, train_dataset=data, processing_class=processor,
                                     callbacks=[timed.callback])  # fmt: skip
        trainer.train()
    seconds = timed.end - timed.start
    return {"method": a.method, "batch": a.batch, "channels_last": a.channels_last, "images_per_s": a.steps * a.batch / seconds,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__}  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--method", choices=("simclr", "mocov2"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--result")
    a = parser.parse_args()
    if a.worker:
        Path(a.result).write_text(json.dumps(worker(a)))
        return
    smoke = apply_smoke(a, warmup=1, steps=1, batch=8, reps=1)
    reps = a.reps or 2
    runs = []
    for method in ("simclr", "mocov2"):
        for layout in ([False] if smoke else [False, True]):
            for _ in range(reps):
                argv = [__file__, "--worker", "--method", method, "--batch", str(a.batch), "--warmup", str(a.warmup),
                        "--steps", str(a.steps), *(["--channels-last"] if layout else [])]  # fmt: skip
                runs.append(run_worker(argv))
                print(f"[{method} channels_last={layout}] {runs[-1]['images_per_s']:.0f} images/s", flush=True)
    rows, summary = [], {}
    for method in ("simclr", "mocov2"):
        for layout in (False, True):
            mine = [r for r in runs if r["method"] == method and r["channels_last"] == layout]
            if mine:
                speed = median(r["images_per_s"] for r in mine)
                summary[f"{method}{'-channels-last' if layout else ''}"] = speed
                rows.append([method, layout, speed, TARGET_SIMCLR if method == "simclr" else "-"])
    print(format_table(["method", "channels_last", "images/s", "target"], rows))
    info = machine_info() | {"device": runs[0]["device"] if runs else None}
    save_results(Path(a.results_dir), NAME, {"name": NAME, "machine": info, "runs": runs, "summary": summary, "reps": reps})


if __name__ == "__main__":
    main()
