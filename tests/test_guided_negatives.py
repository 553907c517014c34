"""Guided negatives (GISTEmbed): the mask against a naive loop, the loss against its formula in float64, every
InfoNCE objective's guide against the same objective's id-based duplicate masking (the independent reference),
the guide on the fly against its embeddings cached in the batch, and GradCache against the plain step."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hfcontrast.collators import TextPairCollator
from hfcontrast.losses import ColumnRoles, GuidedNegatives, contrastive_loss, guided_false_negatives
from hfcontrast.objectives import (
    CLIP,
    NNCLR,
    ContrastiveObjective,
    Guide,
    MoCo,
    NegativeConfig,
    SimCLR,
    SimCSE,
)
from tests.test_objectives_clip import Scales
from tests.test_objectives_image import DIM, Toy, rand, views
from tests.tiny import one_sgd_step_update, text_model, tokenizer


def _naive_mask(g: list[list[float]], positive: list[int], margin: float, relative: bool) -> list[list[bool]]:
    out = []
    for i, row in enumerate(g):
        own = row[positive[i]]
        threshold = own * (1 - margin) if relative else own - margin
        out.append([j != positive[i] and value > threshold for j, value in enumerate(row)])
    return out


@pytest.mark.parametrize(("margin", "relative"), [(0.0, False), (0.1, False), (0.05, True)])
def test_mask_equals_a_naive_loop(margin: float, relative: bool) -> None:
    g = torch.randn(7, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64).tanh()
    g[2, 5] = g[2, 3]  # a tie with the positive: not above it, so kept at margin 0
    positive = torch.tensor([0, 1, 3, 4, 6, 9, 10])
    got = guided_false_negatives(g, positive, margin, "relative" if relative else "absolute")
    assert got.tolist() == _naive_mask(g.tolist(), positive.tolist(), margin, relative)
    assert not got[torch.arange(7), positive].any()


def test_engine_loss_with_the_guide_equals_its_formula_and_chunks() -> None:
    """``L_i = -log e^{l_ip} / sum_{j kept} e^{l_ij}`` with the guide's mask, float64; chunked rows equal."""
    gen = torch.Generator().manual_seed(1)
    q, c = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(9, 5, generator=gen, dtype=torch.float64)
    gq, gc = torch.randn(6, 3, generator=gen, dtype=torch.float64), torch.randn(9, 3, generator=gen, dtype=torch.float64)
    positive = torch.tensor([0, 2, 4, 6, 7, 8])
    roles = ColumnRoles(positive, guide=GuidedNegatives(gq, gc, margin=0.05))
    out = contrastive_loss(q, c, roles, temperature=0.1)
    g = (F.normalize(gq, dim=-1) @ F.normalize(gc, dim=-1).T).tolist()
    masked = _naive_mask(g, positive.tolist(), 0.05, relative=False)
    assert any(any(row) for row in masked)
    logits = (F.normalize(q, dim=-1) @ F.normalize(c, dim=-1).T / 0.1).tolist()
    expected = 0.0
    for i, row in enumerate(logits):
        kept = [v for j, v in enumerate(row) if not masked[i][j]]
        expected += -row[positive[i]] + math.log(sum(math.exp(v) for v in kept))
    assert float(out.loss) == pytest.approx(expected / 6, rel=1e-12)
    chunked = contrastive_loss(q, c, roles, temperature=0.1, chunk_size=4)
    assert float(chunked.loss) == pytest.approx(float(out.loss), rel=1e-12)


# -------------------------------------------------------------------- every InfoNCE objective: guide == ids
def _one_hot(groups: list[int], width: int = 8) -> Tensor:
    return F.one_hot(torch.tensor(groups), width).double()


GROUPS = [0, 1, 1, 2, 3]  # rows 1 and 2 are the same example: each a false negative of the other


def _guided_batch(extra_views: tuple[str, ...] = ()) -> dict[str, Any]:
    """Guide embeddings by group (one-hot): with margin 0.5 the guide masks exactly the same-group candidates."""
    batch: dict[str, Any] = {"ids": torch.tensor(GROUPS)}
    for view in ("query", "key", "image", "text", "anchor", "positive", *extra_views):
        batch[f"guide_{view}"] = _one_hot(GROUPS)
    batch["guide_negative"] = _one_hot([7] * len(GROUPS))  # hard negatives: a group of their own
    return batch


def _three(make: Callable[..., ContrastiveObjective]) -> tuple[ContrastiveObjective, ...]:
    """The objective masking duplicate ids, the same with the guide instead, and unmasked: the same weights."""
    made = []
    for kwargs in ({"negatives": NegativeConfig(mask_duplicates=True)}, {"guide": Guide(margin=0.5, dim=8)}, {}):
        torch.manual_seed(0)
        made.append(make(**kwargs))
    return tuple(made)


OBJECTIVES: dict[str, Callable[..., ContrastiveObjective]] = {
    "simclr": lambda **kw: SimCLR(0.5, **kw),
    "nnclr": lambda **kw: NNCLR(0.5, embedding_dim=DIM, support_size=16, loss="cross_view", **kw),
    "moco_v3": lambda **kw: MoCo(Toy(), version="v3", temperature=0.5, predictor_hidden_dim=6, **kw).double(),
    "moco_v2": lambda **kw: MoCo(Toy(), queue_size=8, temperature=0.5, **kw),
    "clip": lambda **kw: CLIP(Scales(1.0, dim=DIM), queue_size=8, **kw),
    "simcse": lambda **kw: SimCSE(0.1, queue_size=8, embedding_dim=DIM, symmetric=True, **kw),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_guide_masks_what_duplicate_ids_mask(name: str) -> None:
    """Two steps (queues filled by the first): the guide's mask of same-group candidates gives the loss of the
    objective's own masking of candidates with the row's id, in the batch and in the queue."""
    by_ids, by_guide, plain = _three(OBJECTIVES[name])
    negatives = {"ids": 0.0, "guide": 0.0, "plain": 0.0}
    online = Toy()  # the model the momentum encoders follow: one for all three
    for step in range(2):
        batch = {**views(5, seed=10 * step), **_guided_batch()}
        if name == "clip":
            embeddings = {"image": rand(5, DIM, seed=3 + step), "text": rand(5, DIM, seed=5 + step)}
        elif name == "simcse":
            embeddings = {v: rand(5, DIM, seed=s + step) for v, s in (("anchor", 3), ("positive", 5), ("negative", 7))}
        elif name == "moco_v2":
            embeddings = {"query": rand(5, DIM, seed=3 + step)}
        else:
            embeddings = {"query": rand(5, DIM, seed=3 + step), "key": rand(5, DIM, seed=5 + step)}
        outs = {key: objective.train()(embeddings, batch) for key, objective in zip(negatives, (by_ids, by_guide, plain))}
        assert float(outs["guide"].loss.detach()) == pytest.approx(float(outs["ids"].loss.detach()), rel=1e-6)  # fp32 queues
        for key, out in outs.items():
            negatives[key] += float(out.stats["negatives"])
        for objective in (by_ids, by_guide, plain):
            objective.after_optimizer_step(online, step + 1, 10)
    assert negatives["guide"] == negatives["ids"] < negatives["plain"]  # the same candidates masked, some


def test_queue_keeps_the_guides_of_its_keys_and_checkpoints_them() -> None:
    objective = SimCSE(0.1, queue_size=4, embedding_dim=DIM, guide=Guide(dim=8))
    batch = {"guide_anchor": _one_hot([0, 1]), "guide_positive": _one_hot([2, 3])}
    objective.train()({"anchor": rand(2, DIM), "positive": rand(2, DIM, seed=1)}, batch)
    objective.after_optimizer_step(Toy(), 1, 10)
    state = objective.state_dict()
    torch.testing.assert_close(state["keys.guides.embeddings"][:2], _one_hot([2, 3]).float())
    assert objective.keys is not None and objective.keys.guide_negatives() is not None
    with pytest.raises(ValueError, match=r"guide_anchor"):
        SimCSE(0.1, guide=Guide())({"anchor": rand(2, DIM), "positive": rand(2, DIM, seed=1)}, {})
    with pytest.raises(ValueError, match=r"dim="):
        SimCSE(0.1, queue_size=4, embedding_dim=DIM, guide=Guide())


# -------------------------------------------------------------------- a guide model: on the fly == cached
def _text_batch() -> dict[str, Any]:
    rows = [{"a": f"a {w} cat runs", "p": f"the {w} cat", "n": f"no {w} dog"} for w in ("red", "blue", "big", "old", "red")]
    return TextPairCollator(tokenizer(), "a", "p", ["n"], max_length=12)(rows)


def test_guide_model_on_the_fly_equals_its_cached_embeddings() -> None:
    torch.manual_seed(0)
    guide_model = text_model(pooler="mean", dropout=0.0).double()
    batch = _text_batch()
    embeddings = {v: rand(5, DIM, seed=s) for v, s in (("anchor", 1), ("positive", 2), ("negative", 3))}
    on_the_fly = SimCSE(0.1, guide=Guide(guide_model, margin=0.02))(embeddings, batch)
    with torch.no_grad():
        cached = {f"guide_{v}": guide_model(**batch[v]).embeddings for v in ("anchor", "positive", "negative")}
    from_batch = SimCSE(0.1, guide=Guide(margin=0.02))(embeddings, {**batch, **cached})
    plain = SimCSE(0.1)(embeddings, batch)
    assert float(on_the_fly.loss) == pytest.approx(float(from_batch.loss), rel=1e-12)
    assert float(on_the_fly.stats["negatives"]) < float(plain.stats["negatives"])  # "a red cat" twice: masked


def _rows(n: int) -> datasets.Dataset:
    words = "red blue green cat dog bird runs sleeps eats big small old".split()
    g = torch.Generator().manual_seed(0)
    pick = lambda k: " ".join(words[i] for i in torch.randint(len(words), (k,), generator=g).tolist())  # noqa: E731
    return datasets.Dataset.from_dict({"sent0": [pick(3) for _ in range(n)], "sent1": [pick(3) for _ in range(n)],
                                       "hard_neg": [pick(4) for _ in range(n)]})  # fmt: skip


def _step(tmp_path: Path, guide: nn.Module, **args: Any) -> dict[str, Tensor]:
    collator = TextPairCollator(tokenizer(), "sent0", "sent1", ["hard_neg"], max_length=10)
    return one_sgd_step_update(str(tmp_path), SimCSE(0.1, guide=Guide(guide, margin=0.01)), _rows(12), collator, **args)


def test_gradcache_with_the_guide_equals_the_plain_step(tmp_path: Path) -> None:
    torch.manual_seed(1)
    guide = text_model(pooler="mean", dropout=0.0).double()
    plain = _step(tmp_path / "plain", guide)
    cached = _step(tmp_path / "cached", guide, gradcache_chunk_size=4)
    assert any(float(d.abs().max()) > 0 for d in plain.values())
    for name, delta in plain.items():
        torch.testing.assert_close(cached[name], delta, rtol=1e-9, atol=1e-12)


def test_recipe_guide_cached_and_on_the_fly(tmp_path: Path) -> None:
    """``--guide_model_name_or_path``: the guide's embeddings of every column computed once and cached (a queue
    stores them with its keys), or the guide run on the fly."""
    from hfcontrast.demo import default_text_model
    from tests.launch import REPO_ROOT, run_python
    from tests.tiny import bert_config

    config_dir, guide_dir = tmp_path / "config", tmp_path / "guide"
    bert_config().save_pretrained(config_dir)
    text_model(pooler="mean").save_pretrained(guide_dir)
    tokenizer().save_pretrained(guide_dir)
    common = ["--config_name", str(config_dir), "--tokenizer_name", default_text_model(), "--demo", "supervised",
              "--max_train_samples", "64", "--max_steps", "2", "--per_device_train_batch_size", "16", "--eval_steps", "2",
              "--max_seq_length", "16", "--guide_model_name_or_path", str(guide_dir), "--teacher_cache_dir",
              str(tmp_path / "cache")]  # fmt: skip
    recipe = REPO_ROOT / "recipes" / "simcse.py"
    run_python(recipe, *common, "--output_dir", str(tmp_path / "cached"), "--queue_size", "32", "--guide_margin", "0.01")
    assert len(list((tmp_path / "cache").glob("teacher-*.safetensors"))) == 3  # sent0, sent1, hard_neg: once each
    run_python(recipe, *common, "--output_dir", str(tmp_path / "live"), "--guide_on_the_fly")
    assert (tmp_path / "live" / "eval_results.json").is_file()
