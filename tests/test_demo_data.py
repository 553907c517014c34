"""The packaged demo data: found through importlib.resources, identical to the files it was copied from."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hfcontrast.demo import NOTICE, SHIPPED, SNLI_TRIPLETS, STSB_DEV, STSB_TRAIN, WIKI_SENTENCES, data_file
from hfcontrast.demo.text import load_text_dataset

ROWS = {WIKI_SENTENCES: 11913, STSB_TRAIN: 5749, STSB_DEV: 1500, SNLI_TRIPLETS: 2944}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_packaged_files_have_their_rows(name: str) -> None:
    path = Path(data_file(name))
    assert path.is_file() and path.is_relative_to(Path(__import__("hfcontrast").__file__).parent)
    assert len(path.read_text(encoding="utf-8").splitlines()) == ROWS[name]


def test_notice_names_every_file_and_licence() -> None:
    text = Path(data_file(NOTICE)).read_text(encoding="utf-8")
    for name in SHIPPED[:-1]:
        assert f"`{name}`" in text
    assert "CC BY-SA" in text and "stsb/LICENSE.txt" in text
    assert Path(data_file("stsb/LICENSE.txt")).is_file()


def test_unknown_file_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match=r"ships no data file 'nope\.txt'"):
        data_file("nope.txt")


def test_snli_triplets_load_with_their_columns() -> None:
    data = load_text_dataset(data_file(SNLI_TRIPLETS))
    assert data.column_names == ["sent0", "sent1", "hard_neg"] and len(data) == 2943
    with open(data_file(SNLI_TRIPLETS), newline="", encoding="utf-8") as handle:
        first = next(csv.DictReader(handle))
    assert data[0] == first


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(ROWS))
def test_packaged_files_equal_the_shared_originals(shared_data: Path, name: str) -> None:
    assert Path(data_file(name)).read_bytes() == (shared_data / name).read_bytes()


def test_non_utf8_file_names_the_file_and_flag(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"train_file .*latin1\.txt: not UTF-8 text"):
        load_text_dataset(str(path))
    table = tmp_path / "latin1.csv"
    table.write_bytes("sent0,sent1\ncaf\xe9,th\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"train_file .*latin1\.csv: not UTF-8"):
        load_text_dataset(str(table))


def test_class_names_tested_against_class_ids_take_the_training_ids() -> None:
    """A test split of class names (a CSV) against a training ``ClassLabel`` (an image folder): each name gets the
    training split's id for it, encoded by hand (datasets 4.x cannot cast names), and an unknown name is named."""
    import datasets

    from hfcontrast.demo.images import _labels_as_classes

    classes = datasets.ClassLabel(names=["cat", "dog", "owl"])
    train = datasets.Dataset.from_dict({"label": [0, 2, 1]}, features=datasets.Features({"label": classes}))
    test = datasets.Dataset.from_dict({"label": ["owl", "cat", "owl", "dog"]})
    _, encoded = _labels_as_classes(train, test, "label", train_name="photos/", test_name="test.csv")
    assert encoded["label"] == [2, 0, 2, 1] and encoded.features["label"].names == classes.names
    unknown = datasets.Dataset.from_dict({"label": ["cat", "emu"]})
    with pytest.raises(ValueError, match=r"test\.csv: labels \['emu'\] are not classes of photos/"):
        _labels_as_classes(train, unknown, "label", train_name="photos/", test_name="test.csv")
    names = datasets.Dataset.from_dict({"label": ["b", "a"]})  # names on both sides: ids in sorted order of the union
    first, second = _labels_as_classes(names, datasets.Dataset.from_dict({"label": ["c", "a"]}), "label")
    assert first["label"] == [1, 0] and second["label"] == [2, 0]
