"""``--sync_batchnorm`` under DDP on 2 GPUs: MoCo v3, BYOL and SimSiam keep their predictors' BatchNorm (made
torch's SyncBatchNorm), and 2 processes x 4 rows equal 1 GPU x 8 rows: losses, gradients, weights, momentum
encoders and predictors over 3 optimizer steps (``tests/distributed/cluster_parity.py --sync_batchnorm``).
Without sync the same comparison cannot hold: each process would normalise with its own 4 rows. Skipped
without 2 GPUs (torch's SyncBatchNorm has no CPU kernel); it has not yet run on these GPU-less machines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.launch import REPO_ROOT, accelerate_launch, assert_same_run, run_python

SCRIPT = REPO_ROOT / "tests" / "distributed" / "cluster_parity.py"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm parity needs 2 GPUs"),
]


def test_two_gpus_with_sync_batchnorm_equal_one_gpu_over_the_global_batch(tmp_path: Path) -> None:
    accelerate_launch(SCRIPT, "--out", str(tmp_path / "ddp"), "--batch", "4", "--sync_batchnorm", cpu=False)
    run_python(SCRIPT, "--out", str(tmp_path / "single"), "--batch", "8", "--sync_batchnorm", cpu=False)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", map_location="cpu") for r in range(2)]
    single = torch.load(tmp_path / "single" / "rank0.pt", map_location="cpu")
    for name in ("mocov3", "byol", "simsiam"):
        assert any("running_mean" in key for key in single[name]["objective"]), f"{name} lost its BatchNorm"
        assert_same_run([dump[name] for dump in ranks], single[name], name, steps=3, loss_rel=1e-7, rel=1e-6, atol=1e-9)
