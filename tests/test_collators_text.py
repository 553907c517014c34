"""Text collators: views, column detection, and errors that name the row and the column."""

from __future__ import annotations

import pytest
import torch

from hfcontrast.collators import CollatorInputError, TextPairCollator, UnsupervisedSimCSECollator
from tests.tiny import tokenizer


def test_unsupervised_views_are_the_same_tokens() -> None:
    collator = UnsupervisedSimCSECollator(tokenizer(), "text", max_length=16)
    batch = collator([{"text": "a cat sat"}, {"text": "the dog ran far away"}])
    assert set(batch) == {"anchor", "positive", "lengths"}
    assert torch.equal(batch["anchor"]["input_ids"], batch["positive"]["input_ids"])
    counts = tuple(len(tokenizer()(text)["input_ids"]) for text in ("a cat sat", "the dog ran far away"))
    assert batch["lengths"].views == {"anchor": counts, "positive": counts}
    expected = tokenizer()(["a cat sat", "the dog ran far away"], padding=True, return_tensors="pt")
    assert torch.equal(batch["anchor"]["input_ids"], expected["input_ids"])


def test_supervised_detects_sent0_sent1_hard_neg_and_orders_views() -> None:
    rows = [{"sent0": f"anchor {i}", "sent1": f"positive {i}", "hard_neg": f"negative {i}", "x": 1} for i in range(3)]
    collator = TextPairCollator.from_column_names(tokenizer(), ["x", "sent0", "sent1", "hard_neg"])
    assert collator.columns == ("sent0", "sent1", "hard_neg")
    batch = collator(rows)
    decode = lambda view: [tokenizer().decode(ids, skip_special_tokens=True) for ids in batch[view]["input_ids"]]  # noqa: E731
    assert decode("anchor") == ["anchor 0", "anchor 1", "anchor 2"]
    assert decode("positive") == ["positive 0", "positive 1", "positive 2"]
    assert decode("negative") == ["negative 0", "negative 1", "negative 2"]


def test_explicit_columns_and_ids() -> None:
    collator = TextPairCollator.from_column_names(
        tokenizer(), ["q", "d", "id"], anchor_column="q", positive_column="d", id_column="id"
    )
    batch = collator([{"q": "x", "d": "y", "id": 7}, {"q": "z", "d": "w", "id": 9}])
    assert set(batch) == {"anchor", "positive", "ids", "lengths"}
    assert batch["ids"].tolist() == [7, 9]


def test_undetectable_columns_name_the_columns() -> None:
    with pytest.raises(ValueError, match=r"cannot detect pair columns in \['a', 'b'\]"):
        TextPairCollator.from_column_names(tokenizer(), ["a", "b"])
    with pytest.raises(ValueError, match="column 'nope' is not in the dataset columns"):
        TextPairCollator.from_column_names(tokenizer(), ["sent0", "sent1"], negative_column="nope")


@pytest.mark.parametrize(
    ("bad", "message"),
    [(None, r"row 1, column 'text': text is None"), ("   ", r"row 1, column 'text': text is empty"),
     (3, r"row 1, column 'text': expected a string, got int")],
)
def test_bad_text_names_row_and_column(bad: object, message: str) -> None:
    collator = UnsupervisedSimCSECollator(tokenizer(), "text")
    with pytest.raises(CollatorInputError, match=message):
        collator([{"text": "fine"}, {"text": bad}, {"text": "also fine"}])


def test_missing_column_names_row_and_column() -> None:
    collator = TextPairCollator(tokenizer(), "sent0", "sent1", ("hard_neg",))
    with pytest.raises(CollatorInputError, match=r"row 0: missing column 'hard_neg'; the row has columns \['sent0', 'sent1'\]"):
        collator([{"sent0": "a", "sent1": "b"}, {"sent0": "c", "sent1": "d"}])


def test_batch_of_one_has_no_negatives() -> None:
    collator = UnsupervisedSimCSECollator(tokenizer(), "text")
    with pytest.raises(CollatorInputError, match=r"batch has 1 row\(s\) but at least 2 are needed for in-batch negatives"):
        collator([{"text": "alone"}])


@pytest.mark.parametrize("multiple", [None, 8])
def test_each_view_is_padded_to_its_own_longest_row_and_lengths_come_along(multiple: int | None) -> None:
    """Padding is decided in the collator, on the CPU: each view as long as its longest row (rounded up to
    ``pad_to_multiple_of``), and ``batch["lengths"]`` holds every row's token count, each equal to the tokenizer's
    count for that text alone (the reference)."""
    rows = [{"a": "short", "p": "a much longer positive sentence than the anchor", "n": "mid length text", "m": "x"},
            {"a": "two words", "p": "tiny", "n": "one", "m": "another negative text here"}]  # fmt: skip
    collator = TextPairCollator(tokenizer(), "a", "p", ("n", "m"), max_length=32, pad_to_multiple_of=multiple)
    batch = collator(rows)
    alone = {column: [len(tokenizer()(row[column])["input_ids"]) for row in rows] for column in "apnm"}
    want = {"anchor": alone["a"], "positive": alone["p"], "negative": alone["n"] + alone["m"]}
    assert {view: list(n) for view, n in batch["lengths"].views.items()} == want
    for view, lengths in want.items():
        width = max(lengths) if multiple is None else -(-max(lengths) // multiple) * multiple
        assert batch[view]["input_ids"].shape[1] == width, view
        assert batch[view]["attention_mask"].sum(dim=1).tolist() == lengths
