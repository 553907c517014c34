"""Teacher embeddings ahead of time: every text of the training columns embedded once by the teacher,
stored as ``teacher_<column>`` columns and cached on disk, so distillation runs (and resumes) never load
the teacher again. The collator passes them as ``batch["teacher_<view>"]``
(``TextPairCollator(teacher_embeddings=True)``) to :class:`~hfcontrast.objectives.InBatchKL` or
:class:`~hfcontrast.objectives.MarginMSE`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from accelerate import PartialState
from safetensors.torch import load_file, save_file

from .evaluation import embed_texts

logger = logging.getLogger(__name__)


def _digest(teacher_name: str, texts: Sequence[str], max_length: int) -> str:
    h = hashlib.sha256(f"{teacher_name}\0{max_length}\0".encode())
    for text in texts:
        h.update(text.encode("utf-8") + b"\0")
    return h.hexdigest()[:20]


def add_teacher_embeddings(
    dataset: datasets.Dataset,
    teacher: Any,
    tokenizer: Any,
    columns: Sequence[str],
    *,
    teacher_name: str,
    cache_dir: str | None = None,
    batch_size: int = 128,
    max_length: int = 128,
    show_progress_bar: bool = True,
    prefix: str = "teacher",
) -> datasets.Dataset:
    """``dataset`` plus a ``<prefix>_<column>`` embedding column (float32 lists) per text column: ``teacher_``
    for distillation, ``guide_`` for a GISTEmbed guide (:class:`~hfcontrast.objectives.Guide`).

    With ``cache_dir``, the embeddings of each column are stored as ``teacher-<hash>.safetensors`` (the hash
    covers ``teacher_name``, ``max_length`` and every text) and reused by later runs; under ``accelerate
    launch`` the main process computes them first and the others read the cache.
    """
    state = PartialState()
    out = dataset
    for column in dict.fromkeys(columns):
        texts = list(dataset[column])
        path = os.path.join(cache_dir, f"teacher-{_digest(teacher_name, texts, max_length)}.safetensors") if cache_dir else None
        with state.main_process_first():
            if path is not None and os.path.isfile(path):
                embeddings = load_file(path)["embeddings"]
                logger.info("%s embeddings of %r: cached %s", prefix, column, path)
            else:
                embeddings = embed_texts(
                    teacher, tokenizer, texts, batch_size=batch_size, max_length=max_length,
                    show_progress_bar=show_progress_bar and state.is_main_process, desc=f"{prefix}: {column}",
                ).cpu().contiguous()  # fmt: skip
                if path is not None and state.is_main_process:
                    os.makedirs(cache_dir or ".", exist_ok=True)
                    partial = f"{path}.{os.getpid()}.tmp"  # runs sharing the cache each write their own
                    save_file({"embeddings": embeddings}, partial)
                    os.replace(partial, path)
        out = out.add_column(f"{prefix}_{column}", embeddings.to(torch.float32).tolist())
    return out
