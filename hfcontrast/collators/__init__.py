"""Collators: dataset rows -> named views, with errors that name the row and the column."""

from .image_text import CollatorEpochCallback, ImageTextCollator
from .images import ImageEvalCollator, MultiViewCollator, RawImageCollator, load_rgb_image
from .lengths import LENGTHS_KEY, ViewLengths
from .multi_source import MultiSourceCollator, MultiSourceDataset, SingleSourceBatchSampler
from .seeding import with_index_column
from .text import KNOWN_TRIPLETS, TextPairCollator, UnsupervisedSimCSECollator
from .validation import CollatorInputError, check_batch_size, require_column, require_text

__all__ = [
    "KNOWN_TRIPLETS",
    "LENGTHS_KEY",
    "CollatorInputError",
    "ImageEvalCollator",
    "MultiSourceCollator",
    "MultiSourceDataset",
    "MultiViewCollator",
    "RawImageCollator",
    "SingleSourceBatchSampler",
    "TextPairCollator",
    "UnsupervisedSimCSECollator",
    "ViewLengths",
    "check_batch_size",
    "load_rgb_image",
    "require_column",
    "require_text",
    "with_index_column",
]
__all__ += ["CollatorEpochCallback", "ImageTextCollator"]
