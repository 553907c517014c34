"""What :class:`~hfcontrast.trainer.ContrastiveTrainer` builds when it is not given: the tokenizer, and the
collator from the dataset's columns and the objective's views (``objective.modality``).

* **text** (SimCSE, distillation): two or more text columns are pairs or triplets in a known convention
  (:data:`~hfcontrast.collators.KNOWN_TRIPLETS`, ``negative_1 .. k``); one text column is unsupervised
  SimCSE (the same text as anchor and positive). Prompts come from the model's config; ids from the
  normalised text for false-negative masking; SupCon labels from a ``label`` column.
* **image** (SimCLR, MoCo, BYOL, ...): the first image column, two views of the objective's paper
  pipeline (``objective.augmentation``) at the image processor's size and normalisation (else the
  backbone's ``image_size`` and ImageNet statistics). Each row's index goes into a ``row_index`` column, so
  a row's views depend on ``(seed, epoch, row)`` only: new views every epoch, the same ones on resume.
* **image-text** (CLIP, SigLIP): the image column and a caption column (``caption``, ``captions``,
  ``text``), the deterministic view of the image tower, one caption sampled per row and epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import datasets
from torch import nn
from transformers import AutoTokenizer

from ..augment import IMAGENET_MEAN, IMAGENET_STD, eval_pipeline, normalization_from_processor, view_pipelines
from ..collators import ImageTextCollator, MultiViewCollator, TextPairCollator
from ..collators.seeding import with_index_column
from ..objectives import ContrastiveObjective, InfoNCEObjective

logger = logging.getLogger(__name__)
INDEX_COLUMN = "row_index"
CAPTION_COLUMNS = ("caption", "captions", "text", "sentence")
IMAGE_COLUMNS = ("image", "img", "picture", "pixel_values")
#: Token limits when the model sets none: sentence-transformers' usual 256 for text, CLIP's 77 for captions.
TEXT_MAX_LENGTH, CAPTION_MAX_LENGTH = 256, 77


def column_names(dataset: Any) -> list[str]:
    """A dataset's columns (``datasets`` map-style or streaming, or a sequence of row mappings)."""
    names = getattr(dataset, "column_names", None)
    if names is None and getattr(dataset, "features", None) is not None:
        names = list(dataset.features)
    if names is None and isinstance(dataset, Sequence) and len(dataset):
        names = list(dataset[0])
    if not names:
        raise ValueError("cannot read the training dataset's columns: pass data_collator=")
    return list(names)


def default_processing_class(model: nn.Module | None, objective: ContrastiveObjective) -> Any:
    """The tokenizer of the checkpoint the model was loaded from, for text and image-text objectives."""
    source = getattr(model, "name_or_path", None)
    if objective.modality == "image" or not source:
        return None
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ValueError(f"no tokenizer found with the model ({source}): pass processing_class=<a tokenizer>") from error


def default_collator(
    dataset: Any, objective: ContrastiveObjective, model: nn.Module, processing_class: Any, seed: int
) -> tuple[Any, Any]:
    """``(dataset, collator)`` for ``objective``'s views (see the module doc); image data gets a row index."""
    names = column_names(dataset)
    if objective.modality == "text":
        return dataset, _text_collator(dataset, names, objective, model, _tokenizer(processing_class))
    dataset = _indexed(dataset)
    if objective.modality == "image_text":
        return dataset, _image_text_collator(dataset, names, model, processing_class, seed)
    return dataset, _image_collator(dataset, names, objective, model, processing_class, seed)


def _tokenizer(processing_class: Any) -> Any:
    tokenizer = getattr(processing_class, "tokenizer", None) or processing_class
    if tokenizer is None or not callable(tokenizer):
        raise ValueError("text views need a tokenizer: pass processing_class=<a tokenizer> (or data_collator=)")
    return tokenizer


def _flags(objective: ContrastiveObjective, names: list[str]) -> tuple[bool, str | None]:
    """``(mask duplicates, SupCon label column)`` of the objective's negative handling."""
    negatives = objective.negatives if isinstance(objective, InfoNCEObjective) else None
    if negatives is None or not negatives.supervised:
        return bool(negatives and negatives.mask_duplicates), None
    label = next((name for name in ("label", "labels") if name in names), None)
    if label is None:
        raise ValueError(f"SupCon needs a label column ('label'); the dataset has {names}: pass data_collator=")
    return False, label


def _text_columns(dataset: Any, names: list[str]) -> list[str]:
    features = getattr(dataset, "features", None)
    if features:
        strings = ("string", "large_string")
        names = [n for n in names if isinstance(features[n], datasets.Value) and features[n].dtype in strings]
    return [n for n in names if not n.startswith("teacher_")]


def _text_collator(
    dataset: Any, names: list[str], objective: ContrastiveObjective, model: nn.Module, tokenizer: Any
) -> TextPairCollator:
    masking, labels = _flags(objective, names)
    config = getattr(model, "config", None)
    limit = getattr(config, "max_seq_length", None) or min(int(tokenizer.model_max_length), TEXT_MAX_LENGTH)
    kwargs: dict[str, Any] = {
        "max_length": limit, "ids_from_text": masking, "label_column": labels,
        "prompts": getattr(config, "prompts", None), "teacher_embeddings": any(n.startswith("teacher_") for n in names),
    }  # fmt: skip
    texts = [n for n in _text_columns(dataset, names) if n != labels]
    if len(texts) > 1:
        return TextPairCollator.from_column_names(tokenizer, texts, **kwargs)
    if len(texts) == 1:  # unsupervised: the text is anchor and positive, dropout makes the views
        return TextPairCollator(tokenizer, texts[0], texts[0], **kwargs)
    raise ValueError(f"no text column in the training dataset ({names}): pass data_collator=")


def _indexed(dataset: Any) -> Any:
    if isinstance(dataset, datasets.Dataset):
        return with_index_column(dataset, INDEX_COLUMN)
    logger.warning("the training data is not a datasets.Dataset: its views are drawn from a per-worker stream, "
                   "not per row (a resumed run draws other views)")  # fmt: skip
    return dataset


def _image_column(dataset: Any, names: list[str]) -> str:
    features = getattr(dataset, "features", None) or {}
    found = [n for n in names if isinstance(features.get(n), datasets.Image)] or [n for n in IMAGE_COLUMNS if n in names]
    if not found:
        raise ValueError(f"no image column in the training dataset ({names}): pass data_collator=")
    return found[0]


def _geometry(processing_class: Any, vision_config: Any) -> tuple[int, Any, Any]:
    """``(size, mean, std)`` of the views: the image processor's, else the backbone's ``image_size``."""
    processor = getattr(processing_class, "image_processor", None) or processing_class
    size = _processor_size(processor) or getattr(vision_config, "image_size", None)
    if not isinstance(size, int):
        raise ValueError(
            f"the view size is unknown ({type(vision_config).__name__} has no image_size): pass "
            "processing_class=<an image processor> or data_collator="
        )
    if processor is not None and getattr(processor, "image_mean", None) is not None:
        return size, *normalization_from_processor(processor)
    return size, IMAGENET_MEAN, IMAGENET_STD


def _processor_size(processor: Any) -> int | None:
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None)
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    elif size is not None and not isinstance(size, int):  # transformers >= 5.2x: a SizeDict, read by attribute
        size = getattr(size, "height", None) or getattr(size, "shortest_edge", None)
    return int(size) if isinstance(size, int) else None


def _image_collator(
    dataset: Any, names: list[str], objective: ContrastiveObjective, model: nn.Module, processing_class: Any, seed: int
) -> MultiViewCollator:
    masking, labels = _flags(objective, names)
    config = getattr(model, "config", None)
    size, mean, std = _geometry(processing_class, getattr(config, "backbone_config", None))
    pipelines = view_pipelines(objective.augmentation or "simclr", size, mean, std)
    ids = INDEX_COLUMN if (objective.needs_row_ids or masking) else None
    return MultiViewCollator(
        _image_column(dataset, names), pipeline=pipelines, seed=seed, index_column=INDEX_COLUMN, id_column=ids,
        label_column=labels, eval_pipeline=eval_pipeline(size, mean, std, resize_size=size),
    )  # fmt: skip


def _image_text_collator(
    dataset: Any, names: list[str], model: nn.Module, processing_class: Any, seed: int
) -> ImageTextCollator:
    caption = next((n for n in CAPTION_COLUMNS if n in names), None)
    if caption is None:
        raise ValueError(f"no caption column ({', '.join(CAPTION_COLUMNS)}) in the training dataset ({names})")
    tokenizer = _tokenizer(processing_class)
    config = getattr(model, "config", None)
    size, mean, std = _geometry(processing_class, getattr(config, "vision_config", None))
    if getattr(processing_class, "image_processor", None) is None:
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # a new image tower: pixels in [-1, 1]
    view = eval_pipeline(size, mean, std, resize_size=size)
    image = _image_column(dataset, [n for n in names if n != caption])
    return ImageTextCollator(
        view, tokenizer, image_column=image, caption_column=caption, seed=seed, index_column=INDEX_COLUMN,
        max_length=min(int(tokenizer.model_max_length), CAPTION_MAX_LENGTH),
    )  # fmt: skip
