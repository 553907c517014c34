"""The step's other levers, each switchable and equal to the plain path: gradient checkpointing with every family
(and GradCache), padding-free packing (against the padded forward, every pooling; refused where it cannot run),
and the channels-last memory format."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from transformers import ResNetConfig
from transformers.masking_utils import create_bidirectional_mask

from hfcontrast import (
    ContrastiveTrainer,
    ContrastiveTrainingArguments,
    ContrastiveVisionConfig,
    ContrastiveVisionModel,
    SimCLR,
)
from hfcontrast.objectives import SimCSE
from hfcontrast.trainer.views import embed_views, packed_inputs, split_views
from tests.test_gradcache import grads, reset
from tests.test_view_forwards import batch_of
from tests.tiny import text_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
host_syncs = importlib.import_module("host_syncs")


def losses(trainer: Any) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("family", sorted(host_syncs.families()))
def test_gradient_checkpointing_trains_every_family_to_the_same_losses(family: str) -> None:
    """Trainer's ``gradient_checkpointing`` (the recomputation replays dropout's draws): the same losses, step by
    step, as the run that keeps its activations; the backbone really checkpoints."""
    plain = host_syncs.train_family(family, 4, logging_steps=1)
    checkpointed = host_syncs.train_family(family, 4, logging_steps=1, gradient_checkpointing=True)
    model = checkpointed.accelerator.unwrap_model(checkpointed.model)
    backbones = [m for m in model.modules() if getattr(m, "supports_gradient_checkpointing", False) and m is not model]
    assert backbones and all(m.is_gradient_checkpointing for m in backbones)
    assert losses(checkpointed) == losses(plain)


#: The CPU stand-in for packed kernels: SDPA with the block-diagonal mask transformers builds from packed position ids
#: (its bidirectional mask reads position ids after 5.10; the trainer refuses SDPA for padding_free either way).
SDPA_READS_PACKED_POSITIONS = "position_ids" in inspect.signature(create_bidirectional_mask).parameters


@pytest.mark.skipif(not SDPA_READS_PACKED_POSITIONS, reason="this transformers' SDPA mask ignores packed position ids")
@pytest.mark.parametrize("pooler", ["cls", "mean", "max", "first_last_avg"])
def test_packed_rows_embed_as_the_padded_batch(pooler: str) -> None:
    """Padding-free packing (rows one after another, position ids restarting, cu_seq_lens) against the padded
    forward: embeddings, loss and gradients, for every pooling. On the CPU the attention is SDPA, which keeps the
    packed sequences apart from the position ids; flash and flex attention run it in tests/gpu."""
    torch.manual_seed(0)
    model = text_model(pooler=pooler, dropout=0.0, mlp_head=False)
    batch = batch_of()
    views, _ = split_views(batch)
    objective = SimCSE(0.05)
    results = []
    for packed in (False, True):
        reset(model)
        embeddings = embed_views(model, views, batch["lengths"], "merged", packed=packed)
        loss = objective(embeddings, batch).loss
        loss.backward()
        results.append((loss.detach(), {k: v.detach() for k, v in embeddings.items()}, grads(model)))
    (loss, embeddings, gradients), (packed_loss, packed_embeddings, packed_gradients) = results
    torch.testing.assert_close(packed_loss, loss, rtol=1e-6, atol=1e-6)
    for name in embeddings:
        torch.testing.assert_close(packed_embeddings[name], embeddings[name], rtol=1e-5, atol=1e-5, msg=name)
    for name in gradients:
        torch.testing.assert_close(packed_gradients[name], gradients[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packed_inputs_hold_each_row_once_without_padding() -> None:
    batch = batch_of()
    anchor, lengths = batch["anchor"], batch["lengths"].views["anchor"]
    packed = packed_inputs(anchor, lengths)
    assert packed["input_ids"].shape == (1, sum(lengths)) and packed["max_length"] == max(lengths)
    assert packed["cu_seq_lens"].tolist() == [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    start = 0
    for row, n in enumerate(lengths):
        assert packed["input_ids"][0, start : start + n].tolist() == anchor["input_ids"][row, :n].tolist()
        assert packed["position_ids"][0, start : start + n].tolist() == list(range(n))
        start += n


def _trainer(tmp_path: Path, model: torch.nn.Module, objective: Any, rows: Any, processing_class: Any = None,
             **args: Any) -> ContrastiveTrainer:  # fmt: skip
    arguments = ContrastiveTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, use_cpu=True,
                                             report_to=[], save_strategy="no", seed=0, disable_tqdm=True, **args)  # fmt: skip
    return ContrastiveTrainer(model=model, args=arguments, objective=objective, train_dataset=rows, processing_class=processing_class)


def test_padding_free_is_refused_where_it_cannot_run(tmp_path: Path) -> None:
    from tests.tiny import tokenizer

    rows = datasets.Dataset.from_dict({"text": [f"sentence number {i}" for i in range(8)]})
    with pytest.raises(ValueError, match=r"padding_free needs an attention implementation .* uses 'sdpa'.*pip install flash-attn"):
        _trainer(tmp_path, text_model(pooler="mean"), SimCSE(), rows, padding_free=True, processing_class=tokenizer())
    with pytest.raises(ValueError, match="does not combine with GradCache"):
        _trainer(tmp_path, text_model(pooler="mean"), SimCSE(), rows, padding_free=True, gradcache_chunk_size=2,
                 processing_class=tokenizer())  # fmt: skip
    flex = text_model(pooler="mean")
    flex.backbone.set_attn_implementation("flex_attention")
    with pytest.raises(ValueError, match="flex attention has no backward on the CPU"):
        _trainer(tmp_path, flex, SimCSE(), rows, padding_free=True, processing_class=tokenizer())


def resnet() -> ContrastiveVisionModel:
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=backbone, projection_dim=8, projection_hidden_dim=16))


def test_channels_last_trains_to_the_same_losses(tmp_path: Path) -> None:
    """NHWC weights and inputs change the memory layout only: the losses match the NCHW run."""
    from transformers import ConvNextImageProcessor

    from tests.test_short_path import images

    rows = datasets.Dataset.from_dict({"image": images(12)})
    processor = ConvNextImageProcessor(size={"shortest_edge": 16}, crop_pct=1.0)
    runs = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        trainer = _trainer(tmp_path / str(channels_last), resnet(), SimCLR(0.2), rows, channels_last=channels_last,
                           logging_steps=1, processing_class=processor)  # fmt: skip
        trainer.train()
        runs.append(losses(trainer))
        conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(torch.tensor(runs[1]), torch.tensor(runs[0]), rtol=1e-5, atol=1e-6)
