"""Token lengths decided on the host: each text view padded to its own longest row, and the lengths kept.

The collator has the tokens on the CPU, so it decides every length there: a view is padded to its longest row
(rounded up to ``pad_to_multiple_of``), and the batch carries each row's real token count as
:class:`ViewLengths` under ``batch["lengths"]``. The training step then plans forwards and GradCache chunks
from Python integers and never reads a mask from the device to find out how long a row is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

#: The batch entry that holds :class:`ViewLengths` (not a view: it is not a mapping).
LENGTHS_KEY = "lengths"
TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


@dataclass(frozen=True)
class ViewLengths:
    """``views[name][i]``: the real (unpadded) token count of row ``i`` of text view ``name``. A plain object,
    not a tensor or a mapping: data loaders and ``send_to_device`` pass it through as it is."""

    views: Mapping[str, tuple[int, ...]]
    side: str = "right"  # where the tokenizer padded: the step cuts columns only for right padding

    def of(self, names: Sequence[str]) -> list[int] | None:
        """The lengths of views ``names`` in order, concatenated (``None`` when one is unknown)."""
        if any(name not in self.views for name in names):
            return None
        return [length for name in names for length in self.views[name]]


def round_up(length: int, multiple: int | None) -> int:
    return length if not multiple else -(-length // multiple) * multiple


def padded_to_longest(
    encoded: Mapping[str, Tensor], lengths: Sequence[int], multiple: int | None = None, side: str = "right"
) -> dict[str, Tensor]:
    """``encoded`` (padded to some common width) cut to its longest row of ``lengths``, rounded up to
    ``multiple``; ``side`` is where the tokenizer padded."""
    width = next(iter(encoded.values())).shape[1]
    keep = min(width, round_up(max(lengths, default=1), multiple))
    cut = slice(width - keep, width) if side == "left" else slice(0, keep)
    return {key: value[:, cut] if key in TOKEN_KEYS and value.dim() == 2 else value for key, value in encoded.items()}


def split_views(
    encoded: Mapping[str, Tensor], layout: Sequence[tuple[str, int]], multiple: int | None = None, side: str = "right"
) -> tuple[dict[str, dict[str, Tensor]], ViewLengths]:
    """Split one tokenisation into views: ``layout`` lists ``(view name, rows)`` in the order of the texts. Every
    view is padded to its own longest row; the row lengths come along."""
    counts = encoded["attention_mask"].sum(dim=1).tolist()  # on the CPU, in the collator
    views, lengths, start = {}, {}, 0
    for name, rows in layout:
        part = {key: value[start : start + rows] for key, value in encoded.items()}
        lengths[name] = tuple(int(n) for n in counts[start : start + rows])
        views[name] = padded_to_longest(part, lengths[name], multiple, side)
        start += rows
    return views, ViewLengths(lengths, side)
