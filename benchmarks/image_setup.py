"""Shared set-up of benchmarks/image_vs_lightly.py: the backbone, head, augmentation strengths and helpers
that both workers (ours here, lightly in its own venv) build identically."""

from __future__ import annotations

import os
import time
from typing import Any

IMAGE_SIZE = 28
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESNET = {
    "num_channels": 3,
    "embedding_size": 32,
    "hidden_sizes": [32, 64, 128, 256],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
    "downsample_in_first_stage": False,
}
METHODS = {
    # crop min scale, jitter strength (x 0.8/0.8/0.8/0.2), temperature
    "simclr": {"min_scale": 0.08, "jitter": 1.0, "temperature": 0.5},
    "moco": {"min_scale": 0.2, "jitter": 0.5, "temperature": 0.2},
}
MOCO_MOMENTUM, QUEUE = 0.99, 4096


# ----------------------------------------------------------------------------- shared pieces
def build_backbone() -> Any:
    from transformers import ResNetConfig, ResNetModel

    return ResNetModel(ResNetConfig(**RESNET))


def build_head() -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Linear(256, 128))


def calibrate(threads: int) -> float:
    """Median seconds of a fixed forward+backward of the backbone on random input (torch build check)."""
    import torch

    torch.manual_seed(0)
    net = build_backbone()
    x = torch.randn(128, 3, IMAGE_SIZE, IMAGE_SIZE)
    times = []
    for i in range(6):
        start = time.perf_counter()
        net(pixel_values=x).pooler_output.sum().backward()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def load_init(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shared initial weights: ``(backbone_state, head_state)`` (head keys ``0.*``, ``1.*``, ``3.*``)."""
    from safetensors.torch import load_file

    state = load_file(path)
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    head = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
    return backbone, head


def embed_eval_arrays(encode: Any, folder: str, prefix: str) -> None:
    """Backbone features of the pre-processed ``bank.npy`` / ``test.npy`` images -> ``{prefix}_bank.npy`` ..."""
    import numpy as np
    import torch

    for split in ("bank", "test"):
        images = np.load(os.path.join(folder, f"{split}.npy"), mmap_mode="r")
        chunks = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], 512):
                chunks.append(encode(torch.from_numpy(np.array(images[start : start + 512]))))
        np.save(os.path.join(folder, f"{prefix}_{split}.npy"), torch.cat(chunks).float().numpy())


def peer_loader(transform: Any, a: Any) -> Any:
    """The peers' documented data path: the training images (``train_images.npy`` in ``a.eval_dir``, the first
    ``a.train_samples``) through ``transform`` in a shuffled, seeded ``DataLoader``."""
    import numpy as np
    import torch
    from PIL import Image

    images = np.load(os.path.join(a.eval_dir, "train_images.npy"))[: a.train_samples]

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> Any:
            return transform(Image.fromarray(images[i], mode="L").convert("RGB"))

    return torch.utils.data.DataLoader(
        Images(), batch_size=a.batch_size, shuffle=True, drop_last=True, num_workers=a.num_workers,
        generator=torch.Generator().manual_seed(a.seed),
    )  # fmt: skip


def plain_loop(loader: Any, optimizer: Any, steps: int, loss_of: Any) -> tuple[Any, list[float]]:
    """A plain PyTorch loop over ``loader`` (re-iterated until ``steps``): ``loss_of(views, step)``, backward,
    optimizer step, zero grad, a timer mark per step. Returns ``(timer, losses)``."""
    from common import LoopTimer

    timer, step, losses = LoopTimer(), 0, []
    while step < steps:
        for views in loader:
            loss = loss_of(views, step)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
            timer.mark()
            step += 1
            if step >= steps:
                break
    return timer, losses


# ----------------------------------------------------------------------------- our side (hfcontrast's venv)
def our_resnet_model(init: str, head: str) -> Any:
    """Our encoder of the shared ResNet, its projection (``head="mlp"``, the shared head) or none (``"none"``), loaded
    with the shared initial weights."""
    from transformers import ResNetConfig

    from hfcontrast import ContrastiveVisionConfig, ContrastiveVisionModel

    config = ContrastiveVisionConfig(backbone_config=ResNetConfig(**RESNET), projection=head, projection_dim=128,
                                     projection_hidden_dim=256)  # fmt: skip
    model = ContrastiveVisionModel(config)
    backbone, projection = load_init(init)
    model.backbone.load_state_dict(backbone)
    if model.projection is not None:
        model.projection.layers.load_state_dict(projection)
    return model


def train_ours(a: Any, model: Any, objective: Any, collator: Any, calib: float, logging_steps: int = 10) -> dict[str, Any]:
    """``ContrastiveTrainer`` on the Fashion-MNIST rows at the settings both libraries share (constant learning rate,
    no decay or clipping, dropped last batch), timed per step; the evaluation embeddings go to ``a.eval_dir``."""
    import tempfile

    import torch
    from common import LoopTimer, peak_rss_mb, step_timer_callback

    from hfcontrast.demo.fashion_mnist import load_fashion_mnist
    from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = ContrastiveTrainer(
            model=model, objective=objective, train_dataset=load_fashion_mnist("train", max_samples=a.train_samples),
            args=ContrastiveTrainingArguments(
                output_dir=scratch, per_device_train_batch_size=a.batch_size, learning_rate=a.lr, max_steps=a.steps,
                seed=a.seed, data_seed=a.seed, lr_scheduler_type="constant", weight_decay=0.0, warmup_steps=0,
                logging_steps=logging_steps, save_strategy="no", report_to="none", disable_tqdm=True,
                dataloader_drop_last=True, dataloader_num_workers=a.num_workers, use_cpu=True, max_grad_norm=0.0,
            ),
            data_collator=collator, callbacks=[step_timer_callback(timer)],
        )  # fmt: skip
        result = trainer.train()
    rss = peak_rss_mb()
    model.eval()
    embed_eval_arrays(lambda x: model(pixel_values=x).pooled, a.eval_dir, a.prefix)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"lib": "ours", "peak_rss_mb": rss, "train_loss": float(result.training_loss), "calib_s": calib,
            "torch": torch.__version__, "losses": losses, **timer.throughput(a.warmup, a.batch_size)}  # fmt: skip
