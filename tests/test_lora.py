"""LoRA through peft: only adapters train, GradCache equals the uncached step, the merged export equals the
adapted model, the adapter alone reloads, and a momentum run resumes exactly."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoModel

from hfcontrast.collators import UnsupervisedSimCSECollator
from hfcontrast.lora import add_lora, has_lora, merge_lora, save_adapter
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer
from tests.test_gradcache import assert_same, cached, text_batch, uncached
from tests.test_trainer_text import StopAt, args, sentences
from tests.tiny import text_model, tokenizer

peft = pytest.importorskip("peft")


def lora_model(dropout: float = 0.1, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = add_lora(text_model(pooler="mean", dropout=dropout), r=4, alpha=8, target_modules="query,value")
    for name, p in model.named_parameters():  # peft starts B at 0: give the adapters a non-trivial value
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model


def test_only_adapter_parameters_receive_gradients() -> None:
    model = lora_model().train()
    batch = text_batch()
    loss = SimCSE(0.05)({v: model(**batch[v], use_head=True).embeddings for v in ("anchor", "positive")}, batch).loss
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == with_grad


def test_gradcache_equals_uncached_step_with_lora() -> None:
    model = lora_model().train()
    objective = SimCSE(0.05, hard_negative_weight=0.3)
    batch = text_batch()
    assert_same(cached(model, objective, batch, chunk=5), uncached(model, objective, batch, chunk=5), 1e-5)


def test_merged_export_equals_adapter_model_and_adapter_reloads(tmp_path: Path) -> None:
    model = lora_model(dropout=0.0).eval()
    inputs = tokenizer()(["a red car on the road", "the sea"], return_tensors="pt", padding=True)
    with torch.no_grad():
        adapted = model(**inputs).embeddings
        hidden = model.backbone(**inputs).last_hidden_state
    base_weights = {k: v.clone() for k, v in model.backbone.get_base_model().state_dict().items() if "lora_" not in k}
    base_weights = {k.replace(".base_layer", ""): v for k, v in base_weights.items()}
    save_adapter(model, str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    merge_lora(model)
    assert not has_lora(model)
    model.save_pretrained(tmp_path / "merged")
    reloaded = AutoModel.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).embeddings, adapted, rtol=1e-5, atol=1e-5)
    # The adapter alone on the base backbone gives the adapted backbone's hidden states.
    base = text_model(pooler="mean", dropout=0.0)
    base.backbone.load_state_dict(base_weights)
    restored = peft.PeftModel.from_pretrained(base.backbone, str(tmp_path / "adapter"))
    with torch.no_grad():
        torch.testing.assert_close(restored(**inputs).last_hidden_state, hidden, rtol=1e-5, atol=1e-5)


def test_momentum_resume_is_exact_with_lora(tmp_path: Path) -> None:
    def run(output: Path, stop: int | None = None, resume: bool = False):  # type: ignore[no-untyped-def]
        model = lora_model()
        objective = SimCSE(0.05, queue_size=16, encoder=model, momentum=0.9)
        trainer = ContrastiveTrainer(
            model=model, args=args(output, max_steps=6, per_device_train_batch_size=8, save_strategy="steps", save_steps=3),
            objective=objective, train_dataset=datasets.Dataset.from_dict({"text": sentences(96)}),
            data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16),
        )
        if stop:
            trainer.add_callback(StopAt(stop))
        trainer.train(resume_from_checkpoint=str(output / "checkpoint-3") if resume else None)
        return model, objective

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop=3)
    resumed = run(tmp_path / "b", resume=True)
    for one, two in zip(straight, resumed):
        for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    key_lora = [n for n in straight[1].state_dict() if "lora_A" in n]
    assert key_lora  # the momentum encoder holds an EMA of the adapters
    online = dict(straight[0].named_parameters())
    ema = straight[1].state_dict()[key_lora[0]]
    assert not torch.equal(ema, online[key_lora[0].split("key_encoder.encoder.", 1)[1]])
