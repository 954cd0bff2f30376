"""Reading images for scoring: pages of a stack, colour, unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from autofocus.errors import InvalidFrameError, InvalidInputError
from autofocus.imageio import count_pages, iter_image_paths, iter_pages, pages_axes, read_image


def test_every_page_of_a_stack_is_read_in_order(tmp_path: Path) -> None:
    stack = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    f = tmp_path / "z.tif"
    tifffile.imwrite(f, stack, photometric="minisblack")
    assert count_pages(f) == 4
    pages = list(iter_pages(f))
    assert len(pages) == 4
    for got, want in zip(pages, stack, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.uint16
    # read_image refuses a stack rather than quietly returning its first page
    with pytest.raises(InvalidInputError, match="holds 4 pages"):
        read_image(f)


def test_single_images_colour_and_planar_colour(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb")
    for name in ("rgb.tif", "planar.tif"):
        assert count_pages(tmp_path / name) == 1
        np.testing.assert_allclose(read_image(tmp_path / name), lum, rtol=1e-6)
        (only,) = list(iter_pages(tmp_path / name))
        np.testing.assert_allclose(only, lum, rtol=1e-6)


def test_bad_files_are_typed_errors(tmp_path: Path) -> None:
    (tmp_path / "text.tif").write_text("not a tiff")
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidFrameError, match=r"not a valid \.tif image"):
        list(iter_pages(tmp_path / "text.tif"))
    with pytest.raises(InvalidFrameError, match="empty"):
        iter_pages(tmp_path / "empty.tif")  # checked before the first page is asked for
    with pytest.raises(InvalidInputError, match="unsupported image type"):
        count_pages(tmp_path / "notes.txt")
    with pytest.raises(InvalidInputError, match="no such image file"):
        read_image(tmp_path / "missing.png")


def test_truncated_files_fail_the_check_before_scoring(tmp_path: Path) -> None:
    """tifffile logs a broken page chain and returns the pages before it; a PNG's
    header alone does not show its data is cut short: both must fail up front."""
    import imagecodecs

    rng = np.random.default_rng(1)
    stack = rng.integers(0, 60000, (3, 128, 256), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    data = (tmp_path / "stack.tif").read_bytes()
    (tmp_path / "chain.tif").write_bytes(data[:-60_000])  # the last IFDs are gone
    (tmp_path / "data.tif").write_bytes(data[:-1000])  # the last page's pixels are cut
    png = imagecodecs.png_encode(stack[0])
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    assert len(pages_axes(tmp_path / "stack.tif")) == 3
    for name in ("chain.tif", "data.tif", "cut.png"):
        with pytest.raises(InvalidFrameError, match="could not read"):
            pages_axes(tmp_path / name)


def test_gray_alpha_images_read_their_gray_channel(tmp_path: Path) -> None:
    import imagecodecs

    la = np.random.default_rng(2).integers(0, 255, (32, 32, 2), dtype=np.uint8)
    (tmp_path / "la.png").write_bytes(imagecodecs.png_encode(la))
    tifffile.imwrite(tmp_path / "la.tif", la, photometric="minisblack", extrasamples=["unassalpha"])
    for name in ("la.png", "la.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / name), la[..., 0])


def test_folders_skip_hidden_files_and_sub_folders(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    (tmp_path / "._a.tif").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (tmp_path / "sub.tif").mkdir()
    assert list(iter_image_paths([tmp_path])) == [tmp_path / "a.tif"]
