"""Views drawn on the training device (kornia) from raw images: deterministic per step, exact on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hfcontrast.augment import ViewPipeline
from hfcontrast.augment.device_views import DeviceViews
from hfcontrast.augment.kornia_aug import KorniaViewPipeline
from hfcontrast.collators import RawImageCollator
from hfcontrast.objectives import MoCo
from hfcontrast.trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from tests.launch import REPO_ROOT, run_python
from tests.test_recipe_image import VIEW, image_rows, max_difference, tiny_model
from tests.test_recipe_reliability import image_folder, moco_args

pytest.importorskip("kornia")


def test_raw_collator_ships_uint8_images_at_one_size() -> None:
    rows = [image_rows(4)[i] for i in range(4)]
    batch = RawImageCollator("image", 16, label_column="label")(rows)
    pixels = batch["images"]["pixel_values"]
    assert pixels.dtype == torch.uint8 and pixels.shape == (4, 3, 16, 16) and batch["labels"].tolist() == [0, 1, 2, 3]


def test_views_are_a_function_of_seed_step_micro_batch_and_view() -> None:
    rows = [image_rows(6)[i] for i in range(6)]
    raw = RawImageCollator("image", 20)(rows)
    views = DeviceViews(ViewPipeline.from_params(VIEW), seed=3)
    first = views(raw, step=5, micro=1)
    again = DeviceViews(ViewPipeline.from_params(VIEW), seed=3)(raw, step=5, micro=1)
    assert "images" not in first and first["query"]["pixel_values"].shape == (6, 3, 16, 16)
    for name in ("query", "key"):
        assert torch.equal(first[name]["pixel_values"], again[name]["pixel_values"])
    assert not torch.equal(first["query"]["pixel_values"], first["key"]["pixel_values"])
    assert not torch.equal(views(raw, step=6, micro=1)["query"]["pixel_values"], first["query"]["pixel_values"])
    # The same augmentation as the kornia pipeline with the view's seed.
    reference = KorniaViewPipeline.from_pipeline(ViewPipeline.from_params(VIEW))
    expected = reference(raw["images"]["pixel_values"].float() / 255, seed=views._seed(5, 1, 0))
    torch.testing.assert_close(first["query"]["pixel_values"], expected)


def _run(output: Path, resume: str | None) -> torch.nn.Module:
    model = tiny_model()
    objective = MoCo(model, queue_size=24, momentum=0.9, final_momentum=0.99)
    args = ContrastiveTrainingArguments(
        output_dir=str(output), use_cpu=True, report_to=[], seed=0, max_steps=8, per_device_train_batch_size=8,
        dataloader_drop_last=True, save_strategy="steps", save_steps=4, learning_rate=1e-2, logging_steps=1,
        disable_tqdm=True, gradient_accumulation_steps=2,
    )  # fmt: skip
    trainer = ContrastiveTrainer(
        model=model, args=args, objective=objective, train_dataset=image_rows(64), data_collator=RawImageCollator("image", 20),
        device_views=DeviceViews(ViewPipeline.from_params(VIEW), seed=0),
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    return model


def test_resume_with_device_views_is_exact(tmp_path: Path) -> None:
    straight = _run(tmp_path / "straight", None)
    resumed = _run(tmp_path / "resumed", str(tmp_path / "straight" / "checkpoint-4"))
    assert max_difference(straight.state_dict(), resumed.state_dict()) <= 1e-6


@pytest.mark.distributed
def test_image_recipe_draws_views_on_the_training_device(tmp_path: Path) -> None:
    train = image_folder(tmp_path / "images")
    out = tmp_path / "out"
    stdout = run_python(REPO_ROOT / "recipes" / "moco.py", *moco_args(tmp_path, train, out, "--max_steps", "3", "--augmentation_device", "cpu"))
    assert (out / "model.safetensors").is_file()
    assert "augmentation_device" in (out / "README.md").read_text(), stdout[-2000:]
