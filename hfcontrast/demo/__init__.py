"""The embedded default of the recipes: packaged data and the demo loaders.

The library core (``losses`` ... ``trainer``) knows nothing of these data sets; the recipes use them
when no data is given.
"""

from .files import NOTICE, SHIPPED, SNLI_TRIPLETS, STSB_DEV, STSB_TRAIN, WIKI_SENTENCES, data_file
from .text import default_text_model, load_text_dataset

__all__ = [
    "NOTICE",
    "SHIPPED",
    "SNLI_TRIPLETS",
    "STSB_DEV",
    "STSB_TRAIN",
    "WIKI_SENTENCES",
    "data_file",
    "default_text_model",
    "load_text_dataset",
]
