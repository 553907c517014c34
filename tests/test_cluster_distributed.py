"""SwAV (multi-crop, queue), DINO (multi-crop), NNCLR, PCL, MoCo v3, BYOL and SimSiam (predictors without
BatchNorm), Barlow Twins and VICReg (global-batch statistics: the gradient is not 1/world_size of one process's, as
lightly's was, lightly#1528), KCL, BCL and SelfCon (the global batch's classes, an exit's projector), CPC (every process's patches as negatives): 2 processes (``accelerate launch``, local batch 4, 2 accumulation steps) equal one process over
the concatenated batch (8): losses, gradients, weights and objective state (prototypes, queues, DINO centre
and teacher, support queue, PCL clusters, momentum encoders, predictors, KCL's step, BCL's class centres)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.launch import REPO_ROOT, accelerate_launch, assert_same_run, run_python

SCRIPT = REPO_ROOT / "tests" / "distributed" / "cluster_parity.py"
pytestmark = pytest.mark.distributed


def test_two_processes_equal_one_process_over_the_global_batch(tmp_path: Path) -> None:
    accelerate_launch(SCRIPT, "--out", str(tmp_path / "ddp"), "--batch", "4")
    run_python(SCRIPT, "--out", str(tmp_path / "single"), "--batch", "8")
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in range(2)]
    single = torch.load(tmp_path / "single" / "rank0.pt")
    for name in ("swav", "dino", "nnclr", "pcl", "mocov3", "byol", "simsiam", "barlowtwins", "vicreg", "kcl", "bcl",
                 "selfcon", "cpc"):  # 3 steps
        assert_same_run([dump[name] for dump in ranks], single[name], name, steps=3, loss_rel=1e-9, rel=1e-8, atol=1e-11,
                        global_loss=name in ("barlowtwins", "vicreg", "kcl", "bcl", "selfcon"))  # fmt: skip
    state = single["pcl"]["objective"]
    assert int(state["clustered_at"]) == 2 and bool((state["assignments"] >= 0).all())
    assert int(single["swav"]["objective"]["queue_0.queue.filled"]) == 8
    assert int(single["nnclr"]["objective"]["support.queue.filled"]) == 8
    assert int(single["kcl"]["objective"]["step"]) == 3 and bool(single["bcl"]["objective"]["seen"].all())
