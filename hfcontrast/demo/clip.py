"""What ``recipes/clip.py`` needs besides wiring: its data, its default image tower, its model and views.

The offline default pairs Fashion-MNIST with captions built from class names and pixel attributes
(:mod:`hfcontrast.demo.captions`); user data is an image-caption file, an imagefolder or a Hub dataset.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    PreTrainedConfig,
    ViTConfig,
    ViTImageProcessorPil,
)

from ..augment import ViewPipeline, eval_pipeline, normalization_from_processor, simclr_pipeline
from ..collators import ImageEvalCollator, ImageTextCollator
from ..evaluation import RetrievalEvaluator, ZeroShotEvaluator
from ..models import ContrastiveDualEncoder
from . import captions
from .images import load_image_dataset
from .text import default_text_model

logger = logging.getLogger(__name__)


@dataclass
class ImageTextData:
    """Training pairs, evaluation images (zero-shot), retrieval pairs, class names, the data's name."""

    train: Any
    evaluation: Any
    pairs: Any
    class_names: list[str] | None
    name: str


def load_image_text_data(
    *,
    train_source: str | None,
    dataset_name: str | None,
    validation_file: str | None,
    image_column: str,
    caption_column: str,
    label_column: str,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    seed: int,
) -> ImageTextData:
    """The CLIP recipe's data; with no source, captioned Fashion-MNIST (train / test splits)."""
    if not (dataset_name or train_source):
        train = captions.fashion_mnist_captions("train", max_samples=max_train_samples)
        test = captions.fashion_mnist_captions("test", max_samples=max_eval_samples)
        classes = list(captions.FASHION_MNIST_CLASS_NAMES)
        return ImageTextData(train, test, captions.unique_description_pairs(test), classes, "fashion_mnist")

    def load(source: str | None, name: str | None, limit: int | None) -> Any:
        data = load_image_dataset(source, name, image_column=image_column, max_samples=limit)
        feature = data.features.get(label_column)
        if caption_column not in data.column_names:
            if not hasattr(feature, "names"):
                raise ValueError(f"no caption column {caption_column!r} and no class-label column "
                                 f"{label_column!r} to build captions from (columns: {data.column_names})")  # fmt: skip
            data = captions.caption_dataset(data, feature.names, image_column=image_column, attributes=False,
                                            label_column=label_column, caption_column=caption_column)  # fmt: skip
        return data

    train = load(train_source, dataset_name, max_train_samples)
    if validation_file:
        evaluation = load(validation_file, None, max_eval_samples)
    else:
        held_out = min(max_eval_samples or 1000, 1000, max(2, len(train) // 20))
        split = train.train_test_split(test_size=held_out, seed=seed)
        train, evaluation = split["train"], split["test"]
    feature = evaluation.features.get(label_column)
    names = list(feature.names) if hasattr(feature, "names") else None
    if "description" in evaluation.column_names:  # captions built from class names: one image per class
        pairs = captions.unique_description_pairs(evaluation, caption_column=caption_column)
    else:
        pairs = captions.first_caption_pairs(evaluation, caption_column)
    return ImageTextData(train, evaluation, pairs, names, dataset_name or train_source or "")


def demo_vision_config() -> ViTConfig:
    """The demo's image tower: a 4-layer ViT, patch 4, on 28x28 images (128 wide)."""
    return ViTConfig(image_size=28, patch_size=4, num_channels=3, hidden_size=128, num_hidden_layers=4,
                     num_attention_heads=4, intermediate_size=256)  # fmt: skip


def vision_config(name: str | None, overrides: str | None) -> PreTrainedConfig:
    """A random-init image tower's config: the demo's, a config folder, or a model type (``vit``, ``resnet``)."""
    config: PreTrainedConfig
    if name is None:
        config = demo_vision_config()
    elif os.path.exists(name):
        config = AutoConfig.from_pretrained(name)
    else:
        config = AutoConfig.for_model(name)
    if overrides:
        config.update_from_string(overrides)
    return config


def build_dual_encoder(
    *,
    model_name_or_path: str | None,
    vision_model_name_or_path: str | None,
    text_model_name_or_path: str | None,
    tokenizer_name: str | None,
    vision_config_name: str | None,
    vision_config_overrides: str | None,
    siglip: bool,
    **settings: Any,
) -> tuple[ContrastiveDualEncoder, Any, str | None]:
    """``(model, tokenizer, path of a pretrained image processor or None)``: a CLIP or hfcontrast
    checkpoint, pretrained towers, or a new image tower beside the pretrained (default: packaged) text tower."""
    if siglip:  # the paper's initialisation: t = 10, b = -10
        settings |= {"logit_scale_init_value": math.log(10.0), "logit_bias_init_value": -10.0}
    if model_name_or_path:
        path = model_name_or_path
        if AutoConfig.from_pretrained(path).model_type == "clip":
            siglip_init = {k: v for k, v in settings.items() if k.startswith("logit_")}
            model = ContrastiveDualEncoder.from_clip_pretrained(path, **siglip_init)
        else:
            model = ContrastiveDualEncoder.from_pretrained(path)
        return model, AutoTokenizer.from_pretrained(tokenizer_name or path), path
    text_path = text_model_name_or_path or default_text_model()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or text_path)
    if vision_model_name_or_path:
        model = ContrastiveDualEncoder.from_vision_text_pretrained(vision_model_name_or_path, text_path, **settings)
        return model, tokenizer, vision_model_name_or_path
    vision = vision_config(vision_config_name, vision_config_overrides)
    return ContrastiveDualEncoder.from_text_pretrained(text_path, vision, **settings), tokenizer, None


def image_processor_for(model: ContrastiveDualEncoder, pretrained: str | None) -> Any:
    """The pretrained tower's image processor, else one matching the random-init tower (resize, [-1, 1])."""
    if pretrained is not None:
        try:
            return AutoImageProcessor.from_pretrained(pretrained)
        except ImportError as error:  # transformers < 5.18 needs torchvision for AutoImageProcessor
            raise ImportError(
                f"loading the image processor of {pretrained} needs torchvision with this transformers: "
                "pip install torchvision, or transformers>=5.18"
            ) from error
        except (OSError, ValueError):
            logger.warning("%s has no image processor: resizing to the tower's image_size, mean/std 0.5", pretrained)
    size = int(getattr(model.config.vision_config, "image_size", 224))
    return ViTImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def image_views(model: ContrastiveDualEncoder, processor: Any, augment: bool) -> tuple[ViewPipeline, ViewPipeline]:
    """``(train view, eval view)`` at the image tower's size and the processor's normalisation; the train
    view adds random resized crops and colour jitter with ``augment``."""
    mean, std = normalization_from_processor(processor)
    size = int(getattr(model.config.vision_config, "image_size", 224))
    evaluation = eval_pipeline(size, mean, std, resize_size=size)
    if not augment:
        return evaluation, evaluation
    train = simclr_pipeline(size, crop_scale=(0.5, 1.0), jitter_strength=0.4, blur_p=0.0, grayscale_p=0.0, mean=mean, std=std)
    return train, evaluation


def image_text_evaluators(
    data: ImageTextData, view: ViewPipeline, tokenizer: Any, *, label_column: str, **columns: Any
) -> list[Any]:
    """Zero-shot classification with held-out templates (when the data has classes) and image-text retrieval."""
    evaluators: list[Any] = []
    if data.class_names is not None and label_column in data.evaluation.column_names:
        evaluators.append(ZeroShotEvaluator(
            data.evaluation, collate_fn=ImageEvalCollator(columns["image_column"], label_column, view),
            class_names=data.class_names, templates=captions.HELD_OUT_TEMPLATES, tokenizer=tokenizer, name="zeroshot",
        ))  # fmt: skip
    # ImageTextCollator refuses 1-row batches (no negatives): never leave a last batch of one pair.
    batch_size = 256 if len(data.pairs) % 256 != 1 else 255
    pairs = ImageTextCollator(view, tokenizer, **columns)
    evaluators.append(RetrievalEvaluator(data.pairs, collate_fn=pairs, name="retrieval", batch_size=batch_size))
    return evaluators
