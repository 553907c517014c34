"""Train a tiny SimCSE model a few steps and dump gradients, losses, queue and weights per process.

Run under ``accelerate launch`` (2 processes) and as a plain single process over the concatenated
batch, each case of ``--cases`` (``{name: [flags]}``, JSON) one after the other in the same processes, its dump in
``<out>/<name>/rank<r>.pt``; tests/test_distributed_text.py compares the dumps.
"""

from __future__ import annotations

import argparse
import json
import os

import datasets
import torch
from torch.utils.data import SequentialSampler
from transformers import AutoTokenizer, BertConfig, TrainerCallback

from hfcontrast import ContrastiveTextConfig, ContrastiveTextModel
from hfcontrast.collators import TextPairCollator
from hfcontrast.demo import default_text_model
from hfcontrast.distributed import rank
from hfcontrast.evaluation import STSEvaluator
from hfcontrast.objectives import (
    ContrastiveObjective,
    Guide,
    InBatchKL,
    MatryoshkaConfig,
    ScoredPairs,
    SimCSE,
)
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

WORDS = "red blue green cat dog bird runs sleeps eats big small old new fast slow tree car road".split()


def rows(n: int) -> dict[str, list[str]]:
    g = torch.Generator().manual_seed(0)
    pick = lambda k: " ".join(WORDS[i] for i in torch.randint(len(WORDS), (k,), generator=g).tolist())  # noqa: E731
    scores = torch.randint(0, 11, (n,), generator=g).div(2).tolist()  # 0, 0.5, ..., 5 with ties
    return {"sent0": [pick(5) for _ in range(n)], "sent1": [pick(4) for _ in range(n)], "hard_neg": [pick(6) for _ in range(n)],
            "score": scores}  # fmt: skip


class Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []
        self.model: torch.nn.Module | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


class SequentialTrainer(ContrastiveTrainer):
    losses: list[float]

    def _get_train_sampler(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            self.losses.append(float(loss.detach()))
        return loss


def case_parser() -> argparse.ArgumentParser:
    """The flags of one case."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--grad_accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--queue_size", type=int, default=0)
    parser.add_argument("--momentum", type=float, default=None, help="positives from an EMA copy of the model")
    parser.add_argument("--symmetric", action="store_true")
    parser.add_argument("--pooler", default="mean")
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--objective", default="simcse", choices=["simcse", "matryoshka", "kl", "cosent", "angle", "guided"])
    parser.add_argument("--short_path", action="store_true", help="objective, collator, tokenizer from the trainer")
    parser.add_argument("--evaluate_first", action="store_true", help="an evaluation (evaluators only) before training")
    return parser


def run_case(args: argparse.Namespace, out: str, batch: int) -> None:
    """Train one case from the same seed and write its dump."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_text_model())
    backbone = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, pooler=args.pooler))
    if args.float64:
        model = model.double()
    train = datasets.Dataset.from_dict(rows(64))
    matryoshka = MatryoshkaConfig((32, 16, 8), (1.0, 0.5, 0.25)) if args.objective == "matryoshka" else None
    objective: ContrastiveObjective = SimCSE(
        0.05, hard_negative_weight=0.3, symmetric=args.symmetric, queue_size=args.queue_size, matryoshka=matryoshka,
        encoder=None if args.short_path else model, momentum=args.momentum,
    )
    if args.objective == "kl":  # in-batch KL from a frozen teacher (another random model) run on the fly
        teacher = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, pooler="cls", mlp_head=False))
        objective = InBatchKL(0.1, teacher_temperature=0.05, teacher=teacher.double() if args.float64 else teacher)
    if args.objective == "guided":  # GISTEmbed: a frozen random guide masks gathered and queued candidates
        guide_model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, pooler="mean"))
        guide = Guide(guide_model.double() if args.float64 else guide_model, margin=0.002)
        objective = SimCSE(0.05, hard_negative_weight=0.3, queue_size=args.queue_size, encoder=model, guide=guide)
    columns: dict[str, object] = {}
    if args.objective in ("cosent", "angle"):  # scored pairs: every process ranks the global batch's pairs
        objective = ScoredPairs(args.objective, cosine_weight=0.5 if args.objective == "angle" else 0.0)
        columns = {"anchor_column": "sent0", "positive_column": "sent1", "score_column": "score", "score_scale": 5}
    training_args = ContrastiveTrainingArguments(
        output_dir=out, per_device_train_batch_size=batch, gradient_accumulation_steps=args.grad_accum,
        max_steps=args.steps, learning_rate=0.1, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=0, disable_tqdm=True,
        dataloader_drop_last=True,
    )
    recorder = Recorder()
    collator = None if args.short_path else TextPairCollator.from_column_names(
        tokenizer, train.column_names, max_length=16, **columns  # type: ignore[arg-type]
    )
    evaluators = [STSEvaluator(["a red cat", "a dog"], ["a red cat", "a big tree"], [5.0, 0.0], tokenizer)] if args.evaluate_first else []
    trainer = SequentialTrainer(
        model=model, args=training_args, objective=objective, train_dataset=train, data_collator=collator,
        processing_class=tokenizer, evaluators=evaluators, callbacks=[recorder],
    )
    if args.evaluate_first:  # the recipes' evaluation before training: the model must still train under DDP
        trainer.evaluate()
    trainer.losses = []
    trainer.train()
    dump = {
        "losses": trainer.losses,
        "grads": recorder.grads,
        "weights": {n: p.detach().clone() for n, p in model.named_parameters()},
        "objective": {k: v.clone() for k, v in objective.state_dict().items()},
    }
    os.makedirs(out, exist_ok=True)
    torch.save(dump, os.path.join(out, f"rank{rank()}.pt"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--cases", required=True, help='JSON: {"name": ["--flag", ...], ...}')
    args = parser.parse_args()
    for name, flags in json.loads(args.cases).items():
        print(f"[rank {rank()}] case {name}: {' '.join(flags)}", flush=True)  # a failure's log names its case
        run_case(case_parser().parse_args(flags), os.path.join(args.out, name), args.batch)


if __name__ == "__main__":
    main()
