"""Train tiny text, image and image-text models a few steps and dump losses, gradients, weights and
objective state per process.

Run under ``accelerate launch`` (2 processes) in every mode of ``MODES`` (GradCache by rows, by tokens, and the
plain step), one after the other in the same processes, and as a plain single process over the concatenated batch;
tests/test_gradcache_distributed.py compares the dumps (``{mode: {family: record}}``). fp64,
dropout off (each rank draws its own masks, a single process other ones).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import datasets
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import SequentialSampler
from transformers import AutoTokenizer, BertConfig, TrainerCallback, ViTConfig

from hfcontrast import (
    ContrastiveTextConfig,
    ContrastiveTextModel,
    ContrastiveVisionConfig,
    ContrastiveVisionModel,
)
from hfcontrast.collators import TextPairCollator
from hfcontrast.demo import default_text_model
from hfcontrast.distributed import rank
from hfcontrast.models import ContrastiveDualEncoder, ContrastiveDualEncoderConfig
from hfcontrast.objectives import CLIP, SimCLR, SimCSE
from hfcontrast.objectives.base import ContrastiveObjective
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments

WORDS = ["red", "blue", "green", "cat", "dog", "bird", "runs", "sleeps", "eats", "big", "small", "old", "new", "fast", "slow", "tree", "car", "road"]
TOKENIZER = AutoTokenizer.from_pretrained(default_text_model())


def phrases(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 8, (n,), generator=g).tolist()
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (k,), generator=g).tolist()) for k in lengths]


def image(index: int, seed: int) -> torch.Tensor:
    return torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1000 * seed + index), dtype=torch.float64)


class Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


class SequentialTrainer(ContrastiveTrainer):
    losses: list[float]

    def _get_train_sampler(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return SequentialSampler(self.train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.losses.append(float(loss) * self.current_gradient_accumulation_steps)
        return loss


def record(trainer: SequentialTrainer, recorder: Recorder) -> dict[str, Any]:
    """What the parity tests compare: losses, gradients, weights, objective state, and whether DDP ran."""
    assert trainer.model is not None
    return {
        "losses": trainer.losses,
        "grads": recorder.grads,
        "weights": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
        "objective": {k: v.clone() for k, v in trainer.objective.state_dict().items()},
        "ddp": isinstance(trainer.model_wrapped, DistributedDataParallel),
    }


def text_family() -> tuple[Any, ContrastiveObjective, datasets.Dataset, Any]:
    backbone = BertConfig(vocab_size=TOKENIZER.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = ContrastiveTextModel(ContrastiveTextConfig(backbone_config=backbone, pooler="mean")).double()
    objective = SimCSE(0.05, hard_negative_weight=0.3, symmetric=True, queue_size=10, encoder=model)
    rows = datasets.Dataset.from_dict({"sent0": phrases(64, 0), "sent1": phrases(64, 1), "hard_neg": phrases(64, 2)})
    return model, objective, rows, TextPairCollator.from_column_names(TOKENIZER, rows.column_names, max_length=16)


def image_family() -> tuple[Any, ContrastiveObjective, datasets.Dataset, Any]:
    backbone = ViTConfig(image_size=16, patch_size=8, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=24)
    config = ContrastiveVisionConfig(backbone_config=backbone, projection="linear", projection_dim=8)
    model = ContrastiveVisionModel(config).double()

    def collate(rows: list[dict[str, int]]) -> dict[str, Any]:
        views = {name: torch.stack([image(row["idx"], seed) for row in rows]) for name, seed in (("query", 1), ("key", 2))}
        return {name: {"pixel_values": value} for name, value in views.items()}

    return model, SimCLR(0.2), datasets.Dataset.from_dict({"idx": list(range(64))}), collate


def image_text_family() -> tuple[Any, ContrastiveObjective, datasets.Dataset, Any]:
    from transformers import CLIPVisionConfig

    vision = CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                              image_size=16, patch_size=8)
    text = BertConfig(vocab_size=TOKENIZER.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    config = ContrastiveDualEncoderConfig(vision_config=vision, text_config=text, projection_dim=16,
                                          vision_pooler="pooler_output")
    model = ContrastiveDualEncoder(config).double()
    captions = phrases(64, 3)

    def collate(rows: list[dict[str, int]]) -> dict[str, Any]:
        text = TOKENIZER([captions[row["idx"]] for row in rows], padding=True, return_tensors="pt")
        return {"image": {"pixel_values": torch.stack([image(row["idx"], 3) for row in rows])}, "text": dict(text)}

    objective = CLIP(model, queue_size=8)
    return model, objective, datasets.Dataset.from_dict({"idx": list(range(64))}), collate


FAMILIES = {"text": text_family, "image": image_family, "image_text": image_text_family}
#: ``(gradcache_chunk_size, gradcache_tokens)`` of each mode: chunks of 3 rows, text chunks of at most 20 tokens, none.
MODES = {"gradcache": (3, None), "tokens": (3, 20), "plain": (None, None)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--modes", default="plain", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--grad_accum", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    dump: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        chunk, tokens = MODES[mode]
        dump[mode] = {}
        for family in args.families.split(","):
            print(f"[rank {rank()}] mode {mode}, family {family}", flush=True)  # a failure's log names its run
            torch.manual_seed(0)
            model, objective, rows, collate = FAMILIES[family]()
            training_args = ContrastiveTrainingArguments(
                output_dir=os.path.join(args.out, mode, family), per_device_train_batch_size=args.batch,
                gradient_accumulation_steps=args.grad_accum, max_steps=args.steps, learning_rate=0.1, optim="sgd",
                lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[], save_strategy="no", logging_steps=1,
                use_cpu=True, seed=0, disable_tqdm=True, dataloader_drop_last=True, gradcache_chunk_size=chunk,
                gradcache_tokens=tokens,
                bad_rows="unchecked",  # row indices made here, collated by functions of the test's own
            )
            recorder = Recorder()
            trainer = SequentialTrainer(model=model, args=training_args, objective=objective, train_dataset=rows,
                                        data_collator=collate, callbacks=[recorder])
            trainer.losses = []
            trainer.train()
            dump[mode][family] = record(trainer, recorder)
    os.makedirs(args.out, exist_ok=True)
    torch.save(dump, os.path.join(args.out, f"rank{rank()}.pt"))


if __name__ == "__main__":
    main()
