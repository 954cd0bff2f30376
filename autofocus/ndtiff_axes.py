"""The acquisition axes of each page of a Pycro-Manager (NDTiff) dataset's TIFF file.

A Pycro-Manager dataset folder holds ``*_NDTiffStack.tif`` files and ``NDTiff.index``.
The index is a sequence of entries, one per image, all integers little-endian uint32::

    axes_length, axes (UTF-8 JSON, e.g. {"time": 0, "position": 1, "z": 3}),
    filename_length, filename (UTF-8, the TIFF file's name in the folder),
    pixel_offset, width, height, pixel_type, pixel_compression,
    metadata_offset, metadata_length, metadata_compression

An axes length of 0 ends the index. A page of the TIFF file is matched to its entry by
the byte offset of its pixel data (``pixel_offset``), so the mapping does not depend on
the order images were written in. A dataset still being written may end in a partial
entry: reading stops there, and pages without an entry get no axes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from autofocus.errors import InvalidInputError

__all__ = ["INDEX_NAME", "page_axes", "read_index"]

INDEX_NAME = "NDTiff.index"
_U32 = struct.Struct("<I")
_TAIL = struct.Struct("<8I")


def read_index(index_path: str | Path) -> list[tuple[dict[str, Any], str, int]]:
    """``(axes, filename, pixel_offset)`` for each complete entry of an NDTiff index."""
    try:
        data = Path(index_path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"could not read the dataset index {index_path}: {exc}") from exc
    out: list[tuple[dict[str, Any], str, int]] = []
    pos = 0
    while pos + 4 <= len(data):
        entry = _entry(data, pos)
        if entry is None:
            break
        pos, axes, name, offset = entry
        out.append((axes, name, offset))
    return out


def _entry(data: bytes, pos: int) -> tuple[int, dict[str, Any], str, int] | None:
    (n_axes,) = _U32.unpack_from(data, pos)
    pos += 4
    if n_axes == 0 or pos + n_axes + 4 > len(data):
        return None
    try:
        axes = json.loads(data[pos : pos + n_axes].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    pos += n_axes
    (n_name,) = _U32.unpack_from(data, pos)
    pos += 4
    if pos + n_name + _TAIL.size > len(data) or not isinstance(axes, dict):
        return None
    try:
        name = data[pos : pos + n_name].decode("utf-8")
    except UnicodeDecodeError:
        return None
    pos += n_name
    offset = _TAIL.unpack_from(data, pos)[0]
    return pos + _TAIL.size, axes, name, offset


def page_axes(tiff_path: str | Path, page_offsets: list[int]) -> list[dict[str, Any] | None]:
    """The axes of each page (given by its pixel-data offset) of a dataset's TIFF file.

    All ``None`` when the file's folder holds no ``NDTiff.index`` (not a Pycro-Manager
    dataset); ``None`` for a page the index does not list.
    """
    p = Path(tiff_path)
    index = p.parent / INDEX_NAME
    if not index.is_file():
        return [None] * len(page_offsets)
    by_offset = {off: axes for axes, name, off in read_index(index) if name == p.name}
    return [by_offset.get(off) for off in page_offsets]
