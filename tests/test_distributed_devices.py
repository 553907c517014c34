"""Device discipline for NCCL, checked on a CPU: no CPU tensor reaches a collective, every stat lives
on the embeddings' device.

NCCL refuses CPU tensors while gloo (the CPU tests' backend) takes any, so a 2-process CPU test cannot
see a statistic created on the CPU. Here ``torch.distributed`` reports an NCCL group of 2 and records
the device of every tensor handed to a collective; the "accelerator" is the ``meta`` device, which a
CPU machine has and which no CPU tensor is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn

from hfcontrast import ContrastiveEncoderOutput
from hfcontrast.distributed import (
    all_reduce_mean,
    all_reduce_sum,
    broadcast_tensor,
    collective_device,
    equal_batches,
    gather_detached,
    gather_with_grad,
    groups,
)
from hfcontrast.objectives import BYOL, CLIP, DINO, NNCLR, PCL, MoCo, SimCLR, SimCSE, SimSiam, SwAV

META = torch.device("meta")


@pytest.fixture
def nccl_group(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[torch.device]]:
    """A fake 2-process NCCL group whose collectives record their tensors' devices (and do nothing)."""
    seen: list[torch.device] = []

    def record(*tensors: Any) -> None:
        for item in tensors:
            for tensor in item if isinstance(item, list) else [item]:
                seen.append(tensor.device)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, op=None, group=None, async_op=False: record(tensor))
    monkeypatch.setattr(dist, "all_gather", lambda outputs, tensor, group=None, async_op=False: record(outputs, tensor))
    monkeypatch.setattr(dist, "broadcast", lambda tensor, src=0, group=None, async_op=False: record(tensor))
    monkeypatch.setattr(groups, "_accelerator_device", lambda kind: META)
    yield seen


def test_collectives_move_cpu_tensors_to_the_nccl_device(nccl_group: list[torch.device]) -> None:
    assert collective_device(torch.zeros(1)) == META
    all_reduce_mean(torch.tensor(0.5))  # a logged statistic
    with equal_batches():  # the trainer's case: sizes known, no size exchange
        gathered, offset = gather_with_grad(torch.randn(3, 4, requires_grad=True))  # embeddings
        gather_detached(torch.arange(3))  # queue ids
    assert gathered.shape == (6, 4) and offset == 0
    assert len(nccl_group) == 1 + 2 * 3 and all(device == META for device in nccl_group), nccl_group
    nccl_group.clear()
    assert broadcast_tensor(torch.zeros(3)).device == META  # PCL's clusters, from the first process
    all_reduce_sum(torch.ones(2))  # SwAV's Sinkhorn sums, DINO's centre
    assert nccl_group == [META, META], nccl_group
    nccl_group.clear()
    with pytest.raises(RuntimeError, match="meta"):  # unequal sizes: the exchange reads them on the host
        gather_with_grad(torch.randn(3, 4))
    assert nccl_group and all(device == META for device in nccl_group), nccl_group


def test_gloo_keeps_tensors_where_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    for backend in ("gloo", "cpu:gloo,cuda:nccl"):
        monkeypatch.setattr(dist, "get_backend", lambda group=None, b=backend: b)
        assert collective_device(torch.zeros(1)) == torch.device("cpu")


class Toy(nn.Module):
    """A linear encoder with the hfcontrast interface, for every family's views."""

    def __init__(self, dim_in: int = 6, dim: int = 4) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.train_embedding_dim = dim  # the Encoder protocol

    def forward(
        self, pixel_values: Tensor | None = None, input_ids: Tensor | None = None, use_head: bool = True
    ) -> ContrastiveEncoderOutput:
        inputs = pixel_values if pixel_values is not None else input_ids
        assert inputs is not None
        return ContrastiveEncoderOutput(embeddings=self.linear(inputs))


def _views(names: tuple[str, ...], key: str, n: int = 4) -> dict[str, Any]:
    return {name: {key: torch.randn(n, 6)} for name in names}


CASES = {
    "simcse+queue+momentum": (lambda m: SimCSE(queue_size=8, encoder=m, momentum=0.9), ("anchor", "positive"), "input_ids"),
    "simclr": (lambda m: SimCLR(), ("query", "key"), "pixel_values"),
    "mocov2": (lambda m: MoCo(m, queue_size=8), ("query", "key"), "pixel_values"),
    "mocov3": (lambda m: MoCo(m, version="v3", predictor_hidden_dim=8), ("query", "key"), "pixel_values"),
    "byol": (lambda m: BYOL(m, predictor_hidden_dim=8), ("query", "key"), "pixel_values"),
    "simsiam": (lambda m: SimSiam(encoder=m, predictor_hidden_dim=8), ("query", "key"), "pixel_values"),
    "clip+queue+momentum": (lambda m: CLIP(m, queue_size=8, momentum=0.9), ("image", "text"), "pixel_values"),
    "swav+queue": (lambda m: SwAV(m, num_prototypes=4, queue_size=4), ("query", "key"), "pixel_values"),
    "dino": (lambda m: DINO(m, out_dim=6, hidden_dim=8, bottleneck_dim=4), ("query", "key"), "pixel_values"),
    "nnclr": (lambda m: NNCLR(encoder=m, support_size=4, predictor_hidden_dim=8), ("query", "key"), "pixel_values"),
    "pcl": (lambda m: _clustered(PCL(m, num_rows=4, num_clusters=(2,), queue_size=8)), ("query", "key"), "pixel_values"),
}


def _clustered(pcl: PCL) -> PCL:
    pcl.set_clusters(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)), step=0)
    return pcl


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_stat_lives_on_the_embeddings_device(case: str) -> None:
    """Factory calls without ``device=`` land on the default device, here ``meta``: a stat that does not
    follow the embeddings (CPU) shows up, as it would on CUDA."""
    build, names, key = CASES[case]
    model = Toy()
    objective = build(model).train()
    batch = _views(names, key)
    batch["ids"] = torch.arange(4)  # rows' dataset indices (PCL looks its clusters up by them)
    for step in range(2):  # the second step sees a filled queue
        embeddings = {name: model(**view).embeddings for name, view in batch.items() if isinstance(view, dict)}
        with torch.device(META):
            output = objective(embeddings, batch)
        assert output.loss.device.type == "cpu"
        wrong = {name: value.device for name, value in output.stats.items() if value.device.type != "cpu"}
        assert not wrong, f"{case}: stats not on the embeddings' device: {wrong}"
        output.loss.backward()
        objective.after_optimizer_step(model, step, 10)
