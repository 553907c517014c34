"""Image decoding for the collators: any image a row holds (a ``PIL.Image``, a path, raw bytes, a ``datasets``
``Image`` dict, a numpy array) as an RGB ``PIL.Image`` (:func:`load_rgb_image`), or a clear error naming the row and
the column."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from .checks import image_kind
from .validation import CollatorInputError, require_column

_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "La", "RGBa", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


def _to_uint8(array: np.ndarray, *, sixteen_bit: bool = False) -> np.ndarray:
    """Map a non-8-bit array to ``uint8``.

    16-bit image modes use their full range (``/257``). Other arrays are mapped by the smallest
    standard range that holds all their values -- ``[0, 1]`` (floats), ``[0, 255]``, ``[0, 65535]`` --
    and anything else (negative or larger values) is min-max rescaled. NaN counts as 0.
    """
    values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if sixteen_bit or (lo >= 0 and 255 < hi <= 65535):
        values = values / 257.0
    elif lo >= 0 and hi <= 1 and np.issubdtype(array.dtype, np.floating):
        values = values * 255.0
    elif lo < 0 or hi > 255:
        values = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to ``RGB``.

    * Transparency (``RGBA``, ``LA``, ``PA``, premultiplied modes, a palette or colour key with
      ``transparency``) is composited onto **white**: transparent regions of web/product images and
      logos are meant to be seen on a light page, and black would hide dark content.
    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``: Pillow's conversion (CMYK (0,0,0,0) is white).
    * ``I;16*``: full 16-bit range to 8 bits; ``I`` and ``F``: see :func:`_to_uint8`'s range rule.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _ALPHA_MODES or "transparency" in image.info:
        return _composite_on_white(image)
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        gray = _to_uint8(np.asarray(image), sixteen_bit=mode in _SIXTEEN_BIT_MODES)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"array dtype must be numeric, got {array.dtype}")
        array = _to_uint8(array)
    array = np.ascontiguousarray(array)
    if array.ndim == 2:
        return Image.fromarray(array, mode="L")
    return Image.fromarray(array, mode="RGB" if array.shape[2] == 3 else "RGBA")


def _open(source: Any) -> Image.Image:
    with Image.open(source) as image:
        image.load()
        if image.getexif().get(Image.ExifTags.Base.Orientation) is not None:
            transposed = ImageOps.exif_transpose(image)  # as datasets' Image feature does
            return to_rgb(transposed)
        return to_rgb(image)


def load_rgb_image(value: Any, *, row: int, column: str) -> Image.Image:
    """Decode ``value`` (PIL image, path, bytes, ``{"bytes", "path"}`` dict, numpy array) to an RGB image.

    Raises :class:`CollatorInputError` naming ``row`` and ``column`` and the underlying reason when the
    value is missing, of an unsupported type, or not a readable image.
    """
    where = f"row {row}, column {column!r}"
    if value is None:
        raise CollatorInputError(f"{where}: image is None")
    kind = image_kind(value)
    try:
        if kind == "pil":
            value.load()
            return to_rgb(value)
        if kind == "array":
            return to_rgb(_from_array(value))
        if kind == "bytes":
            return _open(io.BytesIO(bytes(value)))
        if kind == "path":
            return _open(os.fspath(value))
        if kind == "record":
            data, path = value.get("bytes"), value.get("path")
            if data is not None:
                return _open(io.BytesIO(bytes(data)))
            if path is not None:
                return _open(os.fspath(path))
            raise CollatorInputError(f"{where}: image dict has neither 'bytes' nor 'path'")
    except CollatorInputError:
        raise
    except Exception as exc:
        source = _describe(value)
        raise CollatorInputError(
            f"{where}: cannot read image ({source}): {type(exc).__name__}: {exc}"
        ) from exc
    raise CollatorInputError(
        f"{where}: unsupported image type {type(value).__name__}; expected a PIL image, a path, bytes, "
        "a {'bytes', 'path'} dict or a numpy array"
    )


def _describe(value: Any) -> str:
    if isinstance(value, str | os.PathLike):
        return f"path {os.fspath(value)!r}"
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return f"{len(value['bytes'])} bytes" + (
                f" from {value.get('path')!r}" if value.get("path") else ""
            )
        return f"path {value.get('path')!r}"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{len(value)} bytes"
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {value.shape}"
    return type(value).__name__


def require_int(row: Mapping[str, Any], column: str, position: int) -> int:
    """``row[column]`` as an int (a 1-element integer tensor counts); the error names row and column."""
    value = require_column(row, column, position)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise CollatorInputError(
            f"row {position}, column {column!r}: expected an integer, got {type(value).__name__} {value!r}"
        )
    return int(value)
