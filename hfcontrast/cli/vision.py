"""The body of every image recipe (``recipes/simclr.py``, ``moco.py``, ``swav.py``, ``dino.py``).

Arguments -> dataset -> collator -> model -> ContrastiveTrainer (which binds the objective) -> kNN before
and after -> artefacts. A recipe adds its objective arguments and demo defaults, and builds its
objective; what the objective needs of the data it declares (``multi_crop``, ``needs_row_ids``, its
callbacks), so one body serves every method.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, HfArgumentParser
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from ..augment import IMAGENET_MEAN, IMAGENET_STD, ViewPipeline, local_crop_pipeline, view_pipelines
from ..augment.device_views import DeviceViews
from ..collators import ImageEvalCollator, MultiViewCollator, RawImageCollator
from ..collators.mixing import MixingCollator
from ..collators.patches import PatchGridCollator
from ..demo.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from ..demo.images import ImageSplits, demo_backbone_config, eval_view, knn_subset, load_image_splits
from ..demo.long_tail import long_tailed_indices
from ..evaluation import KNNEvaluator
from ..evaluation.patch_grid import PatchGridEvaluator
from ..models import ContrastiveVisionConfig, ContrastiveVisionModel
from ..objectives import CPC, ContrastiveObjective
from ..shards import shard_streams
from ..trainer import ContrastiveTrainer, ContrastiveTrainingArguments
from ..trainer.defaults import INDEX_COLUMN
from .flags import NegativeArguments, epochs_replace_steps, record_matryoshka
from .image_streams import image_stream, streamed_knn_splits
from .runs import finish_run, image_stream_rows, start_run, train_with_before_after, training_rows

logger = logging.getLogger(__name__)


@dataclass
class VisionModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained vision backbone or hfcontrast vision model (default: demo ResNet)."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Backbone config to start from random init."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Backbone config changes, e.g. 'embedding_size=32,hidden_act=gelu'."}
    )
    demo_backbone: str = field(default="resnet", metadata={"help": "Random-init default: resnet | vit (small, patch 4)."})
    pooler: str = field(default="auto", metadata={"help": "auto | cls | mean (see ContrastiveVisionConfig)."})
    projection: str = field(default="mlp", metadata={"help": "Projection head: mlp | linear | none."})
    projection_dim: int = field(default=128, metadata={"help": "Output width of the projection head."})
    projection_hidden_dim: int | None = field(default=None, metadata={"help": "Hidden width (default: backbone's)."})


@dataclass
class VisionDataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A datasets Hub name (needs network)."})
    train_file: str | None = field(
        default=None, metadata={"help": "An imagefolder directory, or a .csv/.json of image paths (+ labels)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Labelled kNN test data (same formats)."})
    train_shards: str | None = field(
        default=None,
        metadata={"help": "Train from WebDataset tar shards, streamed, e.g. 'data/train-{00000..00009}.tar' (python -m "
                  "hfcontrast.shards writes them); the kNN evaluation: the demo's, or --validation_file's with a "
                  "memory bank from the shards. Needs --max_steps."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream --train_file or --dataset_name (datasets' IterableDataset) instead of loading it; "
                  "the kNN's memory bank is the stream's first --knn_train_samples labelled rows. Needs --max_steps."},
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "With --streaming or --train_shards: rows held to shuffle."}
    )
    demo_dataset: str = field(default="fashion_mnist", metadata={"help": "Offline default: fashion_mnist | digits."})
    demo_imbalance_ratio: float | None = field(
        default=None,
        metadata={"help": "A long-tailed demo: class c keeps n_max * ratio^(-c / (C - 1)) training rows (e.g. 100); "
                  "the test split stays balanced, so its accuracy is the balanced accuracy."},
    )
    image_column: str = field(default="image", metadata={"help": "Column with the images (or their paths)."})
    label_column: str = field(default="label", metadata={"help": "Class column for the kNN evaluation."})
    image_size: int = field(default=28, metadata={"help": "Side of the square training and evaluation views."})
    augmentation: str = field(
        default="auto",
        metadata={"help": "light | simclr | mocov2 | byol (auto: light for the demo, else the method's paper pipeline)."},
    )
    augmentation_device: str | None = field(
        default=None,
        metadata={
            "help": "Draw the views on this device with kornia (e.g. cuda: the training device), from raw "
            "images the dataloader ships; default: Pillow in the dataloader workers."
        },
    )
    crop_min_scale: float | None = field(default=None, metadata={"help": "Smallest random-crop area fraction."})
    mix: str | None = field(
        default=None,
        metadata={"help": "MixCo / i-Mix: a mixed view of each batch, its two sources' positives in proportion: mixup "
                  "| cutmix (SimCLR; the mixing drawn per row, so a resumed run mixes as the uninterrupted one)."},
    )
    mix_alpha: float = field(default=1.0, metadata={"help": "--mix: the mixing weight's Beta(alpha, alpha)."})
    local_crops: int = field(
        default=0, metadata={"help": "Multi-crop (SwAV, DINO): local views besides the 2 global ones."}
    )
    local_image_size: int = field(default=12, metadata={"help": "Side of the multi-crop local views."})
    local_crop_scale: str = field(default="0.05,0.35", metadata={"help": "Local views' crop area fraction: min,max."})
    jitter_strength: float = field(default=0.5, metadata={"help": "'light': brightness/contrast jitter strength."})
    eval_crop_fraction: float | None = field(
        default=None, metadata={"help": "Centre-crop fraction of the eval view (default: 1 for the demo, else 0.875)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N test rows."})
    knn_train_samples: int | None = field(
        default=10000, metadata={"help": "Periodic kNN: memory bank of N random training rows (before/after: all)."}
    )
    knn_k: int = field(default=20, metadata={"help": "kNN neighbours."})
    knn_temperature: float = field(default=0.07, metadata={"help": "kNN vote weight exp(cos / T)."})
    linear_probe: bool = field(default=True, metadata={"help": "Also report a linear probe on frozen features."})


@dataclass
class VisionDemoTrainingArguments(ContrastiveTrainingArguments):
    """Defaults of the offline image demos (a few minutes on 2 CPU cores)."""

    max_steps: int = field(default=800)
    per_device_train_batch_size: int = field(default=128)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=1e-4)
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=0.05)
    logging_steps: float = field(default=10)
    eval_strategy: IntervalStrategy | str = field(default="steps")
    eval_steps: float | None = field(default=200)
    eval_on_start: bool = field(default=True)
    save_strategy: SaveStrategy | str = field(default="no")
    seed: int = field(default=42)
    dataloader_drop_last: bool = field(default=True)


def parse_vision_arguments(
    objective: type,
    *,
    model: type = VisionModelArguments,
    data: type = VisionDataArguments,
    training: type = VisionDemoTrainingArguments,
) -> tuple[Any, ...]:
    """An image recipe's command line: ``(model, data, objective, negative, training)`` arguments, with
    ``--num_train_epochs`` replacing the demo's ``max_steps`` when given."""
    classes: Any = (model, data, objective, NegativeArguments, training)
    parsed = HfArgumentParser(classes).parse_args_into_dataclasses()
    epochs_replace_steps(parsed[-1])
    return tuple(parsed)


def build_vision_model(args: VisionModelArguments, image_size: int = 28) -> ContrastiveVisionModel:
    """A pretrained hfcontrast model, a pretrained backbone + new head, or a random backbone from a config (the
    demo's ViT sized for ``image_size`` views)."""
    head: dict[str, Any] = {
        "projection_dim": args.projection_dim, "projection_hidden_dim": args.projection_hidden_dim,
        "projection": args.projection, "pooler": args.pooler,
    }  # fmt: skip
    if args.model_name_or_path:
        if isinstance(AutoConfig.from_pretrained(args.model_name_or_path), ContrastiveVisionConfig):
            return ContrastiveVisionModel.from_pretrained(args.model_name_or_path)
        return ContrastiveVisionModel.from_backbone_pretrained(args.model_name_or_path, **head)
    backbone = AutoConfig.from_pretrained(args.config_name) if args.config_name else demo_backbone_config(args.demo_backbone, image_size)
    if args.config_overrides:
        backbone.update_from_string(args.config_overrides)
    return ContrastiveVisionModel(ContrastiveVisionConfig(backbone_config=backbone, **head))


def run_vision_recipe(
    model_args: VisionModelArguments,
    data_args: VisionDataArguments,
    negative_args: NegativeArguments,
    training_args: ContrastiveTrainingArguments,
    objective: ContrastiveObjective,
    *,
    method: str,
    hyperparameters: dict[str, Any],
) -> dict[str, float]:
    """Train ``objective`` (not yet bound: the trainer binds it to the model) with kNN top-1 (and a linear
    probe) before and after; write the exported encoder, ``eval_results.json``, ``training.png`` (loss,
    kNN curve) and a model card to ``training_args.output_dir``. Returns the results (empty on processes
    other than the first)."""
    start_run(training_args)
    train, splits = _training_data(data_args, training_args)
    mean, std = (FASHION_MNIST_MEAN, FASHION_MNIST_STD) if splits.demo else (IMAGENET_MEAN, IMAGENET_STD)
    size = data_args.image_size
    augmentation = data_args.augmentation
    if augmentation == "auto":
        augmentation = "light" if splits.demo else (objective.augmentation or "simclr")
    pipelines = view_pipelines(augmentation, size, mean, std, crop_min_scale=data_args.crop_min_scale,
                               jitter_strength=data_args.jitter_strength)  # fmt: skip
    model = build_vision_model(model_args, data_args.image_size)
    record_matryoshka(model, negative_args.matryoshka)
    crop = data_args.eval_crop_fraction or (1.0 if splits.demo else 0.875)
    eval_pipeline, image_processor = eval_view(size, mean, std, crop)
    masking = negative_args.false_negative_masking
    columns: dict[str, Any] = {
        "index_column": INDEX_COLUMN, "label_column": negative_args.supcon_label_column,
        "id_column": INDEX_COLUMN if objective.needs_row_ids  # e.g. PCL's clusters, looked up by row
        else (negative_args.duplicate_id_column or INDEX_COLUMN) if masking else None,
        "eval_pipeline": eval_pipeline,
    }  # fmt: skip
    collator, device_views = _train_collator(data_args, training_args, pipelines, columns, objective)

    # Periodic kNN (curve in training.png) on a memory-bank subset; before/after on the full sets.
    # CPC is read out as CPC v2 reads it: its patch grid's embeddings, averaged.
    evaluators: list[KNNEvaluator | PatchGridEvaluator] = []
    final: KNNEvaluator | PatchGridEvaluator | None = None
    curve = ""
    if splits.knn_train is not None and splits.knn_test is not None:
        collate = ImageEvalCollator(data_args.image_column, data_args.label_column, eval_pipeline)
        knn: dict[str, Any] = {"collate_fn": collate, "k": data_args.knn_k, "temperature": data_args.knn_temperature}
        bank = knn_subset(splits.knn_train, data_args.knn_train_samples, training_args.seed)
        evaluators.append(KNNEvaluator(bank, splits.knn_test, name="knn", **knn))
        curve = f" (kNN curve: {len(bank)}-image memory bank)"
        final = KNNEvaluator(splits.knn_train, splits.knn_test, name="knn", linear_probe=data_args.linear_probe, **knn)
        if isinstance(objective, CPC):
            evaluators = [PatchGridEvaluator(e, objective.grid, objective.patch_size) for e in evaluators]
            final = PatchGridEvaluator(final, objective.grid, objective.patch_size)
    if not evaluators:
        training_args.eval_strategy = IntervalStrategy.NO
        training_args.eval_on_start = False
    elif training_args.eval_strategy != "no" and training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = "eval_knn_top1"

    trainer = ContrastiveTrainer(
        model=model, args=training_args, objective=objective, evaluators=evaluators,
        train_dataset=train, data_collator=collator,
        train_source=data_args.train_shards or data_args.train_file or data_args.dataset_name or splits.name,
        device_views=device_views,
        processing_class=image_processor,
    )  # fmt: skip
    # The full evaluations run on the main process only (the other waits in the first collective).
    main = final is not None and trainer.is_world_process_zero()
    results = train_with_before_after(trainer, evaluate=(lambda: final(model)) if main else (lambda: {}))  # type: ignore[misc]
    if main:
        print(f"\nkNN top-1 ({splits.name} test, k={data_args.knn_k}) before: {results['before_knn_top1']:.4f}  "
              f"after: {results['eval_knn_top1']:.4f}")  # fmt: skip
    crops = {"local_crops": data_args.local_crops, "local_image_size": data_args.local_image_size} if data_args.local_crops else {}
    device = {"augmentation_device": data_args.augmentation_device} if data_args.augmentation_device else {}
    finish_run(
        trainer, results, method=method,
        hyperparameters=hyperparameters | {"augmentation": augmentation, "image_size": size} | negative_args.changed()
        | crops | device,
        train_dataset_name=data_args.dataset_name or splits.name,
        base_model=model_args.model_name_or_path or model_args.config_name,
        metric_key="eval_knn_top1" if evaluators else None, title=f"{method} on {splits.name}{curve}",
        eval_datasets={"knn": data_args.dataset_name or splits.name}, eval_splits={"knn": "test"} if splits.demo else None,
    )  # fmt: skip
    return results if trainer.is_world_process_zero() else {}


def _training_data(data_args: VisionDataArguments, training_args: ContrastiveTrainingArguments) -> tuple[Any, ImageSplits]:
    """``(training rows, kNN splits)``: map-style rows (the demo's or ``--train_file``'s), ``--train_shards``
    streamed (kNN: the demo's, or ``--validation_file`` with a bank from the shards), or ``--streaming``
    (:mod:`hfcontrast.cli.image_streams`)."""
    if data_args.streaming or (data_args.train_shards and data_args.validation_file):
        if data_args.streaming and data_args.train_shards:
            raise ValueError("--streaming reads --train_file or --dataset_name; --train_shards is streamed already")
        if data_args.train_shards:
            streams = shard_streams(data_args.train_shards, truncated="skip" if training_args.bad_rows == "skip" else "error")
        else:
            streams = image_stream(data_args.train_file, data_args.dataset_name, image_column=data_args.image_column,
                                   max_samples=data_args.max_train_samples)  # fmt: skip
        splits = streamed_knn_splits(
            list(streams.values()), seed=training_args.seed,
            name=Path(data_args.train_file or data_args.dataset_name or data_args.train_shards or "").name,
            validation_file=data_args.validation_file, dataset_name=data_args.dataset_name,
            image_column=data_args.image_column, label_column=data_args.label_column,
            bank_size=data_args.knn_train_samples, max_eval_samples=data_args.max_eval_samples,
        )  # fmt: skip
        return image_stream_rows(streams, data_args.shuffle_buffer_size), splits
    splits = load_image_splits(
        train_file=data_args.train_file, validation_file=data_args.validation_file,
        dataset_name=data_args.dataset_name, demo_dataset=data_args.demo_dataset,
        image_column=data_args.image_column, label_column=data_args.label_column,
        max_train_samples=data_args.max_train_samples, max_eval_samples=data_args.max_eval_samples,
    )  # fmt: skip
    if data_args.demo_imbalance_ratio is not None:
        if not splits.demo or splits.knn_train is None or data_args.train_shards:
            raise ValueError("--demo_imbalance_ratio makes the packaged demo long-tailed: drop --train_file, "
                             "--dataset_name and --train_shards")
        kept = long_tailed_indices(np.asarray(splits.train["label"]), data_args.demo_imbalance_ratio, training_args.seed)
        bank = splits.knn_train
        splits = dataclasses.replace(splits, train=splits.train.select(kept), knn_train=[bank[int(i)] for i in kept])
    return training_rows(splits.train, data_args.train_shards, data_args.shuffle_buffer_size, training_args.bad_rows), splits


def _train_collator(
    data_args: VisionDataArguments,
    training_args: ContrastiveTrainingArguments,
    pipelines: list[ViewPipeline],
    columns: dict[str, Any],
    objective: ContrastiveObjective,
) -> tuple[MultiViewCollator | MixingCollator | PatchGridCollator | RawImageCollator, DeviceViews | None]:
    """Views drawn in the dataloader, per-row seeds (seed, epoch, row index, view): the augmentations of a
    resumed run are the same; or raw images and views drawn on the training device (kornia)."""
    if data_args.mix is not None and (data_args.augmentation_device or data_args.local_crops or isinstance(objective, CPC)):
        raise ValueError("--mix mixes the collator's two views: not with --augmentation_device, --local_crops or CPC")
    if isinstance(objective, CPC) and (data_args.augmentation_device or data_args.local_crops):
        raise ValueError("CPC cuts its patches in the collator: not with --augmentation_device or --local_crops")
    if data_args.local_crops and not objective.multi_crop:
        raise ValueError(f"--local_crops: {type(objective).__name__} takes the two global views only (SwAV and DINO take local crops)")
    if data_args.augmentation_device:
        if data_args.local_crops:
            raise ValueError("--local_crops needs views drawn in the dataloader: drop --augmentation_device")
        if torch.device(data_args.augmentation_device).type != training_args.device.type:
            raise ValueError(f"--augmentation_device {data_args.augmentation_device}: the views must be drawn on "
                             f"the training device ({training_args.device.type})")  # fmt: skip
        # seeds (seed, step, micro-batch, view)
        return RawImageCollator(data_args.image_column, data_args.image_size, **columns), DeviceViews(pipelines, seed=training_args.seed)
    if data_args.local_crops:
        low, high = (float(v) for v in data_args.local_crop_scale.split(","))
        local = local_crop_pipeline(pipelines[0], data_args.local_image_size, (low, high))
        return MultiViewCollator.multi_crop(
            pipelines, local, data_args.local_crops, data_args.image_column, seed=training_args.seed, **columns
        ), None
    collator = MultiViewCollator(data_args.image_column, pipeline=pipelines, seed=training_args.seed, **columns)
    if isinstance(objective, CPC):  # each image's query view cut into its patch grid
        return PatchGridCollator(collator, objective.grid, objective.patch_size), None
    if data_args.mix is not None:
        if "mixed" not in (objective.online_views or ()):
            raise ValueError(f"--mix: {type(objective).__name__} takes no mixed view (SimCLR and MoCo v2 do)")
        return MixingCollator(collator, data_args.mix, data_args.mix_alpha), None
    return collator, None
