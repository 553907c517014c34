"""Image collators: dataset rows -> named, augmented views (``MultiViewCollator``) or eval batches.

Rows hold an image as a ``PIL.Image``, a path, raw bytes, a ``datasets`` ``Image`` dict
(``{"bytes": ..., "path": ...}``, i.e. ``decode=False``) or a ``uint8`` numpy array. Every image is
converted to RGB by :func:`load_rgb_image`; an unreadable one raises :class:`CollatorInputError` naming
the row and the column. With the HF ``Trainer`` set ``remove_unused_columns=False`` so that the image
column reaches the collator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from hfcontrast.augment import ViewPipeline, eval_pipeline, simclr_pipeline

from .checks import RowSpec
from .decoding import load_rgb_image, require_int
from .seeding import SeededCollator, row_index, row_rng
from .validation import CollatorInputError, check_batch_size, require_column


def _stack(tensors: list[torch.Tensor], what: str) -> torch.Tensor:
    for position, tensor in enumerate(tensors):
        if tensor.shape != tensors[0].shape:
            raise CollatorInputError(
                f"row {position}: {what} has shape {tuple(tensor.shape)} but row 0 has "
                f"{tuple(tensors[0].shape)}; the pipeline must produce a fixed size (use a crop)"
            )
    return torch.stack(tensors)


def _apply(
    pipeline: ViewPipeline,
    image: Image.Image,
    rng: random.Random | None,
    position: int,
    column: str,
    view: str,
) -> torch.Tensor:
    try:
        return pipeline(image, rng)
    except Exception as exc:
        raise CollatorInputError(
            f"row {position}, column {column!r}: pipeline for view {view!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _eval_view_of(pipeline: ViewPipeline) -> ViewPipeline | None:
    """The deterministic view at a training pipeline's size and normalisation (resize + centre crop);
    ``None`` for a pipeline not built from :class:`~hfcontrast.augment.ViewParams` (its size is unknown)."""
    if pipeline.params is None:
        return None
    return eval_pipeline(pipeline.params.size, pipeline.mean, pipeline.std, resize_size=pipeline.params.size)


def _eval_collator(image_column: str, pipeline: ViewPipeline | None) -> ImageEvalCollator:
    if pipeline is None:
        raise ValueError("the collator's deterministic view is unknown: pass eval_pipeline=<a ViewPipeline>")
    return ImageEvalCollator(image_column, None, pipeline)


def image_row_spec(image_column: str, *integer_columns: str | None) -> RowSpec:
    """A readable image in ``image_column``, and an integer in each of the ``integer_columns`` that is set."""
    return RowSpec(images=(image_column,), integers=tuple(dict.fromkeys(c for c in integer_columns if c is not None)))


class MultiViewCollator(SeededCollator):
    """Rows with an image -> ``{view_name: {"pixel_values": FloatTensor[B, 3, H, W]}}`` (+ ``labels``, ``ids``).

    Each image is decoded once and passed through one pipeline per view: a single ``ViewPipeline`` for
    every view (SimCLR, MoCo) or a sequence with one per view (BYOL's asymmetric views). View names
    default to ``("query", "key")`` for two views, else ``view_0 .. view_{n-1}``.

    Randomness, and what makes a resumed run exact:

    * with ``index_column`` (a column holding each row's dataset index, e.g. added with
      ``dataset.map(lambda _, i: {"idx": i}, with_indices=True)``), view ``v`` of row ``i`` draws from its
      own generator seeded by ``(seed, epoch, i, v)`` (:func:`~hfcontrast.collators.seeding.row_rng`):
      the augmentation depends on nothing else, not on batch composition, workers, the dataloader's
      prefetching or what a resumed run skipped. Add
      :class:`~hfcontrast.collators.seeding.CollatorEpochCallback` to the trainer so that the epoch
      follows the trainer's (as for ``ImageTextCollator``).
    * without it, a per-collator ``random.Random(seed)`` stream. In a ``DataLoader`` worker the collator
      is a copy per worker, so on its first call in a worker (and again whenever the worker's seed
      changes, i.e. every epoch without persistent workers) it reseeds from ``torch.initial_seed()``
      (distinct per worker and derived from the main process's torch seed) mixed with ``seed``; no
      ``worker_init_fn`` is needed. This stream is not in checkpoints: a resumed run draws different views.
    """

    def __init__(
        self,
        image_column: str = "image",
        n_views: int = 2,
        view_names: Sequence[str] | None = None,
        pipeline: ViewPipeline | Sequence[ViewPipeline] | None = None,
        label_column: str | None = None,
        id_column: str | None = None,
        seed: int | None = None,
        *,
        index_column: str | None = None,
        eval_pipeline: ViewPipeline | None = None,
    ) -> None:
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 2:
            raise ValueError(
                f"n_views must be an integer >= 2 (contrastive learning compares views), got {n_views!r}; "
                "use ImageEvalCollator for a single view"
            )
        if view_names is None:
            view_names = ("query", "key") if n_views == 2 else tuple(f"view_{i}" for i in range(n_views))
        names = tuple(view_names)
        if isinstance(view_names, str) or len(names) != n_views:
            raise ValueError(f"view_names must name {n_views} views, got {view_names!r}")
        if len(set(names)) != n_views or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"view_names must be distinct non-empty strings, got {names!r}")
        reserved = {"labels", "ids"} & set(names)
        if reserved:
            raise ValueError(f"view_names may not use the reserved keys {sorted(reserved)}")
        if pipeline is None:
            pipelines: list[ViewPipeline] = [simclr_pipeline()] * n_views
        elif isinstance(pipeline, ViewPipeline):
            pipelines = [pipeline] * n_views
        else:
            pipelines = list(pipeline)
            if len(pipelines) != n_views:
                raise ValueError(
                    f"got {len(pipelines)} pipelines for {n_views} views; pass one or one per view"
                )
        self.image_column = image_column
        self.n_views = n_views
        self.view_names = names
        self.pipelines = pipelines
        self.label_column = label_column
        self.id_column = id_column
        self.index_column = index_column
        self.eval_pipeline = eval_pipeline or _eval_view_of(pipelines[0])
        self._init_randomness(seed)

    def eval_collator(self) -> ImageEvalCollator:
        """The deterministic view of every row (``eval_pipeline``: no labels), e.g. for PCL's cluster features."""
        return _eval_collator(self.image_column, self.eval_pipeline)

    @classmethod
    def multi_crop(
        cls,
        global_pipeline: ViewPipeline | Sequence[ViewPipeline],
        local_pipeline: ViewPipeline,
        local_crops: int,
        image_column: str = "image",
        **kwargs: Any,
    ) -> MultiViewCollator:
        """Multi-crop (Caron et al. 2020): the global views ``query`` and ``key`` plus ``local_0 ..
        local_{V-1}`` from ``local_pipeline`` (a smaller size, see
        :func:`~hfcontrast.augment.local_crop_pipeline`). The trainer embeds each resolution in one forward."""
        if isinstance(local_crops, bool) or not isinstance(local_crops, int) or local_crops < 0:
            raise ValueError(f"local_crops must be an integer >= 0, got {local_crops!r}")
        globals_ = [global_pipeline] * 2 if isinstance(global_pipeline, ViewPipeline) else list(global_pipeline)
        if len(globals_) != 2:
            raise ValueError(f"multi-crop has 2 global views: pass one pipeline or two, got {len(globals_)}")
        names = ("query", "key", *(f"local_{i}" for i in range(local_crops)))
        pipelines = [*globals_, *[local_pipeline] * local_crops]
        return cls(image_column, len(names), names, pipelines, **kwargs)

    def row_spec(self) -> RowSpec:
        """What a row must hold: a readable image, and integer labels / ids / row indices."""
        return image_row_spec(self.image_column, self.label_column, self.id_column, self.index_column)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        check_batch_size(features, 2)
        stream = self.stream_rng() if self.index_column is None else None
        views: list[list[torch.Tensor]] = [[] for _ in self.view_names]
        labels: list[int] = []
        ids: list[int] = []
        for position, row in enumerate(features):
            value = require_column(row, self.image_column, position)
            image = load_rgb_image(value, row=position, column=self.image_column)
            row_id = None if self.index_column is None else row_index(row, self.index_column, position)
            for index, (name, pipeline) in enumerate(zip(self.view_names, self.pipelines)):
                rng = stream if row_id is None else row_rng(self.seed, self.epoch, row_id, index)
                views[index].append(_apply(pipeline, image, rng, position, self.image_column, name))
            if self.label_column is not None:
                labels.append(require_int(row, self.label_column, position))
            if self.id_column is not None:
                ids.append(require_int(row, self.id_column, position))
        batch: dict[str, Any] = {
            name: {"pixel_values": _stack(tensors, f"view {name!r}")}
            for name, tensors in zip(self.view_names, views)
        }
        if self.label_column is not None:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        if self.id_column is not None:
            batch["ids"] = torch.tensor(ids, dtype=torch.long)
        return batch


class ImageEvalCollator:
    """Rows -> ``{"pixel_values": FloatTensor[B, 3, H, W], "labels": LongTensor[B]}`` for kNN / linear probes.

    Uses a deterministic :func:`~hfcontrast.augment.eval_pipeline` unless ``pipeline`` is given;
    ``label_column=None`` omits ``labels``. A batch of one row is allowed.
    """

    def __init__(
        self,
        image_column: str = "image",
        label_column: str | None = "label",
        pipeline: ViewPipeline | None = None,
    ) -> None:
        self.image_column = image_column
        self.label_column = label_column
        self.pipeline = eval_pipeline() if pipeline is None else pipeline

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        check_batch_size(features, 1, what="an evaluation batch")
        pixels: list[torch.Tensor] = []
        labels: list[int] = []
        for position, row in enumerate(features):
            value = require_column(row, self.image_column, position)
            image = load_rgb_image(value, row=position, column=self.image_column)
            pixels.append(_apply(self.pipeline, image, None, position, self.image_column, "pixel_values"))
            if self.label_column is not None:
                labels.append(require_int(row, self.label_column, position))
        batch: dict[str, Any] = {"pixel_values": _stack(pixels, "pixel_values")}
        if self.label_column is not None:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


class RawImageCollator:
    """Rows -> ``{"images": {"pixel_values": uint8 [B, 3, size, size]}}`` (+ ``labels``, ``ids``): images
    decoded and brought to one size (shorter side to ``size``, centre crop), not augmented. The views are
    drawn on the training device by :class:`~hfcontrast.augment.device_views.DeviceViews`."""

    def __init__(
        self,
        image_column: str = "image",
        size: int = 224,
        *,
        label_column: str | None = None,
        id_column: str | None = None,
        index_column: str | None = None,
        eval_pipeline: ViewPipeline | None = None,
    ) -> None:
        self.image_column, self.size = image_column, size
        self.label_column, self.id_column, self.index_column = label_column, id_column, index_column
        self.eval_pipeline = eval_pipeline

    def eval_collator(self) -> ImageEvalCollator:
        """The deterministic, normalised view of every row (``eval_pipeline``: no labels)."""
        return _eval_collator(self.image_column, self.eval_pipeline)

    def row_spec(self) -> RowSpec:
        """What a row must hold: a readable image, and integer labels / ids / row indices."""
        return image_row_spec(self.image_column, self.label_column, self.id_column, self.index_column)

    def _pixels(self, image: Image.Image) -> torch.Tensor:
        width, height = image.size
        scale = self.size / min(width, height)
        if scale != 1.0:
            image = image.resize((max(self.size, round(width * scale)), max(self.size, round(height * scale))), Image.Resampling.BILINEAR)
        left, top = (image.size[0] - self.size) // 2, (image.size[1] - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        check_batch_size(features, 2)
        pixels = []
        for position, row in enumerate(features):
            value = require_column(row, self.image_column, position)
            pixels.append(self._pixels(load_rgb_image(value, row=position, column=self.image_column)))
        batch: dict[str, Any] = {"images": {"pixel_values": torch.stack(pixels)}}
        for key, column in (("labels", self.label_column), ("ids", self.id_column)):
            if column is not None:
                batch[key] = torch.tensor([require_int(row, column, i) for i, row in enumerate(features)], dtype=torch.long)
        return batch
