"""Reading each page's acquisition axes from a Pycro-Manager dataset's NDTiff.index."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import tifffile

from autofocus.imageio import pages_axes
from autofocus.ndtiff_axes import page_axes, read_index


def _entry(axes: dict, name: str, offset: int) -> bytes:
    a = json.dumps(axes).encode()
    n = name.encode()
    tail = struct.pack("<8I", offset, 64, 64, 1, 0, 0, 0, 0)
    return struct.pack("<I", len(a)) + a + struct.pack("<I", len(n)) + n + tail


def _dataset(folder: Path, n_pages: int = 3) -> tuple[Path, list[int]]:
    folder.mkdir()
    tif = folder / "run_NDTiffStack.tif"
    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(tif) as tw:  # one page per image, as NDTiff writes them
        for _ in range(n_pages):
            tw.write(rng.integers(0, 4000, (96, 96), dtype=np.uint16), contiguous=False)
    with tifffile.TiffFile(tif) as tf:
        offsets = [pg.dataoffsets[0] for pg in tf.pages]
    return tif, offsets


def test_pages_get_their_axes_by_pixel_offset_whatever_the_index_order(tmp_path: Path) -> None:
    tif, offs = _dataset(tmp_path / "ds")
    index = (
        _entry({"time": 1, "z": 0}, tif.name, offs[2])  # written out of order
        + _entry({"time": 0, "z": 0}, tif.name, offs[0])
        + _entry({"time": 0, "z": 1}, tif.name, offs[1])
        + _entry({"time": 9, "z": 9}, "run_NDTiffStack_1.tif", offs[1])  # another file
        + struct.pack("<I", 0)  # the finished-dataset marker
    )
    (tmp_path / "ds" / "NDTiff.index").write_bytes(index)
    assert len(read_index(tmp_path / "ds" / "NDTiff.index")) == 4
    assert pages_axes(tif) == [{"time": 0, "z": 0}, {"time": 0, "z": 1}, {"time": 1, "z": 0}]


def test_a_partial_last_entry_leaves_its_page_without_axes(tmp_path: Path) -> None:
    tif, offs = _dataset(tmp_path / "ds")
    whole = _entry({"z": 0}, tif.name, offs[0]) + _entry({"z": 1}, tif.name, offs[1])
    cut = _entry({"z": 2}, tif.name, offs[2])[:-5]  # a dataset still being written
    (tmp_path / "ds" / "NDTiff.index").write_bytes(whole + cut)
    assert pages_axes(tif) == [{"z": 0}, {"z": 1}, None]
    (tmp_path / "ds" / "NDTiff.index").write_bytes(whole + b"\x07\x00\x00\x00{not js")
    assert pages_axes(tif) == [{"z": 0}, {"z": 1}, None]


def test_files_outside_a_dataset_have_no_axes(tmp_path: Path) -> None:
    tif, offs = _dataset(tmp_path / "plain")
    assert pages_axes(tif) == [None, None, None]
    assert page_axes(tif, offs) == [None, None, None]
    png = tmp_path / "one.png"
    import imagecodecs

    png.write_bytes(imagecodecs.png_encode(np.zeros((96, 96), np.uint8)))
    assert pages_axes(png) == [None]


def test_score_writes_the_axes_column(tmp_path: Path) -> None:
    from autofocus.scorer import LocalScorer
    from autofocus.scoring_cli import score_files

    tif, offs = _dataset(tmp_path / "ds", n_pages=2)
    index = _entry({"position": 0, "time": 3, "z": 1}, tif.name, offs[0])
    (tmp_path / "ds" / "NDTiff.index").write_bytes(index)
    assert score_files([tif], tmp_path / "s.csv", scorer=LocalScorer()) == 2
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["axes"] for r in rows] == ['{"position": 0, "time": 3, "z": 1}', ""]


def test_an_unreadable_index_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from autofocus.errors import InvalidInputError

    tif, offs = _dataset(tmp_path / "ds")
    (tmp_path / "ds" / "NDTiff.index").write_bytes(_entry({"z": 0}, tif.name, offs[0]))

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(InvalidInputError, match="dataset index"):
        pages_axes(tif)
