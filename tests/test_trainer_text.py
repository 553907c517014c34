"""ContrastiveTrainer with SimCSE on a tiny random BERT: learning, accumulation, queue, export, resume."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, TrainerCallback

from hfcontrast import ContrastiveTextModel
from hfcontrast.collators import TextPairCollator, UnsupervisedSimCSECollator
from hfcontrast.evaluation import STSEvaluator
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.tiny import text_model, tokenizer

WORDS = "red blue green cat dog bird runs sleeps eats big small old new fast slow tree car road sky sea".split()


def sentences(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (6,), generator=g).tolist()) for _ in range(n)]


def args(tmp_path: Path, **overrides: object) -> ContrastiveTrainingArguments:
    values: dict = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=16, learning_rate=5e-4, max_steps=40,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_drop_last=True,
    )
    values.update(overrides)
    return ContrastiveTrainingArguments(**values)


class GradRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        self.grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


class StopAt(TrainerCallback):
    """Interrupt training after a given step, as a crash or a pre-emption would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step >= self.step:
            control.should_training_stop = True
            control.should_save = True


def test_unsupervised_simcse_lowers_the_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean")
    train = datasets.Dataset.from_dict({"text": sentences(640)})
    trainer = ContrastiveTrainer(
        model=model, args=args(tmp_path, learning_rate=1e-3), objective=SimCSE(0.05), train_dataset=train,
        data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16),
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert {"top1", "alignment", "uniformity", "temperature"} <= set(trainer.state.log_history[0])


def _naive_simcse_loss(model: torch.nn.Module, batch: dict, tau: float) -> torch.Tensor:
    """Independent reference: Gao et al. 2021 eq. (1) written as a loop over rows."""
    anchor = model(**batch["anchor"]).embeddings
    positive = model(**batch["positive"]).embeddings
    total = torch.zeros(())
    for i in range(anchor.shape[0]):
        sims = torch.stack([F.cosine_similarity(anchor[i], positive[j], dim=0) for j in range(positive.shape[0])])
        total = total - (sims[i] / tau - torch.logsumexp(sims / tau, dim=0))
    return total / anchor.shape[0]


def test_gradient_accumulation_matches_mean_of_micro_batch_gradients(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0)
    reference = text_model(pooler="mean", dropout=0.0)
    reference.load_state_dict(model.state_dict())
    rows = [{"sent0": a, "sent1": b} for a, b in zip(sentences(8, 1), sentences(8, 2))]
    collator = TextPairCollator(tokenizer(), "sent0", "sent1", max_length=16)
    recorder = GradRecorder()

    class Sequential(ContrastiveTrainer):
        def _get_train_sampler(self, *a, **k):  # type: ignore[no-untyped-def]
            return torch.utils.data.SequentialSampler(self.train_dataset)

    trainer = Sequential(
        model=model, args=args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=1,
                               max_grad_norm=0.0),
        objective=SimCSE(0.1), train_dataset=datasets.Dataset.from_list(rows), data_collator=collator,
        callbacks=[recorder],
    )
    trainer.train()
    losses = [_naive_simcse_loss(reference, collator(rows[k : k + 4]), 0.1) for k in (0, 4)]
    ((losses[0] + losses[1]) / 2).backward()
    got = recorder.grads[0]
    for name, param in reference.named_parameters():
        if param.grad is not None and param.grad.abs().max() > 0:
            torch.testing.assert_close(got[name], param.grad, rtol=1e-4, atol=1e-6)


def test_queue_adds_k_negatives_and_fills(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean")
    objective = SimCSE(0.05, queue_size=24, encoder=model)
    trainer = ContrastiveTrainer(
        model=model, args=args(tmp_path, max_steps=4, per_device_train_batch_size=8), objective=objective,
        train_dataset=datasets.Dataset.from_dict({"text": sentences(64)}),
        data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16),
    )
    trainer.train()
    negatives = [entry["negatives"] for entry in trainer.state.log_history if "negatives" in entry]
    assert negatives == [7, 7 + 8, 7 + 16, 7 + 24]  # B-1 in-batch, then +K as the queue fills
    assert len(objective.keys) == 24  # type: ignore[arg-type]


def test_momentum_queue_resume_is_exact(tmp_path: Path) -> None:
    def run(output: Path, max_steps: int, resume: bool = False) -> tuple[ContrastiveTextModel, SimCSE]:
        torch.manual_seed(0)
        model = text_model(pooler="mean")
        objective = SimCSE(0.05, queue_size=20, encoder=model, momentum=0.9, final_momentum=1.0)
        trainer = ContrastiveTrainer(
            model=model, args=args(output, max_steps=6, per_device_train_batch_size=8, save_strategy="steps",
                                   save_steps=3),
            objective=objective, train_dataset=datasets.Dataset.from_dict({"text": sentences(96)}),
            data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16),
        )
        if max_steps < 6:  # same schedule as the straight run, interrupted after `max_steps`
            trainer.add_callback(StopAt(max_steps))
        trainer.train(resume_from_checkpoint=str(output / "checkpoint-3") if resume else None)
        return model, objective

    straight_model, straight_objective = run(tmp_path / "straight", 6)
    run(tmp_path / "resumed", 3)
    resumed_model, resumed_objective = run(tmp_path / "resumed", 6, resume=True)
    for (name, a), b in zip(straight_model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    for (name, a), b in zip(straight_objective.state_dict().items(), resumed_objective.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert (tmp_path / "resumed" / "checkpoint-3" / "objective.safetensors").is_file()


def test_evaluators_log_eval_metrics_without_eval_dataset(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = text_model(pooler="mean")
    pairs = sentences(12, 5)
    evaluator = STSEvaluator(pairs[:6], pairs[6:], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], tokenizer(), name="sts")
    trainer = ContrastiveTrainer(
        model=model, args=args(tmp_path, max_steps=4, eval_strategy="steps", eval_steps=2,
                               metric_for_best_model="eval_sts_spearman", load_best_model_at_end=True,
                               save_strategy="steps", save_steps=2),
        objective=SimCSE(0.05), evaluators=[evaluator],
        train_dataset=datasets.Dataset.from_dict({"text": sentences(64)}),
        data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16),
    )
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_sts_spearman" in entry]
    assert [entry["step"] for entry in evals] == [2, 4]
    assert all(-1.0 <= entry["eval_sts_spearman"] <= 1.0 for entry in evals)
    assert trainer.state.best_metric == max(entry["eval_sts_spearman"] for entry in evals)
    assert not math.isnan(trainer.state.best_metric)


def test_export_loads_with_automodel_and_sentence_transformers(tmp_path: Path) -> None:
    """The custom format (``export_format="hfcontrast"``); the standard one: ``tests/test_export_formats.py``."""
    torch.manual_seed(0)
    model = text_model(pooler="cls", mlp_only_train=True)
    trainer = ContrastiveTrainer(
        model=model, args=args(tmp_path, max_steps=2, export_format="hfcontrast"), objective=SimCSE(0.05, queue_size=8, encoder=model),
        train_dataset=datasets.Dataset.from_dict({"text": sentences(32)}),
        data_collator=UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16), processing_class=tokenizer(),
    )
    trainer.train()
    out = tmp_path / "export"
    trainer.save_model(str(out))
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "modules.json", "sentence_bert_config.json",
            "modeling_text.py", "configuration_text.py", "tokenizer.json"} <= files
    assert "pytorch_model.bin" not in files
    texts = ["a red cat runs", "the old car", "blue sky over the sea"]
    inputs = tokenizer()(texts, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).embeddings
        loaded = AutoModel.from_pretrained(out).eval()
        assert type(loaded) is ContrastiveTextModel
        assert not any("queue" in k or "key_encoder" in k for k in loaded.state_dict())
        torch.testing.assert_close(loaded(**inputs).embeddings, expected, rtol=0, atol=0)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device="cpu")
    torch.testing.assert_close(torch.as_tensor(st.encode(texts)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("queue_size", [0])
def test_remote_code_loads_without_hfcontrast(tmp_path: Path, queue_size: int) -> None:
    import subprocess
    import sys

    torch.manual_seed(0)
    model = text_model(pooler="first_last_avg").eval()
    model.save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    texts = ["a red cat runs", "the old car"]
    with torch.no_grad():
        torch.save(model(**tokenizer()(texts, padding=True, return_tensors="pt")).embeddings, tmp_path / "expected.pt")
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "hfcontrast" or name.startswith("hfcontrast."):
            raise ImportError("hfcontrast is not installed here")
sys.meta_path.insert(0, Block())
import torch
from transformers import AutoModel, AutoTokenizer
path = {str(tmp_path)!r}
model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
assert "hfcontrast" not in type(model).__module__, type(model).__module__
tok = AutoTokenizer.from_pretrained(path)
with torch.no_grad():
    got = model(**tok({texts!r}, padding=True, return_tensors="pt")).embeddings
torch.testing.assert_close(got, torch.load(path + "/expected.pt"), rtol=0, atol=0)
print("remote-ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert "remote-ok" in result.stdout, result.stderr[-3000:]
