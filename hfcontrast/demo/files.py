"""The text data that ships inside the package (``hfcontrast/demo/data``), read with ``importlib.resources``.

The recipes' offline default trains and evaluates on these files, so a fresh clone or an installed
wheel runs the demo from any working directory with nothing beside it. Licences and attribution:
``hfcontrast/demo/data/NOTICE.md``.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources

WIKI_SENTENCES = "wiki/wiki_sentences.txt"  #: 11,913 English Wikipedia sentences (unsupervised SimCSE)
STSB_TRAIN = "stsb/sts-train.csv"  #: STS Benchmark train, tab-separated (5,749 pairs)
STSB_DEV = "stsb/sts-dev.csv"  #: STS Benchmark dev, tab-separated (1,500 pairs)
SNLI_TRIPLETS = "nli/snli_dev_triplets.csv"  #: SNLI dev as sent0,sent1,hard_neg triplets (2,943)
NOTICE = "NOTICE.md"  #: licences and attribution of the files above
SHIPPED = (WIKI_SENTENCES, STSB_TRAIN, STSB_DEV, SNLI_TRIPLETS, NOTICE)

# Files extracted from a zipped install live until the interpreter exits.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def data_file(name: str) -> str:
    """Filesystem path of the packaged data file ``name`` (one of :data:`SHIPPED`)."""
    resource = resources.files("hfcontrast.demo").joinpath("data")
    for part in name.split("/"):
        resource = resource.joinpath(part)
    if not resource.is_file():
        raise FileNotFoundError(
            f"hfcontrast ships no data file {name!r} (shipped: {', '.join(SHIPPED)}); the installation may "
            "be incomplete: reinstall hfcontrast"
        )
    return str(_extracted.enter_context(resources.as_file(resource)))
