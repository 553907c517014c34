"""GradCache under DDP: 2 gloo processes through ``accelerate launch`` equal one uncached process.

Each process holds half of every global micro-batch and embeds it in chunks of 3 rows (the last chunk
short); gradient accumulation 2. Text (SimCSE: hard negatives, symmetric, queue), image (SimCLR, ViT)
and image-text (CLIP: two towers, the temperature used outside ``forward``, queues). The losses, the
gradients after DDP's all-reduce, the final weights and the objectives' state must equal a single
process running the plain (uncached) step over the concatenated micro-batches, in float64.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.launch import REPO_ROOT, accelerate_launch, assert_same_run, run_python

SCRIPT = REPO_ROOT / "tests" / "distributed" / "gradcache_parity.py"
pytestmark = pytest.mark.distributed
FAMILIES = ("text", "image", "image_text")


def test_two_processes_equal_one_uncached_process(tmp_path: Path) -> None:
    """With GradCache (chunks of 3 rows; or text chunks of at most 20 tokens) and without it: DDP of every family
    against the same single process running the plain step. The three modes run in one launch, one after another."""
    accelerate_launch(SCRIPT, "--out", str(tmp_path / "ddp"), "--batch", "4", "--modes", "gradcache,tokens,plain", timeout=1200)
    run_python(SCRIPT, "--out", str(tmp_path / "single"), "--batch", "8", "--modes", "plain")
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in range(2)]
    single = torch.load(tmp_path / "single" / "rank0.pt")["plain"]
    for mode in ("gradcache", "tokens", "plain"):
        for family in FAMILIES:  # 4 micro-batches, 2 optimizer steps
            assert_same_run([dump[mode][family] for dump in ranks], single[family], f"{mode}: {family}", steps=2,
                            loss_rel=1e-12, rel=1e-9, atol=1e-12)  # fmt: skip
