"""SimCLR / MoCo v2 / MoCo v3 / BYOL / SimSiam against naive formulas; state updates (trainer runs: test_trainer_image.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hfcontrast import ContrastiveEncoderOutput, ContrastiveVisionModel
from hfcontrast.distributed import Gathered
from hfcontrast.objectives import BYOL, MoCo, SimCLR, SimSiam
from hfcontrast.objectives import moco as moco_module
from hfcontrast.objectives import simclr as simclr_module
from tests.tiny import vision_config

DIM_IN, DIM = 5, 4


class Toy(nn.Module):
    """Linear encoder with the model interface: ``forward(pixel_values).embeddings``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(DIM_IN, DIM).double()
        self.train_embedding_dim = DIM  # the Encoder protocol

    def forward(self, pixel_values: Tensor, use_head: bool = True) -> ContrastiveEncoderOutput:
        return ContrastiveEncoderOutput(embeddings=self.linear(pixel_values))


def rand(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def views(n: int = 5, seed: int = 0) -> dict[str, Any]:
    return {
        "query": {"pixel_values": rand(n, DIM_IN, seed=seed)},
        "key": {"pixel_values": rand(n, DIM_IN, seed=seed + 1)},
    }


def cos(a: Tensor, b: Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


# ----------------------------------------------------------------------------- SimCLR
def naive_nt_xent(q: Tensor, k: Tensor, tau: float) -> float:
    z, n = torch.cat([q, k]), q.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = i + n if i < n else i - n
        denominator = sum(math.exp(cos(z[i], z[j]) / tau) for j in range(2 * n) if j != i)
        total += -math.log(math.exp(cos(z[i], z[pos]) / tau) / denominator)
    return total / (2 * n)


def test_simclr_matches_naive_loop() -> None:
    q, k = rand(5, 3, seed=1), rand(5, 3, seed=2)
    out = SimCLR(temperature=0.3)({"query": q, "key": k}, {})
    assert out.loss.item() == pytest.approx(naive_nt_xent(q, k, 0.3), rel=1e-10)
    assert set(out.stats) >= {"top1", "alignment", "uniformity", "temperature", "negatives"}
    assert out.stats["negatives"].item() == 8
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(temperature=0.0)


def test_simclr_sharded_equals_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each simulated rank's local rows against the gathered columns; the mean is the global loss."""
    world, n = 3, 2
    q, k = rand(world * n, 3, seed=3).requires_grad_(), rand(world * n, 3, seed=4).requires_grad_()
    single = SimCLR(temperature=0.2)({"query": q, "key": k}, {}).loss
    expected_grads = torch.autograd.grad(single, (q, k))
    losses = []
    for rank in range(world):
        gathered = iter([(q, rank * n), (k, rank * n)])
        monkeypatch.setattr(simclr_module, "gather", lambda t, enabled=True, it=gathered: Gathered(*next(it), t.shape[0]))
        rows = slice(rank * n, (rank + 1) * n)
        losses.append(SimCLR(temperature=0.2)({"query": q[rows], "key": k[rows]}, {}).loss)
    mean = torch.stack(losses).mean()
    torch.testing.assert_close(mean, single)
    for got, want in zip(torch.autograd.grad(mean, (q, k)), expected_grads):
        torch.testing.assert_close(got, want)


def _simclr_worker(rank: int, world: int, folder: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
    q, k = rand(world * 3, 4, seed=5), rand(world * 3, 4, seed=6)
    rows = slice(rank * 3, (rank + 1) * 3)
    local_q, local_k = q[rows].clone().requires_grad_(), k[rows].clone().requires_grad_()
    loss = SimCLR(temperature=0.5)({"query": local_q, "key": local_k}, {}).loss
    loss.backward()
    torch.save({"loss": loss.detach(), "q": local_q.grad, "k": local_k.grad}, f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.distributed
def test_simclr_gloo_two_processes_match_single(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_simclr_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    q, k = rand(6, 4, seed=5).requires_grad_(), rand(6, 4, seed=6).requires_grad_()
    single = SimCLR(temperature=0.5)({"query": q, "key": k}, {}).loss
    single.backward()
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.testing.assert_close(torch.stack([r["loss"] for r in results]).mean(), single.detach())
    # Gather's backward sums every rank's loss gradient; DDP's 1/world average restores the global mean.
    for rank, result in enumerate(results):
        rows = slice(rank * 3, (rank + 1) * 3)
        torch.testing.assert_close(result["q"] / 2, q.grad[rows])
        torch.testing.assert_close(result["k"] / 2, k.grad[rows])


# ----------------------------------------------------------------------------- MoCo v2
def test_moco_v2_matches_naive_formula_with_queue() -> None:
    toy = Toy()
    moco = MoCo(toy, queue_size=6, temperature=0.2)
    assert moco.online_views == ("query", "mixed") and moco.trainable_parameters() == []
    queue = rand(4, DIM, seed=7)
    moco.keys.queue.enqueue(queue)  # type: ignore[union-attr]
    batch = views()
    q = rand(5, DIM, seed=8)
    out = moco({"query": q}, batch)
    k = toy(**batch["key"]).embeddings.detach()
    expected = 0.0
    for i in range(5):
        logits = [cos(q[i], k[i]) / 0.2] + [cos(q[i], queue[j]) / 0.2 for j in range(4)]
        expected += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    assert out.loss.item() == pytest.approx(expected / 5, rel=1e-6)  # queue is stored in fp32
    assert out.stats["negatives"].item() == 4 and out.stats["momentum"].item() == pytest.approx(0.999)
    moco.after_optimizer_step(toy, 1, 10)
    # 4 queued + 5 new keys in 6 slots: k0, k1 fill slots 4, 5, then k2..k4 overwrite slots 0..2.
    expected_slots = torch.cat([k[2:], queue[3:], k[:2]]).float()
    torch.testing.assert_close(moco.keys.queue.get(), expected_slots)  # type: ignore[union-attr]


def test_moco_v2_first_step_without_queue_and_eval_does_not_stage() -> None:
    toy = Toy()
    moco = MoCo(toy, queue_size=8)
    out = moco({"query": rand(3, DIM, seed=9)}, views(3))
    assert out.loss.item() == 0.0  # only the positive: the empty queue is masked, never random
    moco.after_optimizer_step(toy, 1, 10)
    assert len(moco.keys) == 3  # type: ignore[arg-type]
    moco.eval()
    moco({"query": rand(3, DIM, seed=9)}, views(3))
    moco.after_optimizer_step(toy, 2, 10)
    assert len(moco.keys) == 3  # type: ignore[arg-type]


def test_moco_v2_queue_holds_staged_keys_in_slot_order() -> None:
    toy = Toy()
    moco = MoCo(toy, queue_size=5, momentum=1.0)
    staged = []
    for step in range(3):
        batch = views(2, seed=10 + step)
        moco({"query": rand(2, DIM, seed=step)}, batch)
        staged.append(toy(**batch["key"]).embeddings.detach().float())
        moco.after_optimizer_step(toy, step + 1, 3)
    keys = torch.cat(staged)  # 6 keys into 5 slots: key 5 overwrote slot 0, ptr = 1
    expected = torch.cat([keys[5:6], keys[1:5]])
    torch.testing.assert_close(moco.keys.queue.get(), expected)  # type: ignore[union-attr]
    assert int(moco.keys.queue.ptr) == 1  # type: ignore[union-attr]


def test_moco_v2_masks_queued_keys_of_the_same_image() -> None:
    toy = Toy()
    moco = MoCo(toy, queue_size=4, temperature=0.5, mask_duplicate_ids=True)
    queue = rand(3, DIM, seed=11)
    moco.keys.queue.enqueue(queue, torch.tensor([7, 1, 2]))  # type: ignore[union-attr]
    batch = {**views(2), "ids": torch.tensor([1, 5])}
    q = rand(2, DIM, seed=12)
    out = moco({"query": q}, batch)
    k = toy(**batch["key"]).embeddings.detach()
    negatives = [[0, 2], [0, 1, 2]]  # query 0 is image 1: queue slot 1 is its own earlier key
    expected = 0.0
    for i in range(2):
        logits = [cos(q[i], k[i]) / 0.5] + [cos(q[i], queue[j]) / 0.5 for j in negatives[i]]
        expected += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    assert out.loss.item() == pytest.approx(expected / 2, rel=1e-6)
    with pytest.raises(ValueError, match="ids"):
        moco({"query": q}, views(2))


# ----------------------------------------------------------------------------- momentum
def _manual_ema_check(
    objective: nn.Module, target: nn.Module, online: Toy, base: float, final: float
) -> None:
    expected = {name: p.detach().clone() for name, p in target.named_parameters()}
    for step in range(1, 5):
        with torch.no_grad():
            for p in online.parameters():
                p.add_(rand(*p.shape, seed=step))  # an "optimizer step"
        objective.after_optimizer_step(online, step, 4)  # type: ignore[operator]
        m = final - (final - base) * (math.cos(math.pi * step / 4) + 1) / 2
        for name, p in online.named_parameters():
            expected[name] = m * expected[name] + (1 - m) * p.detach()
    for name, p in target.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=1e-12)
    assert not any(p.requires_grad for p in target.parameters())


def test_momentum_encoders_follow_manual_ema() -> None:
    online = Toy()
    moco = MoCo(online, version="v3", predictor_hidden_dim=8)
    _manual_ema_check(moco, moco.key_encoder.encoder, online, 0.99, 1.0)
    assert float(moco.key_encoder.current_momentum) == pytest.approx(1.0)
    online = Toy()
    byol = BYOL(online, predictor_hidden_dim=8, momentum=0.9, final_momentum=0.99)
    _manual_ema_check(byol, byol.target_encoder.encoder, online, 0.9, 0.99)
    online = Toy()
    moco2 = MoCo(online, queue_size=4, momentum=0.7, final_momentum=0.7)
    _manual_ema_check(moco2, moco2.key_encoder.encoder, online, 0.7, 0.7)


# ----------------------------------------------------------------------------- MoCo v3
def naive_ctr(q: Tensor, k: Tensor, tau: float) -> float:
    total = 0.0
    for i in range(q.shape[0]):
        logits = [cos(q[i], k[j]) / tau for j in range(k.shape[0])]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return total / q.shape[0]


def test_moco_v3_matches_naive_formula() -> None:
    toy = Toy()
    moco = MoCo(toy, version="v3", temperature=0.3, predictor_hidden_dim=8).double()
    assert moco.online_views == ("query", "key") and moco.keys is None
    assert {id(p) for p in moco.trainable_parameters()} == {id(p) for p in moco.predictor.parameters()}  # type: ignore[union-attr]
    z1, z2 = rand(5, DIM, seed=13).requires_grad_(), rand(5, DIM, seed=14).requires_grad_()
    batch = views()
    out = moco({"query": z1, "key": z2}, batch)
    with torch.no_grad():
        p1, p2 = moco.predictor(torch.cat([z1, z2])).split(5)  # type: ignore[misc]
        k1, k2 = toy(**batch["query"]).embeddings, toy(**batch["key"]).embeddings
    expected = 2 * 0.3 * (naive_ctr(p1, k2, 0.3) + naive_ctr(p2, k1, 0.3))
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)
    out.loss.backward()
    assert all(p.grad is not None for p in moco.predictor.parameters())  # type: ignore[union-attr]
    assert all(p.grad is None for p in moco.key_encoder.parameters())
    with pytest.raises(ValueError, match="no queue"):
        MoCo(toy, version="v3", queue_size=16)


def test_moco_v3_sharded_equals_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = Toy()
    moco = (
        MoCo(toy, version="v3", predictor_hidden_dim=8).double().eval()
    )  # eval: BN independent of the shard
    world, n = 2, 3
    z1, z2 = rand(world * n, DIM, seed=15), rand(world * n, DIM, seed=16)
    batch = views(world * n)
    single = moco({"query": z1, "key": z2}, batch).loss
    with torch.no_grad():
        k1, k2 = toy(**batch["query"]).embeddings, toy(**batch["key"]).embeddings
    losses = []
    for rank in range(world):
        gathered = iter([(k2, rank * n), (k1, rank * n)])
        monkeypatch.setattr(moco_module, "gather", lambda t, enabled=True, it=gathered: Gathered(*next(it), t.shape[0]))
        rows = slice(rank * n, (rank + 1) * n)
        local = {name: {"pixel_values": view["pixel_values"][rows]} for name, view in batch.items()}
        losses.append(moco({"query": z1[rows], "key": z2[rows]}, local).loss)
    torch.testing.assert_close(torch.stack(losses).mean(), single)


# ----------------------------------------------------------------------------- BYOL / SimSiam
def test_byol_matches_formula_and_stops_gradient_to_target() -> None:
    toy = Toy()
    byol = BYOL(toy, predictor_hidden_dim=8).double()
    assert {id(p) for p in byol.trainable_parameters()} == {id(p) for p in byol.predictor.parameters()}
    z1, z2 = rand(4, DIM, seed=17).requires_grad_(), rand(4, DIM, seed=18).requires_grad_()
    batch = views(4)
    out = byol({"query": z1, "key": z2}, batch)
    with torch.no_grad():
        p1, p2 = byol.predictor(torch.cat([z1, z2])).split(4)
        t1, t2 = toy(**batch["query"]).embeddings, toy(**batch["key"]).embeddings
    expected = (
        sum(2 - 2 * cos(p1[i], t2[i]) for i in range(4)) / 4
        + sum(2 - 2 * cos(p2[i], t1[i]) for i in range(4)) / 4
    )
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)
    assert "momentum" in out.stats and "alignment" in out.stats
    out.loss.backward()
    assert z1.grad is not None and byol.predictor[0].weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in byol.target_encoder.parameters())


def test_simsiam_matches_formula_and_stop_gradient() -> None:
    simsiam = SimSiam(DIM, predictor_hidden_dim=3).double()
    z1, z2 = rand(6, DIM, seed=19).requires_grad_(), rand(6, DIM, seed=20).requires_grad_()
    out = simsiam({"query": z1, "key": z2}, {})
    grads = torch.autograd.grad(out.loss, (z1, z2))
    p1, p2 = simsiam.predictor(torch.cat([z1, z2])).split(6)
    expected = -0.5 * (
        F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    for got, want in zip(grads, torch.autograd.grad(expected, (z1, z2), retain_graph=True)):
        torch.testing.assert_close(got, want)  # gradient reaches z only through the predictor branch
    without_stop = -0.5 * (F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean())
    assert not torch.allclose(grads[0], torch.autograd.grad(without_stop, z1)[0])
    assert {id(p) for p in simsiam.trainable_parameters()} == {id(p) for p in simsiam.predictor.parameters()}
    assert out.stats["collapse_std"].item() > 0


def test_predictor_width_comes_from_encoder_or_argument() -> None:
    assert SimSiam(encoder=Toy()).predictor[0].in_features == DIM
    model = ContrastiveVisionModel(vision_config())
    assert BYOL(model, predictor_hidden_dim=8).predictor[0].in_features == 8
    with pytest.raises(ValueError, match="embedding_dim"):
        SimSiam().bind()  # bound to no model: the width is unknown
    with pytest.raises(ValueError, match="embedding_dim"):
        SimSiam().bind(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="embedding_dim"):
        BYOL(nn.Linear(2, 2))
