"""MixCo / i-Mix: the soft-positive loss against its formula in float64; the mixing collator's draws (per row, so
independent of the batch's order and exact on resume), mixup and CutMix pixels; SimCLR's MixCo term."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hfcontrast.augment import eval_pipeline, simclr_pipeline
from hfcontrast.collators import MultiViewCollator
from hfcontrast.collators.mixing import MixingCollator
from hfcontrast.losses import mixed_positive_loss
from hfcontrast.objectives import SimCLR


def naive_mixed(mixed: torch.Tensor, keys: torch.Tensor, first: list[int], second: list[int], lam: list[float], tau: float) -> float:
    def unit(v: torch.Tensor) -> list[float]:
        x = [float(t) for t in v]
        n = math.sqrt(sum(t * t for t in x))
        return [t / n for t in x]

    m, k = [unit(v) for v in mixed], [unit(v) for v in keys]
    total = 0.0
    for b, row in enumerate(m):
        scores = [math.exp(sum(x * y for x, y in zip(row, key, strict=True)) / tau) for key in k]
        z = sum(scores)
        total += -(lam[b] * math.log(scores[first[b]] / z) + (1 - lam[b]) * math.log(scores[second[b]] / z))
    return total / len(m)


def test_the_mixed_positive_loss_is_the_papers_formula() -> None:
    g = torch.Generator().manual_seed(0)
    mixed, keys = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    first, second, lam = [0, 1, 2, 3, 4], [3, 0, 6, 1, 2], [0.9, 0.5, 0.2, 1.0, 0.6]
    got = mixed_positive_loss(mixed, keys, torch.tensor(first), torch.tensor(second), torch.tensor(lam, dtype=torch.float64), 0.3)
    assert float(got) == pytest.approx(naive_mixed(mixed, keys, first, second, lam, 0.3), rel=1e-12)
    mixed.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda m: mixed_positive_loss(m, keys, torch.tensor(first), torch.tensor(second), torch.tensor(lam, dtype=torch.float64), 0.3),
        (mixed,),
    )


def _rows(n: int = 6) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)), "row_index": 10 + i} for i in range(n)]


def _collator(kind: str) -> MixingCollator:
    inner = MultiViewCollator(pipeline=eval_pipeline(8, resize_size=8), seed=3, index_column="row_index")
    return MixingCollator(inner, kind, alpha=1.0)


def test_mixup_mixes_each_row_with_a_partner_drawn_per_row() -> None:
    rows = _rows()
    batch = _collator("mixup")(rows)
    partner, lam = batch["mix_partner"], batch["mix_lambda"]
    assert sorted(partner.tolist()) == list(range(6)) and all(p != b for b, p in enumerate(partner.tolist()))
    pixels = batch["query"]["pixel_values"]
    for b in range(6):
        torch.testing.assert_close(batch["mixed"]["pixel_values"][b], lam[b] * pixels[b] + (1 - lam[b]) * pixels[partner[b]])
    order = [3, 0, 5, 1, 4, 2]  # the same rows in another order: the same draws for each row
    again = _collator("mixup")([rows[i] for i in order])
    for place, b in enumerate(order):
        assert float(again["mix_lambda"][place]) == float(lam[b])
        assert order[int(again["mix_partner"][place])] == int(partner[b])


def test_cutmix_pastes_a_box_of_the_partner_and_reports_the_share_left() -> None:
    batch = _collator("cutmix")(_rows())
    pixels, mixed = batch["query"]["pixel_values"], batch["mixed"]["pixel_values"]
    for b, p in enumerate(batch["mix_partner"].tolist()):
        from_partner = (mixed[b] == pixels[p]).all(0) & (pixels[b] != pixels[p]).any(0)
        assert ((mixed[b] == pixels[b]).all(0) | from_partner).all()
        assert float(batch["mix_lambda"][b]) == pytest.approx(1 - from_partner.float().mean().item(), abs=1e-6)


def test_simclr_adds_the_mixco_term_when_the_batch_has_a_mixed_view() -> None:
    g = torch.Generator().manual_seed(1)
    embeddings = {name: torch.randn(4, 5, generator=g, dtype=torch.float64) for name in ("query", "key", "mixed")}
    batch = {"mix_partner": torch.tensor([1, 2, 3, 0]), "mix_lambda": torch.tensor([0.7, 0.4, 0.9, 0.5])}
    objective = SimCLR(0.2, mix_weight=0.5)
    plain = SimCLR(0.2)({"query": embeddings["query"], "key": embeddings["key"]}, {}).loss
    term = mixed_positive_loss(embeddings["mixed"], embeddings["key"], torch.arange(4), batch["mix_partner"],
                               batch["mix_lambda"], 0.2)  # fmt: skip
    torch.testing.assert_close(objective(embeddings, batch).loss, plain + 0.5 * term)


def test_mixing_needs_per_row_seeds() -> None:
    with pytest.raises(ValueError, match="index_column"):
        MixingCollator(MultiViewCollator(pipeline=eval_pipeline(8, resize_size=8)))


def test_a_resumed_mixco_run_mixes_as_the_uninterrupted_one(tmp_path: Path) -> None:
    """SimCLR + MixCo (mixup) through the trainer, killed after step 3 and resumed: the weights of the straight run."""
    import datasets

    from hfcontrast import ContrastiveVisionModel
    from hfcontrast.collators import with_index_column
    from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
    from tests.test_trainer_image import StopAt
    from tests.tiny import vision_config

    rng = np.random.default_rng(1)
    rows = datasets.Dataset.from_dict({"image": [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(48)]})
    rows = with_index_column(rows, "row_index")

    def train(out: Path, resume: bool = False, stop: int | None = None) -> ContrastiveVisionModel:
        torch.manual_seed(0)
        model = ContrastiveVisionModel(vision_config())
        inner = MultiViewCollator(pipeline=simclr_pipeline(16), seed=5, index_column="row_index")
        args = ContrastiveTrainingArguments(output_dir=str(out), use_cpu=True, report_to=[], seed=0, max_steps=6,
                                            per_device_train_batch_size=8, save_strategy="steps", save_steps=3,
                                            dataloader_drop_last=True, disable_tqdm=True, learning_rate=3e-3)  # fmt: skip
        trainer = ContrastiveTrainer(model, args, objective=SimCLR(0.2, mix_weight=0.5), train_dataset=rows,
                                     data_collator=MixingCollator(inner, "mixup"),
                                     callbacks=[StopAt(stop)] if stop else None)  # fmt: skip
        trainer.train(resume_from_checkpoint="latest" if resume else None)
        return model

    straight = train(tmp_path / "straight")
    train(tmp_path / "resumed", stop=3)
    again = train(tmp_path / "resumed", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_moco_v2_adds_the_imix_term_against_its_keys() -> None:
    import copy

    from hfcontrast import ContrastiveVisionModel
    from hfcontrast.objectives import MoCo
    from tests.tiny import vision_config

    torch.manual_seed(0)
    model = ContrastiveVisionModel(vision_config())
    moco = MoCo(model, queue_size=16, mix_weight=0.5)
    plain = copy.deepcopy(moco)
    g = torch.Generator().manual_seed(2)
    batch = {"key": {"pixel_values": torch.randn(4, 3, 16, 16, generator=g)}, "mix_partner": torch.tensor([2, 3, 1, 0]),
             "mix_lambda": torch.tensor([0.6, 0.3, 0.8, 0.5])}  # fmt: skip
    for objective in (moco, plain):  # a first step fills the queue: its keys are negatives of the mixed view too
        first = {"key": {"pixel_values": torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))}}
        objective({"query": torch.randn(4, 8, generator=torch.Generator().manual_seed(4))}, first)
        objective.after_optimizer_step(model, 1, 10)
    query, mixed = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    queue = plain.keys.negatives()
    assert queue is not None and queue.shape[0] == 4
    columns = torch.cat([copy.deepcopy(plain).key_encoder(batch["key"]), queue.clone()])
    got = moco({"query": query, "mixed": mixed}, batch).loss
    without = plain({"query": query}, batch).loss
    term = mixed_positive_loss(mixed, columns, torch.arange(4), batch["mix_partner"], batch["mix_lambda"], 0.2)
    torch.testing.assert_close(got, without + 0.5 * term)
