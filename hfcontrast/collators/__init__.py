"""Collators: dataset rows -> named views, with errors that name the row and the column."""

from .text import KNOWN_TRIPLETS, TextPairCollator, UnsupervisedSimCSECollator
from .validation import CollatorInputError, check_batch_size, require_column, require_text

__all__ = [
    "KNOWN_TRIPLETS",
    "CollatorInputError",
    "TextPairCollator",
    "UnsupervisedSimCSECollator",
    "check_batch_size",
    "require_column",
    "require_text",
]
