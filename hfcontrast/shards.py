"""WebDataset tar shards: how image and image-text sets are distributed (open_clip, LAION), written and read.

A shard is a tar file; a sample is the members that share a key: ``<key>.png`` / ``.jpg`` (the image's own bytes),
``<key>.txt`` (a caption; ``<key>.json``: a list of captions), ``<key>.cls`` (a class label). :func:`write_shards` writes samples into numbered
shards; :func:`shard_streams` reads them back as one ``datasets`` stream per shard (``datasets``' webdataset
loader, streaming, images left undecoded so that a corrupt one is a bad row of
:class:`~hfcontrast.collators.streams.StreamedRows`, named by its shard and position, not an error inside the
reader).

    python -m hfcontrast.shards --output 'shards/train-{00000..00009}.tar' --demo fashion_mnist
    python -m hfcontrast.shards --output 'shards/train-%05d.tar' --image_folder photos/      # class sub-folders
    python -m hfcontrast.shards --output 'shards/cc-%05d.tar' --csv captions.csv --image_column path --caption_column caption
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_shards(pattern: str) -> list[str]:
    """The shard paths of ``pattern``: ``train-{00000..00009}.tar`` (zero-padded as written) or a plain path."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first)
    return [pattern[: match.start()] + f"{i:0{width}d}" + pattern[match.end() :] for i in range(int(first), int(last) + 1)]


def _shard_path(pattern: str, index: int) -> str:
    if "%" in pattern:
        return pattern % index
    match = _BRACES.search(pattern)
    if match is None:
        raise ValueError(f"--output {pattern!r}: give a numbered pattern, 'train-%05d.tar' or 'train-{{00000..00099}}.tar'")
    return pattern[: match.start()] + f"{int(match.group(1)) + index:0{len(match.group(1))}d}" + pattern[match.end() :]


def write_shards(samples: Iterable[Mapping[str, Any]], pattern: str, samples_per_shard: int = 1000) -> list[str]:
    """Write ``samples`` (``{"image": bytes, "extension": ".png", "caption": str, "label": int}``, caption and
    label optional) into shards named by ``pattern``; returns their paths. Keys are the samples' positions."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    paths: list[str] = []
    tar: tarfile.TarFile | None = None
    first: list[str] | None = None
    try:
        for index, sample in enumerate(samples):
            if index % samples_per_shard == 0:
                if tar is not None:
                    tar.close()
                paths.append(_shard_path(pattern, len(paths)))
                os.makedirs(os.path.dirname(paths[-1]) or ".", exist_ok=True)
                tar = tarfile.open(paths[-1], "w")  # noqa: SIM115 (one open shard at a time; closed below)
            assert tar is not None
            key = f"{index:09d}"
            members = {str(sample.get("extension", ".png")): bytes(sample["image"])}
            caption = sample.get("caption")
            if isinstance(caption, list | tuple):  # several captions of one image: a JSON list
                members[".json"] = json.dumps(list(caption)).encode("utf-8")
            elif caption is not None:
                members[".txt"] = str(caption).encode("utf-8")
            if sample.get("label") is not None:
                members[".cls"] = str(int(sample["label"])).encode("ascii")
            if first is None:
                first = sorted(members)
            elif sorted(members) != first:  # datasets' webdataset reader needs one layout
                raise ValueError(f"sample {index} has the members {sorted(members)}, the first had {first}: every "
                                 "sample of a shard set needs the same (one image type; captions all text or all lists)")  # fmt: skip
            for extension, payload in members.items():
                info = tarfile.TarInfo(key + extension)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    finally:
        if tar is not None:
            tar.close()
    return paths


def is_truncated(path: str) -> bool:
    """Whether a tar file lacks its end: a tar ends with two zero blocks of 512 bytes, padded to whole blocks, and
    a shard cut short (a failed copy) does not (its reader would stop at the cut without a word)."""
    size = os.path.getsize(path)
    if size < 1024 or size % 512:
        return True
    with open(path, "rb") as handle:
        handle.seek(size - 1024)
        return any(handle.read(1024))


def shard_streams(pattern: str | list[str], truncated: str = "error") -> dict[str, Any]:
    """``{shard path: stream}``: each shard a ``datasets`` webdataset stream with columns ``image`` (undecoded:
    ``{"bytes", "path"}``), and ``caption`` / ``label`` where the shards hold them. Every shard is checked for its
    end first: a truncated one is an error naming it, or (``truncated="skip"``) left out with a warning."""
    import datasets

    paths = [p for item in ([pattern] if isinstance(pattern, str) else pattern) for p in expand_shards(item)]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"--train_shards: no such shard {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    cut = [p for p in paths if is_truncated(p)]
    if cut and truncated == "error":
        raise ValueError(f"{cut[0]}: the shard is truncated (no tar end-of-archive blocks), so its last samples are lost"
                         + (f"; so are {len(cut) - 1} more shards" if len(cut) > 1 else "")
                         + ". Copy it again, or pass bad_rows='skip' to train without it")  # fmt: skip
    for path in cut:
        logger.warning("%s: truncated (no tar end-of-archive blocks): left out (bad_rows='skip')", path)
    streams = {}
    for path in (p for p in paths if p not in cut):
        stream = datasets.load_dataset("webdataset", data_files=[path], split="train", streaming=True)
        names = list(stream.column_names or [])
        image = next((n for n in names if "." + n in IMAGE_EXTENSIONS), None)
        if image is None:
            raise ValueError(f"{path}: no image member (.png, .jpg, ...) in its first sample; members: {names}")
        stream = stream.cast_column(image, datasets.Image(decode=False))
        renames = {image: "image", **{k: v for k, v in (("txt", "caption"), ("json", "caption"), ("cls", "label")) if k in names}}
        streams[path] = stream.rename_columns(renames).remove_columns([n for n in ("__url__",) if n in names])
    return streams


def _folder_samples(folder: str) -> Iterator[dict[str, Any]]:
    classes = sorted(d.name for d in Path(folder).iterdir() if d.is_dir())
    for label, name in enumerate(classes):
        for path in sorted(Path(folder, name).iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                yield {"image": path.read_bytes(), "extension": path.suffix.lower(), "label": label}


def _csv_samples(path: str, image_column: str, caption_column: str) -> Iterator[dict[str, Any]]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            image = Path(os.path.dirname(path), row[image_column])
            if not image.is_file():
                raise FileNotFoundError(f"{path}, line {number}, column {image_column!r}: no such image {image}")
            yield {"image": image.read_bytes(), "extension": image.suffix.lower(), "caption": row[caption_column]}


def _demo_samples(max_samples: int | None) -> Iterator[dict[str, Any]]:
    import datasets

    from .demo.captions import fashion_mnist_captions

    data = fashion_mnist_captions("train", max_samples=max_samples).cast_column("image", datasets.Image(decode=False))
    for row in data:
        yield {"image": row["image"]["bytes"], "extension": ".png", "caption": row["caption"], "label": row["label"]}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", required=True, help="'dir/train-%%05d.tar' or 'dir/train-{00000..00099}.tar'")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image_folder", help="a folder of class sub-folders of images")
    source.add_argument("--csv", help="a CSV of image paths (relative to it) and captions")
    source.add_argument("--demo", choices=("fashion_mnist",), help="the Fashion-MNIST demo, with its captions")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--caption_column", default="caption")
    parser.add_argument("--samples_per_shard", type=int, default=1000)
    parser.add_argument("--max_samples", type=int, default=None, help="--demo: only the first N images")
    a = parser.parse_args(argv)
    if a.image_folder:
        samples = _folder_samples(a.image_folder)
    elif a.csv:
        samples = _csv_samples(a.csv, a.image_column, a.caption_column)
    else:
        samples = _demo_samples(a.max_samples)
    paths = write_shards(samples, a.output, a.samples_per_shard)
    print(f"wrote {len(paths)} shards: {paths[0]} .. {paths[-1]}" if paths else "no samples: no shard written")


if __name__ == "__main__":
    main()
