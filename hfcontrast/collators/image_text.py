"""Image-caption collator for CLIP-style training: rows -> ``{"image": ..., "text": ..., "caption_index": ...}``.

Images go through :func:`~hfcontrast.collators.images.load_rgb_image` (RGB, errors naming row and
column), then an augmentation :class:`~hfcontrast.augment.ViewPipeline` or a Hugging Face image
processor. A row's caption is a string or a list of strings (COCO-style, several captions per image):
one caption is sampled per row and step, and its position is returned as ``caption_index``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..augment import ViewPipeline
from .checks import RowSpec
from .decoding import load_rgb_image, require_int
from .lengths import LENGTHS_KEY, ViewLengths
from .seeding import CollatorEpochCallback as CollatorEpochCallback  # re-exported
from .seeding import SeededCollator, row_index, row_rng
from .validation import CollatorInputError, check_batch_size, require_column


def _captions(row: Mapping[str, Any], column: str, position: int) -> list[str]:
    """The row's captions: a non-empty string, or a non-empty list of non-empty strings."""
    value = require_column(row, column, position)
    where = f"row {position}, column {column!r}"
    if value is None:
        raise CollatorInputError(f"{where}: caption is None")
    if isinstance(value, str):
        if not value.strip():
            raise CollatorInputError(f"{where}: caption is empty")
        return [value]
    if isinstance(value, list | tuple):
        if not value:
            raise CollatorInputError(f"{where}: the list of captions is empty")
        for k, caption in enumerate(value):
            if not isinstance(caption, str):
                got = "None" if caption is None else type(caption).__name__
                raise CollatorInputError(f"{where}: caption {k} is {got}, expected a string")
            if not caption.strip():
                raise CollatorInputError(f"{where}: caption {k} is empty")
        return list(value)
    raise CollatorInputError(f"{where}: expected a caption string or a list of strings, got {type(value).__name__}")


class ImageTextCollator(SeededCollator):
    """Rows ``{image_column: image, caption_column: str | list[str]}`` -> named views for ``CLIP`` / ``SigLIP``.

    Output: ``{"image": {"pixel_values": [B, 3, H, W]}, "text": {"input_ids", "attention_mask", ...},
    "caption_index": LongTensor[B]}`` (the position of the sampled caption; 0 for a single string), plus
    ``ids`` / ``labels`` with ``id_column`` / ``label_column``.

    Args:
        image_processor_or_pipeline: a :class:`~hfcontrast.augment.ViewPipeline` (random or eval view),
            or a Hugging Face image processor (or a processor holding one as ``image_processor``),
            called as ``processor(images=..., return_tensors="pt")``.
        tokenizer: tokenises the sampled captions (padding to the longest, truncation at ``max_length``).
        augment: a ``ViewPipeline`` used instead of the processor (training augmentation).
        seed: seed of the random choices (caption sampling, augmentation).
        index_column: a column holding each row's dataset index (e.g. added with
            ``dataset.map(lambda _, i: {"idx": i}, with_indices=True)``).
        id_column / label_column: integer columns emitted as ``batch["ids"]`` (false-negative masking:
            rows sharing an image) and ``batch["labels"]`` (SupCon classes), as ``MultiViewCollator`` does.

    Randomness, and what makes a resumed run exact:

    * with ``index_column``, each row draws from its own ``random.Random`` seeded by
      ``(seed or 0, epoch, index)``: the caption and the augmentation of a row depend only on those,
      not on worker count, batch composition or what was skipped on resume. The epoch is set by
      :meth:`set_epoch`; add :class:`CollatorEpochCallback` to the trainer so that it follows the
      trainer's epoch (with non-persistent dataloader workers, which receive the collator per epoch).
    * without it, one per-collator ``random.Random(seed)`` stream is used (reseeded per dataloader
      worker from ``torch.initial_seed()``, as ``MultiViewCollator``). This stream is not saved in
      checkpoints, so a resumed run draws different captions/augmentations than an uninterrupted one.
    """

    def __init__(
        self,
        image_processor_or_pipeline: Any,
        tokenizer: PreTrainedTokenizerBase,
        image_column: str = "image",
        caption_column: str = "caption",
        max_length: int = 64,
        augment: ViewPipeline | None = None,
        seed: int | None = None,
        *,
        index_column: str | None = None,
        pad_to_multiple_of: int | None = None,
        id_column: str | None = None,
        label_column: str | None = None,
    ) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        if image_processor_or_pipeline is None and augment is None:
            raise ValueError("pass an image processor or a ViewPipeline (image_processor_or_pipeline or augment)")
        if augment is None and isinstance(image_processor_or_pipeline, ViewPipeline):
            augment = image_processor_or_pipeline
        processor = image_processor_or_pipeline
        if processor is not None and not isinstance(processor, ViewPipeline):
            processor = getattr(processor, "image_processor", None) or processor
            if not callable(processor):
                raise TypeError(f"image processor {type(processor).__name__} is not callable")
        self.pipeline = augment
        self.image_processor = None if isinstance(processor, ViewPipeline) else processor
        self.tokenizer = tokenizer
        self.image_column, self.caption_column = image_column, caption_column
        self.max_length, self.pad_to_multiple_of = max_length, pad_to_multiple_of
        self.index_column = index_column
        self.id_column, self.label_column = id_column, label_column
        self._init_randomness(seed)

    def row_spec(self) -> RowSpec:
        """What a row must hold: a readable image, its caption(s), and an integer row index."""
        ints = tuple(dict.fromkeys(c for c in (self.index_column, self.id_column, self.label_column) if c is not None))
        return RowSpec(images=(self.image_column,), captions=(self.caption_column,), integers=ints)

    def row_rng(self, index: int) -> random.Random:
        """The generator of dataset row ``index`` in the current epoch: seeded by ``(seed, epoch, index)``."""
        return row_rng(self.seed, self.epoch, index)

    def _pixels(self, images: list[Any], rngs: list[random.Random]) -> torch.Tensor:
        if self.pipeline is not None:
            tensors = []
            for position, (image, rng) in enumerate(zip(images, rngs)):
                try:
                    tensors.append(self.pipeline(image, rng))
                except Exception as exc:
                    raise CollatorInputError(
                        f"row {position}, column {self.image_column!r}: augmentation failed: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                if tensors[-1].shape != tensors[0].shape:
                    raise CollatorInputError(
                        f"row {position}, column {self.image_column!r}: view has shape {tuple(tensors[-1].shape)} "
                        f"but row 0 has {tuple(tensors[0].shape)}; the pipeline must produce a fixed size"
                    )
            return torch.stack(tensors)
        assert self.image_processor is not None
        try:
            return self._process(images)
        except Exception as batch_error:
            for position, image in enumerate(images):  # name the row that fails on its own
                try:
                    self._process([image])
                except Exception as exc:
                    raise CollatorInputError(
                        f"row {position}, column {self.image_column!r}: image processor failed: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            raise batch_error

    def _process(self, images: list[Any]) -> torch.Tensor:
        assert self.image_processor is not None
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return torch.as_tensor(pixels)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        check_batch_size(features)
        stream = None if self.index_column is not None else self.stream_rng()
        images, captions, chosen, rngs = [], [], [], []
        for position, row in enumerate(features):
            options = _captions(row, self.caption_column, position)
            value = require_column(row, self.image_column, position)
            images.append(load_rgb_image(value, row=position, column=self.image_column))
            if self.index_column is not None:
                rng = self.row_rng(row_index(row, self.index_column, position))
            else:
                assert stream is not None
                rng = stream
            k = rng.randrange(len(options)) if len(options) > 1 else 0
            captions.append(options[k])
            chosen.append(k)
            rngs.append(rng)
        text = self.tokenizer(
            captions,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )
        batch: dict[str, Any] = {
            "image": {"pixel_values": self._pixels(images, rngs)},
            "text": dict(text),
            "caption_index": torch.tensor(chosen, dtype=torch.long),
            LENGTHS_KEY: ViewLengths({"text": tuple(int(n) for n in text["attention_mask"].sum(dim=1).tolist())},
                                     getattr(self.tokenizer, "padding_side", "right")),
        }
        for key, column in (("ids", self.id_column), ("labels", self.label_column)):
            if column is not None:
                batch[key] = torch.tensor([require_int(row, column, i) for i, row in enumerate(features)], dtype=torch.long)
        return batch
