"""Text collators: dataset rows -> tokenised named views (``anchor``, ``positive``, ``negative``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..losses import text_ids
from .checks import RowSpec
from .lengths import LENGTHS_KEY, ViewLengths, split_views
from .validation import CollatorInputError, check_batch_size, require_column, require_text

# Column conventions recognised by ``TextPairCollator.from_column_names`` (anchor, positive, negative).
KNOWN_TRIPLETS: tuple[tuple[str, str, str | None], ...] = (
    ("sent0", "sent1", "hard_neg"),
    ("anchor", "positive", "negative"),
    ("premise", "hypothesis", "hard_negative"),
    ("query", "positive", "negative"),
    ("sentence1", "sentence2", None),
    ("sent0", "sent1", None),
    ("anchor", "positive", None),
    ("query", "positive", None),
)


class TextPairCollator:
    """Tokenise anchor / positive (/ negatives) columns into named views.

    All texts of a batch are tokenised in one call, then split into views, each padded to its own longest
    row (rounded up to ``pad_to_multiple_of``): ``{"anchor": {...}, "positive": {...}, "negative": {...}}``,
    plus ``batch["lengths"]``, each row's token count (:class:`~hfcontrast.collators.lengths.ViewLengths`), so
    the training step plans its forwards without reading the device. Several negative columns are
    stacked into the ``negative`` view (row ``j * B + i`` is negative ``j`` of anchor ``i``).
    When ``anchor_column == positive_column`` (unsupervised SimCSE) the text is tokenised once and
    the view repeated; dropout in the encoder makes the two views differ.

    With ``id_column`` the batch also carries ``ids`` (int64), for false-negative masking; with
    ``ids_from_text`` the ``ids`` are the hashes of the normalised positive text (lowercase, punctuation
    stripped, whitespace collapsed; :func:`hfcontrast.losses.text_ids`), so rows whose positives are the
    same text are not negatives of each other. With ``label_column`` the batch carries ``labels`` (int64;
    string labels are hashed the same way), the classes of SupCon. With ``score_column`` it carries
    ``scores`` (float32), the pair's gold similarity divided by ``score_scale`` (STS-B's 0-5 ratings:
    ``score_scale=5``), for :class:`~hfcontrast.objectives.ScoredPairs`; every row's score must lie in
    ``[0, score_scale]``. With ``teacher_embeddings`` / ``guide_embeddings`` it carries
    ``teacher_<view>`` / ``guide_<view>``, a frozen model's embeddings computed ahead of time (the
    ``teacher_<column>`` / ``guide_<column>`` columns of :func:`hfcontrast.distillation.add_teacher_embeddings`).

    ``prompts`` (E5 / BGE instructions) are prepended per view: ``{"anchor": "query: ", "positive":
    "passage: "}``; the ``negative`` view takes the positive's prompt unless it has its own. Ids and
    labels are computed from the texts without prompts.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        anchor_column: str = "anchor",
        positive_column: str = "positive",
        negative_columns: Sequence[str] = (),
        *,
        max_length: int = 32,
        id_column: str | None = None,
        pad_to_multiple_of: int | None = None,
        ids_from_text: bool = False,
        label_column: str | None = None,
        prompts: Mapping[str, str] | None = None,
        teacher_embeddings: bool = False,
        teacher_margin_column: str | None = None,
        guide_embeddings: bool = False,
        score_column: str | None = None,
        score_scale: float = 1.0,
    ) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        if ids_from_text and id_column is not None:
            raise ValueError("pass id_column or ids_from_text, not both (the batch has one 'ids' entry)")
        self.ids_from_text, self.label_column = ids_from_text, label_column
        self.tokenizer = tokenizer
        self.anchor_column, self.positive_column = anchor_column, positive_column
        self.negative_columns = tuple(negative_columns)
        self.max_length, self.id_column, self.pad_to_multiple_of = max_length, id_column, pad_to_multiple_of
        self.prompts = check_prompts(prompts)
        self.teacher_embeddings, self.teacher_margin_column = teacher_embeddings, teacher_margin_column
        self.guide_embeddings = guide_embeddings
        if not score_scale > 0:
            raise ValueError(f"score_scale must be > 0 (the largest score, e.g. 5 for STS-B), got {score_scale}")
        self.score_column, self.score_scale = score_column, float(score_scale)

    @classmethod
    def from_column_names(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        column_names: Iterable[str],
        *,
        anchor_column: str | None = None,
        positive_column: str | None = None,
        negative_column: str | None = None,
        **kwargs: Any,
    ) -> TextPairCollator:
        """A collator of the columns :func:`pair_columns` finds (or is given) in ``column_names``."""
        anchor, positive, negatives = pair_columns(column_names, anchor_column, positive_column, negative_column)
        return cls(tokenizer, anchor, positive, negatives, **kwargs)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.anchor_column, self.positive_column, *self.negative_columns)

    @property
    def teacher_columns(self) -> tuple[str, ...]:
        """The number columns the batch carries for distillation and for a guide (GISTEmbed)."""
        columns = tuple(dict.fromkeys(self.columns))
        embeddings = tuple(f"teacher_{c}" for c in columns) if self.teacher_embeddings else ()
        embeddings += tuple(f"guide_{c}" for c in columns) if self.guide_embeddings else ()
        return embeddings + ((self.teacher_margin_column,) if self.teacher_margin_column else ())

    def row_spec(self) -> RowSpec:
        """What a row must hold: text in every view column, an integer id, an integer or text label,
        finite teacher scores / embeddings."""
        return RowSpec(
            text=tuple(dict.fromkeys(self.columns)),
            integers=(self.id_column,) if self.id_column is not None else (),
            labels=(self.label_column,) if self.label_column is not None else (),
            numbers=self.teacher_columns,
            bounded=((self.score_column, 0.0, self.score_scale),) if self.score_column is not None else (),
        )

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                pad_to_multiple_of=self.pad_to_multiple_of,
                return_tensors="pt",
            )
        )

    def prompt(self, view: str) -> str:
        """The prompt prepended to ``view``'s texts (negatives default to the positive's)."""
        if view == "negative" and "negative" not in self.prompts:
            view = "positive"
        return self.prompts.get(view, "")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        check_batch_size(features)
        # One tokenisation shared by both views when they are the same text (unsupervised SimCSE).
        unsupervised = self.anchor_column == self.positive_column and self.prompt("anchor") == self.prompt("positive")
        pair = (self.anchor_column,) if unsupervised else (self.anchor_column, self.positive_column)
        columns: tuple[str, ...] = (*pair, *self.negative_columns)
        views: tuple[str, ...] = ("anchor",) if unsupervised else ("anchor", "positive")
        views += ("negative",) * len(self.negative_columns)
        texts = [[require_text(row, column, i) for i, row in enumerate(features)] for column in columns]
        prompted = [[self.prompt(view) + text for text in column_texts] for view, column_texts in zip(views, texts)]
        encoded = self._tokenize([text for column_texts in prompted for text in column_texts])
        b = len(features)
        layout = [(view, b) for view in views[: 1 if unsupervised else 2]]
        if self.negative_columns:
            layout.append(("negative", b * len(self.negative_columns)))  # row j * B + i: negative j of anchor i
        side = getattr(self.tokenizer, "padding_side", "right")
        batch: dict[str, Any]
        batch, lengths = split_views(encoded, layout, self.pad_to_multiple_of, side)
        if unsupervised:
            batch["positive"] = {k: v.clone() for k, v in batch["anchor"].items()}
            lengths = ViewLengths({**lengths.views, "positive": lengths.views["anchor"]}, side)
        batch = {name: batch[name] for name in ("anchor", "positive", "negative") if name in batch}
        batch[LENGTHS_KEY] = lengths
        if self.id_column is not None:
            batch["ids"] = _ids(features, self.id_column)
        elif self.ids_from_text:
            batch["ids"] = text_ids(texts[0 if unsupervised else 1])
        if self.label_column is not None:
            batch["labels"] = _ids(features, self.label_column, allow_text=True)
        if self.teacher_embeddings:
            batch.update(self._frozen_views(features, "teacher"))
        if self.guide_embeddings:
            batch.update(self._frozen_views(features, "guide"))
        if self.teacher_margin_column is not None:
            batch["teacher_margin"] = _floats(features, self.teacher_margin_column).reshape(-1)
        if self.score_column is not None:
            batch["scores"] = _floats(features, self.score_column).reshape(-1) / self.score_scale
        return batch

    def _frozen_views(self, features: Sequence[Mapping[str, Any]], prefix: str) -> dict[str, torch.Tensor]:
        """``<prefix>_<view>``: a frozen model's embeddings of each view, from the ``<prefix>_<column>`` columns."""
        views = {f"{prefix}_anchor": _floats(features, f"{prefix}_{self.anchor_column}")}
        views[f"{prefix}_positive"] = _floats(features, f"{prefix}_{self.positive_column}")
        if self.negative_columns:
            views[f"{prefix}_negative"] = torch.cat([_floats(features, f"{prefix}_{c}") for c in self.negative_columns])
        return views


def pair_columns(
    column_names: Iterable[str],
    anchor_column: str | None = None,
    positive_column: str | None = None,
    negative_column: str | None = None,
) -> tuple[str, str, tuple[str, ...]]:
    """``(anchor, positive, negatives)``: the given columns, or a known convention (``sent0,sent1,hard_neg``
    first, :data:`KNOWN_TRIPLETS`); without a negative column, ``negative_1 .. negative_k`` (what
    :func:`hfcontrast.mining.mine_hard_negatives` writes) are the negatives."""
    names = list(column_names)
    if anchor_column is None or positive_column is None:
        for anchor, positive, negative in KNOWN_TRIPLETS:
            if anchor in names and positive in names and (negative is None or negative in names):
                anchor_column = anchor_column or anchor
                positive_column = positive_column or positive
                negative_column = negative_column or negative
                break
        else:
            raise ValueError(
                f"cannot detect pair columns in {names}; pass anchor_column/positive_column "
                f"(known conventions: {[t[:2] if t[2] is None else t for t in KNOWN_TRIPLETS]})"
            )
    assert anchor_column is not None and positive_column is not None
    for column in (anchor_column, positive_column, negative_column):
        if column is not None and column not in names:
            raise ValueError(f"column {column!r} is not in the dataset columns {names}")
    negatives = (negative_column,) if negative_column else numbered_negatives(names)
    return anchor_column, positive_column, negatives


def numbered_negatives(names: Iterable[str]) -> tuple[str, ...]:
    """The columns ``negative_1``, ``negative_2`` ... present in ``names``, in order."""
    numbered = [(int(name.rsplit("_", 1)[1]), name) for name in names if re.fullmatch(r"negative_\d+", name)]
    return tuple(name for _, name in sorted(numbered))


def check_prompts(prompts: Mapping[str, str] | None) -> dict[str, str]:
    """Prompts keyed by view name (``anchor``, ``positive``, ``negative``), each a string."""
    prompts = dict(prompts or {})
    for view, prompt in prompts.items():
        if view not in ("anchor", "positive", "negative"):
            raise ValueError(f"prompts: unknown view {view!r}; the text views are anchor, positive, negative")
        if not isinstance(prompt, str):
            raise ValueError(f"prompts[{view!r}] must be a string, got {prompt!r}")
    return prompts


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompts: Mapping[str, str]) -> dict[str, list[int]]:
    """Each prompt's token ids without special tokens, as the model config records them
    (``ContrastiveTextConfig.prompt_token_ids``: pooling can leave them out)."""
    return {view: list(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for view, prompt in prompts.items() if prompt}


class UnsupervisedSimCSECollator(TextPairCollator):
    """Unsupervised SimCSE: one text column used as both anchor and positive."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, text_column: str = "text", **kwargs: Any) -> None:
        super().__init__(tokenizer, text_column, text_column, (), **kwargs)


def _floats(features: Sequence[Mapping[str, Any]], column: str) -> torch.Tensor:
    """A number column as a float32 tensor: ``[B]`` for scores, ``[B, D]`` for embeddings."""
    return torch.tensor([require_column(row, column, i) for i, row in enumerate(features)], dtype=torch.float32)


def _ids(features: Sequence[Mapping[str, Any]], column: str, allow_text: bool = False) -> torch.Tensor:
    values = []
    for i, row in enumerate(features):
        value = require_column(row, column, i)
        if allow_text and isinstance(value, str):
            value = int(text_ids([require_text(row, column, i)])[0])
        if isinstance(value, bool) or not isinstance(value, int):
            kind = "integers or strings" if allow_text else "integers"
            raise CollatorInputError(f"row {i}, column {column!r}: values must be {kind}, got {value!r}")
        values.append(value)
    return torch.tensor(values, dtype=torch.long)
