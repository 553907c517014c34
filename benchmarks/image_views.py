"""Where image views are made: Pillow per image in the collator, or kornia per batch on the training device.

The image recipes draw their two views with Pillow in the dataloader workers by default, or with
``--augmentation_device cuda`` from raw images on the GPU (``hfcontrast.augment.device_views``). This
measures views per second of both on the same images and the same augmentation (the demos' "light"
and SimCLR's), on one CPU thread, on every CPU thread, and on CUDA when there is one, and prints the
ratio batched / Pillow.

    python benchmarks/image_views.py          # Fashion-MNIST when installed, else random 28x28 images
"""

from __future__ import annotations

import sys
import time

from common import apply_smoke, base_parser, format_table, machine_info, save_results, wait_until_quiet


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    apply_smoke(args, images=64, batch=32)
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    import numpy as np
    import torch
    from PIL import Image

    from hfcontrast.augment import view_pipelines
    from hfcontrast.augment.device_views import DeviceViews
    from hfcontrast.collators import MultiViewCollator, RawImageCollator
    from hfcontrast.demo.fashion_mnist import fashion_mnist_arrays, has_fashion_mnist

    count = args.images // 2 if args.quick else args.images
    if has_fashion_mnist():
        pixels = fashion_mnist_arrays("train", max_samples=count)[0]
    else:
        pixels = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    rows = [{"image": Image.fromarray(p).convert("RGB"), "row_index": i} for i, p in enumerate(pixels)]
    batches = [rows[i : i + args.batch] for i in range(0, len(rows) - args.batch + 1, args.batch)]
    table = []
    for kind in ("light", "simclr"):
        pipelines = view_pipelines(kind, 28, (0.286,), (0.353,))
        pillow = MultiViewCollator("image", pipeline=pipelines, seed=0, index_column="row_index")
        raw = RawImageCollator("image", 28)
        raws = [raw(batch) for batch in batches]
        views = DeviceViews(pipelines, seed=0)
        settings = [("Pillow, 1 thread", "cpu", 1), ("kornia, 1 thread", "cpu", 1), ("kornia, all threads", "cpu", None)]
        if torch.cuda.is_available():
            settings.append(("kornia, cuda", "cuda", None))
        result = {"augmentation": kind}
        threads = torch.get_num_threads()
        for label, device, n_threads in settings:
            torch.set_num_threads(n_threads or threads)
            start = time.perf_counter()
            for batch, raw_batch in zip(batches, raws):
                if label.startswith("Pillow"):
                    pillow(batch)
                else:
                    out = views({"images": {"pixel_values": raw_batch["images"]["pixel_values"].to(device)}}, step=0)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    del out
            result[label] = round(2 * len(batches) * args.batch / (time.perf_counter() - start), 1)
        torch.set_num_threads(threads)
        table.append(result)
    labels = [k for k in table[0] if k != "augmentation"]
    rows_out = [[r["augmentation"], *[r[k] for k in labels], round(r[labels[1]] / r[labels[0]], 2)] for r in table]
    print(format_table(["views / s", *labels, "kornia (1 thread) / Pillow"], rows_out))
    path = save_results(args.results_dir, "image_views", {"machine": machine_info(), "results": table})
    print(f"results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
