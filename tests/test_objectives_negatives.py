"""NegativeConfig on SimCSE, SimCLR, MoCo and CLIP, against naive float64 loops; collator ids/labels."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import HfArgumentParser

from hfcontrast import ContrastiveEncoderOutput
from hfcontrast.cli.flags import NegativeArguments
from hfcontrast.collators import TextPairCollator, UnsupervisedSimCSECollator
from hfcontrast.distributed import Gathered
from hfcontrast.losses import draw_mochi, info_nce, supcon_loss
from hfcontrast.objectives import CLIP, ChunkingConfig, MoCo, NegativeConfig, SimCLR, SimCSE
from hfcontrast.objectives import contrast as contrast_module
from hfcontrast.objectives import simclr as simclr_module

from .tiny import tokenizer

DIM = 4


def rand(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def cos(a: Tensor, b: Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


def naive(q: Tensor, cols: Tensor, tau: float, pos: list[set[int]], neg: list[set[int]]) -> float:
    """Mean over rows of -1/|P| sum_p log(e^{l_p} / sum_{a in P u N} e^{l_a}) (InfoNCE / SupCon L_out)."""
    total = 0.0
    for i, (p_set, n_set) in enumerate(zip(pos, neg)):
        logits = {j: cos(q[i], cols[j]) / tau for j in p_set | n_set}
        log_denominator = math.log(sum(math.exp(v) for v in logits.values()))
        total += sum(log_denominator - logits[p] for p in p_set) / len(p_set)
    return total / len(pos)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, DIM).double()
        self.train_embedding_dim = DIM

    def forward(self, pixel_values: Tensor, use_head: bool = True) -> ContrastiveEncoderOutput:
        return ContrastiveEncoderOutput(embeddings=self.linear(pixel_values))


# ----------------------------------------------------------------------------- the options dataclass
def test_options_parse_validate_and_activate() -> None:
    (parsed,) = HfArgumentParser(NegativeArguments).parse_args_into_dataclasses(
        [
            "--fncl",
            "attract",
            "--fncl_top_k",
            "3",
            "--mochi_n",
            "8",
            "--mochi_s",
            "2",
            "--loss_chunk_size",
            "16",
        ]
    )
    config = parsed.config
    assert config.fncl == "attract" and config.mochi and parsed.chunking == ChunkingConfig(16) and config.active
    assert parsed.active and parsed.loss_options == {"negatives": config, "matryoshka": None, "chunking": ChunkingConfig(16)}
    assert not NegativeArguments().active and not NegativeArguments(duplicate_id_column="id").active
    assert NegativeArguments(supcon_label_column="label").config.queue_stores == "labels"
    assert NegativeArguments(false_negative_masking=True).config.queue_stores == "ids"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"debiased_tau_plus": 0.1, "decoupled": True}, "exclude each other"),
        ({"debiased_tau_plus": 0.1, "supervised": True}, "one positive"),
        ({"debiased_tau_plus": 0.1, "fncl": "attract"}, "one positive"),
        ({"supervised": True, "mask_duplicates": True}, "already a positive"),
        ({"mochi_n": 4}, "MoCHi"),
        ({"mochi_s": 4}, "MoCHi"),
        ({"fncl": "drop"}, "fncl"),
        ({"fncl_top_k": 0}, "fncl_top_k"),
        ({"debiased_tau_plus": 1.0}, r"\[0, 1\)"),
        ({"hard_negative_beta": -1.0}, "beta"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            NegativeConfig(**kwargs)
    with pytest.raises(ValueError, match="rows must be >= 1"):
        ChunkingConfig(0)
    # Validated when the flags are parsed; the library's field names come back as the flags typed.
    with pytest.raises(ValueError, match="drop --false_negative_masking") as refused:
        NegativeArguments(supcon_label_column="y", false_negative_masking=True)
    assert "already a positive" in str(refused.value) and "mask_duplicates" not in str(refused.value)
    with pytest.raises(ValueError, match="--debiased_tau_plus and --decoupled exclude each other"):
        NegativeArguments(debiased_tau_plus=0.1, decoupled=True)
    with pytest.raises(ValueError, match="--loss_chunk_size must be >= 1"):
        NegativeArguments(loss_chunk_size=0)
    with pytest.raises(ValueError, match="--matryoshka_dims must be positive and strictly decreasing"):
        NegativeArguments(matryoshka_dims="8,16")
    mochi = NegativeConfig(mochi_n=4, mochi_s=2)
    with pytest.raises(ValueError, match="needs a queue"):
        SimCLR(negatives=mochi)
    with pytest.raises(ValueError, match="needs a queue"):
        SimCSE(negatives=mochi)
    with pytest.raises(ValueError, match="needs a queue"):
        MoCo(Toy(), version="v3", negatives=mochi)
    with pytest.raises(ValueError, match="cosine"):
        SimCLR(similarity="dot", negatives=NegativeConfig(debiased_tau_plus=0.1))
    with pytest.raises(ValueError, match="batch\\['ids'\\]"):
        SimCSE(negatives=NegativeConfig(mask_duplicates=True))(
            {"anchor": rand(3, 4), "positive": rand(3, 4)}, {}
        )


# ----------------------------------------------------------------------------- false-negative masking
def test_simcse_duplicate_in_batch_is_not_a_negative() -> None:
    anchor, positive = rand(4, DIM, seed=1), rand(4, DIM, seed=2)
    ids = torch.tensor([10, 11, 12, 11])
    objective = SimCSE(0.1, negatives=NegativeConfig(mask_duplicates=True))
    out = objective({"anchor": anchor, "positive": positive}, {"ids": ids})
    mask = ids[:, None] == ids[None, :]
    mask.fill_diagonal_(False)
    expected = info_nce(anchor, positive, temperature=0.1, candidate_mask=mask).loss
    torch.testing.assert_close(out.loss, expected)
    # rows 1 and 3 equal the loss computed without the other's column
    per_row = [info_nce(anchor[i : i + 1], positive, torch.tensor([i]), temperature=0.1).loss for i in (0, 2)]
    per_row += [
        info_nce(anchor[i : i + 1], positive[[0, i, 2]], torch.tensor([1]), temperature=0.1).loss
        for i in (1, 3)
    ]
    torch.testing.assert_close(out.loss, torch.stack(per_row).mean())
    assert out.stats["negatives"].item() == pytest.approx(2.5)
    plain = SimCSE(0.1)({"anchor": anchor, "positive": positive}, {})
    assert plain.loss.item() != pytest.approx(out.loss.item())


def test_moco_duplicate_in_queue_is_not_a_negative_and_queue_stores_ids() -> None:
    toy = Toy()
    moco = MoCo(
        toy, queue_size=8, temperature=0.2, negatives=NegativeConfig(mask_duplicates=True)
    ).train()
    queue, queue_ids = rand(3, DIM, seed=3), torch.tensor([7, 0, 8])
    moco.keys.queue.enqueue(queue, queue_ids)  # type: ignore[union-attr]
    batch = {"query": {"pixel_values": rand(3, 5, seed=4)}, "key": {"pixel_values": rand(3, 5, seed=5)}}
    batch["ids"] = torch.tensor([0, 1, 2])  # type: ignore[assignment]
    q = rand(3, DIM, seed=6)
    out = moco({"query": q}, batch)
    key = toy(batch["key"]["pixel_values"]).embeddings.detach()  # type: ignore[index]
    cols = torch.cat([key, queue])
    pos = [{i} for i in range(3)]
    neg = [{3, 5}, {3, 4, 5}, {3, 4, 5}]  # query 0's own example (id 0) sits in the queue at column 4
    assert out.loss.item() == pytest.approx(naive(q, cols, 0.2, pos, neg), rel=1e-6)
    moco.after_optimizer_step(toy, 1, 10)
    assert moco.keys.ids().tolist() == [7, 0, 8, 0, 1, 2]  # type: ignore[union-attr]
    legacy = MoCo(toy, queue_size=8, temperature=0.2, mask_duplicate_ids=True)
    assert legacy.negatives.mask_duplicates and legacy.keys.queue.store_ids  # type: ignore[union-attr]


def test_clip_shared_image_id_is_masked_in_both_directions() -> None:
    image, text = rand(4, DIM, seed=7), rand(4, DIM, seed=8)
    ids = torch.tensor([0, 1, 0, 2])  # rows 0 and 2 are captions of the same image
    out = CLIP(temperature=0.1, negatives=NegativeConfig(mask_duplicates=True))(
        {"image": image, "text": text}, {"ids": ids}
    )
    pos = [{i} for i in range(4)]
    neg = [{j for j in range(4) if j != i and int(ids[j]) != int(ids[i])} for i in range(4)]
    expected = 0.5 * (naive(image, text, 0.1, pos, neg) + naive(text, image, 0.1, pos, neg))
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert {"top1_image_to_text", "top1_text_to_image", "negatives", "temperature"} <= set(out.stats)


# ----------------------------------------------------------------------------- SupCon
def test_simcse_supcon_with_hard_negatives_and_queue_matches_naive_loop() -> None:
    anchor, positive, hard = rand(4, DIM, seed=9), rand(4, DIM, seed=10), rand(4, DIM, seed=11)
    objective = SimCSE(
        0.2, queue_size=7, embedding_dim=DIM, negatives=NegativeConfig(supervised=True)
    ).train()
    queue, queue_labels = rand(3, DIM, seed=12), torch.tensor([1, 0, 5])
    objective.keys.queue.enqueue(queue, queue_labels)  # type: ignore[union-attr]
    labels = torch.tensor([0, 1, 0, 2])
    out = objective({"anchor": anchor, "positive": positive, "negative": hard}, {"labels": labels})
    cols = torch.cat([positive, hard, queue])
    col_labels = labels.tolist() + [-1] * 4 + queue_labels.tolist()
    pos = [{j for j in range(11) if j == i or col_labels[j] == int(labels[i])} for i in range(4)]
    neg = [set(range(11)) - p for p in pos]
    assert out.loss.item() == pytest.approx(naive(anchor, cols, 0.2, pos, neg), rel=1e-6)
    objective.after_optimizer_step(nn.Linear(1, 1), 1, 10)
    assert objective.keys.ids().tolist() == [1, 0, 5, 0, 1, 0, 2]  # type: ignore[union-attr]


def test_moco_supcon_uses_same_label_queue_keys_as_positives() -> None:
    toy = Toy()
    moco = MoCo(toy, queue_size=8, temperature=0.2, negatives=NegativeConfig(supervised=True))
    queue, queue_labels = rand(4, DIM, seed=13), torch.tensor([3, 1, 3, 2])
    moco.keys.queue.enqueue(queue, queue_labels)  # type: ignore[union-attr]
    batch: dict[str, Any] = {
        "query": {"pixel_values": rand(3, 5, seed=14)},
        "key": {"pixel_values": rand(3, 5, seed=15)},
    }
    batch["labels"] = torch.tensor([3, 1, 0])
    q = rand(3, DIM, seed=16)
    out = moco({"query": q}, batch)
    cols = torch.cat([toy(batch["key"]["pixel_values"]).embeddings.detach(), queue])
    pos = [{0, 3, 5}, {1, 4}, {2}]  # own key, plus queued keys of the same label; other keys unused
    neg = [{4, 6}, {3, 5, 6}, {3, 4, 5, 6}]
    assert out.loss.item() == pytest.approx(naive(q, cols, 0.2, pos, neg), rel=1e-6)


def test_simclr_supcon_equals_khosla_supcon_and_two_simulated_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k = rand(6, DIM, seed=17).requires_grad_(), rand(6, DIM, seed=18).requires_grad_()
    labels, ids = torch.tensor([0, 1, 0, 2, 1, 3]), torch.tensor([0, 1, 2, 3, 4, 5])
    options = NegativeConfig(supervised=True, hard_negative_beta=0.5)
    single = SimCLR(0.3, negatives=options)({"query": q, "key": k}, {"labels": labels}).loss
    options_plain = NegativeConfig(supervised=True)
    khosla = supcon_loss(torch.stack([q, k], dim=1), labels, temperature=0.3).loss
    torch.testing.assert_close(
        SimCLR(0.3, negatives=options_plain)({"query": q, "key": k}, {"labels": labels}).loss, khosla
    )
    want = torch.autograd.grad(single, (q, k))
    losses = []
    for rank in range(2):
        rows = slice(rank * 3, (rank + 1) * 3)
        tensors = iter([(q, rank * 3), (k, rank * 3)])
        monkeypatch.setattr(simclr_module, "gather", lambda t, enabled=True, it=tensors: Gathered(*next(it), t.shape[0]))
        monkeypatch.setattr(contrast_module, "gather_detached", lambda _t: labels)
        batch = {"labels": labels[rows], "ids": ids[rows]}
        losses.append(SimCLR(0.3, negatives=options)({"query": q[rows], "key": k[rows]}, batch).loss)
    mean = torch.stack(losses).mean()
    torch.testing.assert_close(mean, single)
    for got, expected in zip(torch.autograd.grad(mean, (q, k)), want):
        torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------- debiased, DCL, FNCL, MoCHi, chunks
def test_simclr_debiased_matches_chuang_reference_code() -> None:
    q, k, tau, tau_plus = rand(5, DIM, seed=19), rand(5, DIM, seed=20), 0.5, 0.1
    out = SimCLR(tau, negatives=NegativeConfig(debiased_tau_plus=tau_plus))({"query": q, "key": k}, {})
    z = torch.cat([q, k])
    total, n = 0.0, 2 * 5 - 2
    for i in range(10):
        p = (i + 5) % 10
        e_pos = math.exp(cos(z[i], z[p]) / tau)
        e_neg = sum(math.exp(cos(z[i], z[j]) / tau) for j in range(10) if j not in (i, p))
        ng = max((-tau_plus * n * e_pos + e_neg) / (1 - tau_plus), n * math.exp(-1 / tau))
        total += -math.log(e_pos / (e_pos + ng))
    assert out.loss.item() == pytest.approx(total / 10, rel=1e-10)


def _v3_naive(q: Tensor, k: Tensor, tau: float, *, decoupled: bool = False, fncl_top_k: int = 0) -> float:
    """One MoCo v3 direction written out: row ``i`` of ``q`` against every key, positive ``k_i``; DCL drops the
    positive from the denominator; FNCL (eliminate) drops the ``fncl_top_k`` negatives with the highest mean
    cosine to the anchor and to its positive (the support views)."""
    total = 0.0
    for i in range(q.shape[0]):
        negatives = [j for j in range(k.shape[0]) if j != i]
        if fncl_top_k:
            score = {j: 0.5 * (cos(q[i], k[j]) + cos(k[i], k[j])) for j in negatives}
            negatives = sorted(negatives, key=score.__getitem__)[: len(negatives) - fncl_top_k]
        positive = math.exp(cos(q[i], k[i]) / tau)
        denominator = sum(math.exp(cos(q[i], k[j]) / tau) for j in negatives) + (0.0 if decoupled else positive)
        total -= math.log(positive / denominator)
    return total / q.shape[0]


@pytest.mark.parametrize("option", ["decoupled", "fncl"])
def test_moco_v3_dcl_and_fncl_equal_their_formulas(option: str) -> None:
    """``L = 2 tau (ctr(q1, k2) + ctr(q2, k1))`` with the predictor's outputs as queries and the momentum
    encoder's keys, each ``ctr`` written out with DCL or FNCL."""
    toy = Toy()
    batch: dict[str, Any] = {"query": {"pixel_values": rand(4, 5, seed=21)}, "key": {"pixel_values": rand(4, 5, seed=22)}}
    embeddings = {"query": rand(4, DIM, seed=23), "key": rand(4, DIM, seed=24)}
    config = NegativeConfig(decoupled=True) if option == "decoupled" else NegativeConfig(fncl="eliminate")
    torch.manual_seed(0)
    moco = MoCo(toy, version="v3", temperature=0.2, predictor_hidden_dim=8, negatives=config).double().eval()
    out = moco(embeddings, batch)
    assert moco.predictor is not None
    with torch.no_grad():
        q1, q2 = moco.predictor.both(embeddings["query"], embeddings["key"])
        k1, k2 = moco.key_encoder(batch["query"]), moco.key_encoder(batch["key"])
    kwargs = {"decoupled": True} if option == "decoupled" else {"fncl_top_k": 1}
    want = 2 * 0.2 * (_v3_naive(q1, k2, 0.2, **kwargs) + _v3_naive(q2, k1, 0.2, **kwargs))
    assert out.loss.item() == pytest.approx(want, rel=1e-9)
    assert out.stats["negatives"].item() == (3 if option == "decoupled" else 2)


def test_simcse_mochi_equals_the_papers_mixing_written_out() -> None:
    """SimCSE with a queue and MoCHi (Kalantidis et al. 2020, sec. 4): from the same draws, each row's loss is
    InfoNCE over its positive, the other positives, the queue without its own duplicate, and ``s`` mixes of two
    and ``s'`` mixes of itself with one of its ``n`` hardest queue negatives."""
    n, s_mix, s_query, tau = 3, 2, 1, 0.1
    options = NegativeConfig(mochi_n=n, mochi_s=s_mix, mochi_s_prime=s_query, mask_duplicates=True)
    objective = SimCSE(tau, queue_size=5, embedding_dim=DIM, negatives=options).train()
    anchor, positive = rand(4, DIM, seed=25).requires_grad_(), rand(4, DIM, seed=26)
    batch = {"ids": torch.tensor([0, 1, 2, 3])}
    assert objective({"anchor": anchor, "positive": positive}, batch).stats["negatives"].item() == 3  # empty queue
    objective.after_optimizer_step(nn.Linear(1, 1), 1, 10)
    queue = F.normalize(objective.keys.negatives().double(), dim=-1)  # type: ignore[union-attr]
    torch.manual_seed(1)
    draws = draw_mochi(4, n, s_mix, s_query, start=4)
    torch.manual_seed(1)
    out = objective({"anchor": anchor, "positive": positive}, batch)
    assert out.stats["negatives"].item() == 3 + 3 + 3
    rows, columns = F.normalize(anchor.detach(), dim=-1), F.normalize(positive, dim=-1)
    total = 0.0
    for i in range(4):
        usable = [m for m in range(4) if m != i]  # the queue holds the first batch's positives, ids 0..3
        top = sorted(usable, key=lambda m: -float(rows[i] @ queue[m]))[: min(n, len(usable))]
        pick = lambda u, top=top: top[min(int(float(u) * len(top)), len(top) - 1)]  # noqa: E731
        synthetic = [F.normalize(draws.alpha[i, t] * queue[pick(draws.pair_u[i, t, 0])]
                                 + (1 - draws.alpha[i, t]) * queue[pick(draws.pair_u[i, t, 1])], dim=0)
                     for t in range(s_mix)]  # fmt: skip
        synthetic += [F.normalize(draws.beta[i, t] * rows[i] + (1 - draws.beta[i, t]) * queue[pick(draws.query_u[i, t])], dim=0)
                      for t in range(s_query)]  # fmt: skip
        logits = [float(rows[i] @ columns[j]) / tau for j in range(4)]
        logits += [float(rows[i] @ queue[m]) / tau for m in usable] + [float(rows[i] @ h) / tau for h in synthetic]
        total += math.log(sum(math.exp(x) for x in logits)) - logits[i]
    assert out.loss.item() == pytest.approx(total / 4, rel=1e-9)
    torch.manual_seed(1)
    torch.testing.assert_close(objective({"anchor": anchor, "positive": positive}, batch).loss, out.loss)  # same draws
    out.loss.backward()
    assert anchor.grad is not None and torch.isfinite(anchor.grad).all() and anchor.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["simcse", "simclr", "clip"])
def test_chunked_objective_equals_plain(family: str) -> None:
    a, b = rand(6, DIM, seed=27).requires_grad_(), rand(6, DIM, seed=28).requires_grad_()
    ids = torch.tensor([0, 1, 2, 0, 4, 5])
    results = []
    for chunk in (None, 2):
        options = NegativeConfig(mask_duplicates=True, hard_negative_beta=0.5)
        chunking = ChunkingConfig(chunk) if chunk is not None else None
        if family == "simcse":
            out = SimCSE(0.1, symmetric=True, negatives=options, chunking=chunking)({"anchor": a, "positive": b}, {"ids": ids})
        elif family == "simclr":
            out = SimCLR(0.1, negatives=options, chunking=chunking)({"query": a, "key": b}, {"ids": ids})
        else:
            out = CLIP(temperature=0.1, negatives=options, chunking=chunking)({"image": a, "text": b}, {"ids": ids})
        results.append((out.loss, torch.autograd.grad(out.loss, (a, b))))
    torch.testing.assert_close(results[0][0], results[1][0])
    for got, want in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(got, want)


# ----------------------------------------------------------------------------- collator
def test_text_collator_emits_normalised_text_ids_and_labels() -> None:
    rows = [
        {"sent0": "A cat sits.", "sent1": "Hello, world!", "label": 2},
        {"sent0": "A dog runs.", "sent1": "hello   WORLD", "label": 0},
        {"sent0": "A bird.", "sent1": "something else", "label": 2},
    ]
    collator = TextPairCollator(tokenizer(), "sent0", "sent1", ids_from_text=True, label_column="label")
    batch = collator(rows)
    assert batch["ids"][0] == batch["ids"][1] != batch["ids"][2]
    assert batch["labels"].tolist() == [2, 0, 2]
    unsupervised = UnsupervisedSimCSECollator(tokenizer(), "sent1", ids_from_text=True)
    assert unsupervised(rows)["ids"].tolist() == batch["ids"].tolist()
    named = TextPairCollator(tokenizer(), "sent0", "sent1", label_column="sent0")(rows[:2])
    assert named["labels"].dtype == torch.long  # string labels are hashed
    with pytest.raises(ValueError, match="not both"):
        TextPairCollator(tokenizer(), id_column="id", ids_from_text=True)
