"""Each family briefly on CUDA in bf16 (skipped without a GPU): finite losses, every statistic, queue and
momentum tensor on the GPU, and an export that reloads. Run on a GPU machine: ``pytest tests/gpu -m gpu``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from transformers import AutoModel

from hfcontrast.collators import ImageTextCollator, MultiViewCollator, UnsupervisedSimCSECollator
from hfcontrast.objectives import CLIP, MoCo, ObjectiveOutput, SimCLR, SimCSE
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.test_objectives_clip import color_rows, tiny_dual
from tests.test_recipe_image import VIEW, image_rows, tiny_model
from tests.test_trainer_text import sentences
from tests.tiny import text_model, tokenizer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU suite runs on a GPU machine"),
]


def _train(tmp_path: Path, model: torch.nn.Module, objective: Any, rows: Any, collator: Any, **overrides: Any) -> tuple[ContrastiveTrainer, list[dict[str, torch.device]]]:
    values: dict[str, Any] = dict(
        output_dir=str(tmp_path / "out"), bf16=True, max_steps=4, per_device_train_batch_size=8, learning_rate=1e-3,
        logging_steps=1, report_to=[], save_strategy="no", disable_tqdm=True, dataloader_drop_last=True, seed=0,
    )  # fmt: skip
    values.update(overrides)
    trainer = ContrastiveTrainer(model=model, args=ContrastiveTrainingArguments(**values), objective=objective,
                                 train_dataset=rows, data_collator=collator)  # fmt: skip
    seen: list[dict[str, torch.device]] = []
    record = trainer.record_stats

    def spy(output: ObjectiveOutput) -> None:
        assert torch.isfinite(output.loss).all(), output.loss
        seen.append({name: value.device for name, value in output.stats.items()} | {"loss": output.loss.device})
        record(output)

    trainer.record_stats = spy  # type: ignore[method-assign]
    trainer.train()
    assert seen and all(device.type == "cuda" for step in seen for device in step.values()), seen
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    for name, tensor in [*objective.named_buffers(), *objective.named_parameters()]:
        assert tensor.device.type == "cuda", name
    return trainer, seen


def _reloads(trainer: ContrastiveTrainer, inputs: dict[str, torch.Tensor], tmp_path: Path) -> None:
    trainer.save_model(str(tmp_path / "export"))
    model = trainer.accelerator.unwrap_model(trainer.model).float().eval()
    loaded = AutoModel.from_pretrained(tmp_path / "export").cuda().eval()
    inputs = {k: v.cuda() for k, v in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).embeddings, model(**inputs).embeddings, rtol=1e-4, atol=1e-4)


def test_simcse_with_queue_momentum_and_gradcache(tmp_path: Path) -> None:
    model = text_model(pooler="mean")
    objective = SimCSE(0.05, queue_size=16, encoder=model, momentum=0.99)
    rows = datasets.Dataset.from_dict({"text": sentences(64)})
    trainer, _ = _train(tmp_path, model, objective, rows, UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16),
                        gradcache_chunk_size=4)  # fmt: skip
    assert objective.keys is not None and objective.keys.queue.embeddings.is_cuda and len(objective.keys) == 16
    _reloads(trainer, dict(tokenizer()(["a red cat", "the sea"], padding=True, return_tensors="pt")), tmp_path)


def test_simclr(tmp_path: Path) -> None:
    model = tiny_model()
    views = MultiViewCollator("image", pipeline=__import__("hfcontrast").augment.ViewPipeline.from_params(VIEW), seed=0,
                              index_column="row_index")  # fmt: skip
    trainer, _ = _train(tmp_path, model, SimCLR(0.2), image_rows(64), views)
    _reloads(trainer, {"pixel_values": torch.rand(2, 3, 16, 16)}, tmp_path)


def test_moco_v3(tmp_path: Path) -> None:
    model = tiny_model()
    objective = MoCo(model, version="v3", predictor_hidden_dim=16)
    views = MultiViewCollator("image", pipeline=__import__("hfcontrast").augment.ViewPipeline.from_params(VIEW), seed=0,
                              index_column="row_index")  # fmt: skip
    trainer, _ = _train(tmp_path, model, objective, image_rows(64), views)
    assert all(p.is_cuda for p in objective.key_encoder.parameters())
    _reloads(trainer, {"pixel_values": torch.rand(2, 3, 16, 16)}, tmp_path)


def test_clip_with_queue(tmp_path: Path) -> None:
    from hfcontrast.augment import eval_pipeline
    from tests.test_objectives_clip import tokenizer as clip_tokenizer

    model = tiny_dual()
    objective = CLIP(model, queue_size=8, momentum=0.9)
    collator = ImageTextCollator(eval_pipeline(16, resize_size=16), clip_tokenizer(), seed=1, index_column="idx")
    trainer, _ = _train(tmp_path, model, objective, color_rows(4, index=True), collator, per_device_train_batch_size=4)
    assert objective.image_queue is not None and objective.image_queue.queue.embeddings.is_cuda
    _reloads(trainer, {"pixel_values": torch.rand(2, 3, 16, 16)}, tmp_path)
