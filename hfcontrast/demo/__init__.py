"""The embedded default of the recipes and examples: packaged data and the loaders of the demo data sets.

The text files ship inside the package (Wikipedia sentences, STS-B, SNLI triplets); Fashion-MNIST is read
from Debian's ``dataset-fashion-mnist`` and scikit-learn's digits need nothing. The library core knows
nothing of these data sets; the command-line layer (:mod:`hfcontrast.cli`) uses them when no data is given.
"""

from .captions import fashion_mnist_captions
from .fashion_mnist import has_fashion_mnist, load_digits_dataset, load_fashion_mnist
from .files import NOTICE, SHIPPED, SNLI_TRIPLETS, STSB_DEV, STSB_TRAIN, WIKI_SENTENCES, data_file
from .images import demo_backbone_config
from .retrieval import RetrievalTask, snli_retrieval
from .text import default_text_model, load_text_dataset

__all__ = [
    "NOTICE",
    "SHIPPED",
    "SNLI_TRIPLETS",
    "STSB_DEV",
    "STSB_TRAIN",
    "WIKI_SENTENCES",
    "RetrievalTask",
    "data_file",
    "default_text_model",
    "demo_backbone_config",
    "fashion_mnist_captions",
    "has_fashion_mnist",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_text_dataset",
    "snli_retrieval",
]
