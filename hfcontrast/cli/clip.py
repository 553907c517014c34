"""What ``recipes/clip.py`` needs besides wiring: its model and data arguments, the dual encoder, the image
processor and views, the evaluators."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, PreTrainedConfig, ViTImageProcessorPil

from ..augment import ViewPipeline, eval_pipeline, normalization_from_processor, simclr_pipeline
from ..collators import ImageEvalCollator, ImageTextCollator
from ..demo import captions, default_text_model
from ..demo.image_text import ImageTextData, demo_vision_config
from ..evaluation import RetrievalEvaluator, ZeroShotEvaluator
from ..models import ContrastiveDualEncoder

logger = logging.getLogger(__name__)


@dataclass
class DualModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An hfcontrast dual encoder or a Hugging Face CLIP checkpoint."}
    )
    vision_model_name_or_path: str | None = field(default=None, metadata={"help": "Pretrained image tower."})
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained text tower (default: the packaged all-MiniLM-L6-v2)."}
    )
    vision_config_name: str | None = field(
        default=None, metadata={"help": "Random-init image tower: a model type ('vit', 'resnet') or config path "
                                        "(default: a 4-layer ViT, patch 4, on 28x28 images)."}
    )
    vision_config_overrides: str | None = field(
        default=None, metadata={"help": "e.g. 'hidden_size=64,num_hidden_layers=2,image_size=32'."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer (default: the text tower's)."})
    projection_dim: int = field(default=128, metadata={"help": "Shared embedding size (new models)."})
    text_pooler: str = field(
        default="pooler_output",
        metadata={"help": "pooler_output (each tower's own, what VisionTextDualEncoderModel exports) | cls | mean | max | ..."},
    )
    vision_pooler: str = field(default="pooler_output", metadata={"help": "pooler_output | cls | mean"})
    learnable_logit_scale: bool = field(default=True, metadata={"help": "Learn the temperature."})
    text_trainable_layers: int = field(
        default=0,
        metadata={"help": "0: lock the text tower (LiT-style: only its projection trains; fast on CPU); "
                          "k: train its top k layers; -1: train it all."},
    )


@dataclass
class ImageTextDataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A datasets Hub name (needs network)."})
    train_file: str | None = field(default=None, metadata={"help": ".csv/.json(l) with image paths and captions."})
    train_dir: str | None = field(default=None, metadata={"help": "An imagefolder (class sub-folders or metadata)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Evaluation data (file or folder); default: hold out 5%% of training rows."}
    )
    image_column: str = field(default="image", metadata={"help": "Image column (PIL, path or bytes)."})
    caption_column: str = field(
        default="caption", metadata={"help": "Caption column: a string or a list (one sampled per step). If "
                                             "absent, captions are built from the label column's class names."}
    )
    label_column: str = field(default="label", metadata={"help": "Class column for zero-shot evaluation."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most N images."})
    max_seq_length: int = field(default=32, metadata={"help": "Truncate captions to this many tokens."})
    augment: bool = field(default=False, metadata={"help": "Random resized crops and flips of training images."})
    train_shards: str | None = field(
        default=None,
        metadata={"help": "Train from WebDataset tar shards (image + .txt/.json captions), streamed, e.g. "
                  "'data/train-{00000..00009}.tar' (python -m hfcontrast.shards); the evaluation stays the demo's "
                  "or --validation_file's. Needs --max_steps."},
    )
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "With --train_shards: rows held to shuffle."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream --train_file, --train_dir or --dataset_name (datasets' IterableDataset) instead of "
                  "loading it, shuffled by --shuffle_buffer_size rows; the evaluation is --validation_file's, else the "
                  "demo's. Needs --max_steps."},
    )


def build_dual_encoder_from(args: DualModelArguments, siglip: bool) -> tuple[ContrastiveDualEncoder, Any, str | None]:
    """:func:`build_dual_encoder` from the recipe's model arguments, with the text tower locked as asked."""
    model, tokenizer, pretrained = build_dual_encoder(
        model_name_or_path=args.model_name_or_path, vision_model_name_or_path=args.vision_model_name_or_path,
        text_model_name_or_path=args.text_model_name_or_path, tokenizer_name=args.tokenizer_name,
        vision_config_name=args.vision_config_name, vision_config_overrides=args.vision_config_overrides,
        siglip=siglip, projection_dim=args.projection_dim, text_pooler=args.text_pooler,
        vision_pooler=args.vision_pooler, learnable_logit_scale=args.learnable_logit_scale,
    )  # fmt: skip
    model.lock_tower("text", args.text_trainable_layers)
    return model, tokenizer, pretrained


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
        if "hidden_size" in overrides and "pooler_output_size" not in overrides and hasattr(config, "pooler_output_size"):
            config.pooler_output_size = config.hidden_size  # ViT's pooler follows a new width, as at construction
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
