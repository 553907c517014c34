"""Hard-negative mining: for each (anchor, positive) pair, the corpus texts an encoder ranks close to the
anchor that are not the positive, nor so close to it that they are probably positives too.

For anchor ``a`` with positive ``p`` and candidate ``c`` (cosine scores ``s``), ``c`` is kept when

* its rank among the candidates (the positive and the anchor's own text left out) is in
  ``[range_min, range_max)``;
* ``s(a, c) <= s(a, p) - margin`` (with ``margin``) and ``s(a, c) <= max_score_ratio * s(a, p)`` (with
  ``max_score_ratio``): the false-negative guard of NV-Retriever (Moreira et al. 2024);

and the first ``num_negatives`` kept candidates become ``negative_1 .. negative_k``. Rows with fewer are
left out (and counted in the log). The search is an exact chunked top-k matmul on the encoder's device
(``faiss``' exact inner-product index when it is installed and ``use_faiss`` allows it). Under
``accelerate launch`` every process embeds and searches its share; all return the same dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .evaluation import embed_texts

logger = logging.getLogger(__name__)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _share(state: PartialState, n: int) -> slice:
    """This process's contiguous share of ``n`` rows (the shares of all processes, in order, cover them)."""
    return slice(n * state.process_index // state.num_processes, n * (state.process_index + 1) // state.num_processes)


def _embed_shared(state: PartialState, model: Any, tokenizer: Any, texts: list[str], **kwargs: Any) -> torch.Tensor:
    """Every process embeds its contiguous share; all get the whole ``[N, D]`` (normalised, CPU)."""
    mine = texts[_share(state, len(texts))]
    part = F.normalize(embed_texts(model, tokenizer, mine, **kwargs), dim=-1).cpu() if mine else None
    if state.num_processes == 1:
        assert part is not None
        return part
    parts = [p for p in gather_object([part]) if p is not None]
    return torch.cat(parts)


def top_candidates(
    queries: torch.Tensor, corpus: torch.Tensor, k: int, *, chunk_size: int = 1024, use_faiss: bool | None = None,
    show_progress_bar: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best corpus rows for each query by inner product: ``(scores, indices)``, ``[Q, k]`` each.
    Exact: ``faiss.IndexFlatIP`` when installed (``use_faiss`` not False), else chunked matmuls + top-k on
    the corpus's device."""
    k = min(k, corpus.shape[0])
    faiss = _faiss() if use_faiss is not False else None
    if use_faiss and faiss is None:
        raise ImportError("use_faiss=True needs faiss: pip install faiss-cpu (or faiss-gpu)")
    if faiss is not None:
        index = faiss.IndexFlatIP(corpus.shape[1])
        index.add(corpus.float().cpu().numpy())
        scores, indices = index.search(queries.float().cpu().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()
    device = "cuda" if torch.cuda.is_available() else corpus.device
    corpus = corpus.to(device)
    out_scores, out_indices = [], []
    starts = range(0, queries.shape[0], chunk_size)
    for start in tqdm(starts, desc="searching", disable=not show_progress_bar, leave=False):
        scores = queries[start : start + chunk_size].to(device) @ corpus.T
        top = scores.topk(k, dim=1)
        out_scores.append(top.values.cpu())
        out_indices.append(top.indices.cpu())
    return torch.cat(out_scores), torch.cat(out_indices)


def select_negatives(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positive_scores: torch.Tensor,
    excluded: torch.Tensor,
    *,
    num_negatives: int,
    range_min: int,
    range_max: int,
    margin: float | None,
    max_score_ratio: float | None,
) -> torch.Tensor:
    """Corpus indices ``[Q, num_negatives]`` of the kept candidates (``-1`` where a row has too few):
    ``excluded`` ``[Q, E]`` are each row's corpus indices that are never candidates (its positive, its
    anchor's text)."""
    valid = ~(indices.unsqueeze(-1) == excluded.unsqueeze(1)).any(-1)
    rank = valid.long().cumsum(1) - 1
    keep = valid & (rank >= range_min) & (rank < range_max)
    if margin is not None:
        keep &= scores <= positive_scores.unsqueeze(1) - margin
    if max_score_ratio is not None:
        keep &= scores <= positive_scores.unsqueeze(1) * max_score_ratio
    order = keep.long().cumsum(1)
    chosen = torch.full((indices.shape[0], num_negatives), -1, dtype=torch.long)
    for j in range(num_negatives):
        hit = keep & (order == j + 1)
        found = hit.any(1)
        chosen[found, j] = indices[hit]
    return chosen


def mine_hard_negatives(
    dataset: datasets.Dataset,
    model: Any,
    tokenizer: Any = None,
    *,
    anchor_column: str = "anchor",
    positive_column: str = "positive",
    corpus: Sequence[str] | None = None,
    num_negatives: int = 1,
    range_min: int = 0,
    range_max: int = 50,
    margin: float | None = None,
    max_score_ratio: float | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    chunk_size: int = 1024,
    use_faiss: bool | None = None,
    show_progress_bar: bool = True,
) -> datasets.Dataset:
    """``dataset`` with ``negative_1 .. negative_k`` columns mined with ``model`` (rows with fewer kept
    candidates are left out); ready for :class:`~hfcontrast.collators.TextPairCollator`.

    Args:
        dataset: rows with ``anchor_column`` and ``positive_column`` texts.
        model: an hfcontrast text model (with ``tokenizer``), any model whose output has ``embeddings``,
            or a ``SentenceTransformer`` (``tokenizer=None``).
        corpus: extra candidate texts; the candidates are the unique positives plus these.
        num_negatives / range_min / range_max / margin / max_score_ratio: see the module docstring.
        chunk_size: queries per score matrix in the matmul search.
        use_faiss: ``None`` uses faiss when installed; ``False`` never; ``True`` requires it.
    """
    if num_negatives < 1 or range_min < 0 or range_max <= range_min:
        raise ValueError(f"need num_negatives >= 1 and 0 <= range_min < range_max, got {num_negatives}, {range_min}, {range_max}")
    if range_max - range_min < num_negatives:
        raise ValueError(f"the rank window [{range_min}, {range_max}) is narrower than num_negatives={num_negatives}")
    for column in (anchor_column, positive_column):
        if column not in dataset.column_names:
            raise ValueError(f"column {column!r} is not in the dataset columns {dataset.column_names}")
    state = PartialState()
    anchors, positives = list(dataset[anchor_column]), list(dataset[positive_column])
    texts = list(dict.fromkeys([*positives, *(corpus or [])]))
    where = {text: i for i, text in enumerate(texts)}
    embed = {"batch_size": batch_size, "max_length": max_length, "show_progress_bar": show_progress_bar and state.is_main_process}
    corpus_emb = _embed_shared(state, model, tokenizer, texts, desc="embedding the corpus", **embed)
    query_emb = _embed_shared(state, model, tokenizer, anchors, desc="embedding the anchors", **embed)
    positive_scores = (query_emb * corpus_emb[torch.tensor([where[p] for p in positives])]).sum(-1)
    excluded = torch.tensor([[where[p], where.get(a, -1)] for a, p in zip(anchors, positives)], dtype=torch.long)
    # Each process searches a contiguous share of the anchors; the shares are gathered in order.
    rows = _share(state, len(anchors))
    chosen = torch.empty((0, num_negatives), dtype=torch.long)
    if rows.stop > rows.start:
        scores, indices = top_candidates(
            query_emb[rows], corpus_emb, range_max + excluded.shape[1], chunk_size=chunk_size, use_faiss=use_faiss,
            show_progress_bar=show_progress_bar and state.is_main_process,
        )  # fmt: skip
        chosen = select_negatives(
            scores, indices, positive_scores[rows], excluded[rows], num_negatives=num_negatives,
            range_min=range_min, range_max=range_max, margin=margin, max_score_ratio=max_score_ratio,
        )  # fmt: skip
    if state.num_processes > 1:
        chosen = torch.cat(gather_object([chosen]))
    complete = (chosen >= 0).all(1)
    if not bool(complete.all()):
        logger.warning(
            "hard-negative mining: %d of %d rows have fewer than %d negatives that pass the window and guard; "
            "they are left out", int((~complete).sum()), len(anchors), num_negatives,
        )  # fmt: skip
    keep = complete.nonzero().squeeze(1).tolist()
    mined = dataset.select(keep)
    for j in range(num_negatives):
        mined = mined.add_column(f"negative_{j + 1}", [texts[i] for i in chosen[keep, j].tolist()])
    return mined
