"""Reading images for scoring: TIFF (tifffile) and PNG/JPEG (imagecodecs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import AutofocusError, InvalidFrameError, InvalidInputError

__all__ = [
    "IMAGE_SUFFIXES",
    "count_pages",
    "iter_image_paths",
    "iter_pages",
    "pages_axes",
    "read_image",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def read_image(path: str | Path) -> np.ndarray:
    """Read a file's one grayscale image.

    A multi-page TIFF (a z-stack, a time series) is refused with a clear error rather
    than silently reduced to its first page; :func:`iter_pages` reads every page.
    RGB images are converted to luminance (0.299 R + 0.587 G + 0.114 B) in float32.
    """
    p = _checked(path)
    if not _is_tiff(p):
        return _read_single(p)
    import tifffile

    with _reading(p), tifffile.TiffFile(p) as tf:
        n = _n_pages(p, tf)
        if n > 1:
            raise InvalidInputError(
                f"{p} holds {n} pages (a stack); give one image per file, or score every "
                "page with `autofocus score` (one CSV row per page)"
            )
        return _page(tf.pages[0])


def iter_pages(path: str | Path) -> Iterator[np.ndarray]:
    """Every image in a file, in order and one at a time (a TIFF's pages; a PNG is one).

    The file's name, type and size are checked at once; a page that cannot be decoded
    raises :class:`InvalidFrameError` naming the page. Colour pages become luminance.
    """
    p = _checked(path)
    return _tiff_pages(p) if _is_tiff(p) else iter([_read_single(p)])


def count_pages(path: str | Path) -> int:
    """How many images :func:`iter_pages` yields for this file."""
    p = _checked(path)
    if not _is_tiff(p):
        return 1
    import tifffile

    with _reading(p), _tiff_errors(p), tifffile.TiffFile(p) as tf:
        return _n_pages(p, tf)


def pages_axes(path: str | Path) -> list[dict[str, Any] | None]:
    """Each page's acquisition axes (e.g. ``{"time": 0, "z": 3}``) when the file is a
    TIFF of a Pycro-Manager (NDTiff) dataset; ``None`` for every page otherwise.

    One entry per page, so its length is :func:`count_pages`.  Also the check before
    scoring: a TIFF with no readable page, a broken page chain (a truncated stack) or
    page data beyond the end of the file, and a PNG/JPEG that does not decode, raise
    :class:`InvalidFrameError`."""
    from autofocus.ndtiff_axes import page_axes

    p = _checked(path)
    if not _is_tiff(p):
        _read_single(p)  # decoded once here, so that a corrupt file fails before scoring
        return [None]
    import tifffile

    with _reading(p), _tiff_errors(p), tifffile.TiffFile(p) as tf:
        pages = list(tf.pages[: _n_pages(p, tf)])
        _check_extents(p, pages)
        offsets = [(pg.dataoffsets or (-1,))[0] for pg in pages]
    return page_axes(p, offsets)


def _tiff_pages(p: Path) -> Iterator[np.ndarray]:
    import tifffile

    with _reading(p), tifffile.TiffFile(p) as tf:
        n = _n_pages(p, tf)
        for i in range(n):
            with _reading(p, f" page {i}" if n > 1 else ""):
                arr = _page(tf.pages[i])
            yield arr


def _n_pages(p: Path, tf: Any) -> int:
    n = len(tf.pages)
    if n == 0:  # tifffile opens a broken header and finds no page
        raise InvalidFrameError(f"could not read {p}: not a valid TIFF image (no page found)")
    return n


@contextmanager
def _tiff_errors(p: Path) -> Iterator[None]:
    """tifffile only logs a broken page chain (a truncated stack) and returns the pages
    before it: raise instead of silently scoring fewer pages."""
    import logging

    class _Catch(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    log = logging.getLogger("tifffile")
    catch = _Catch()
    log.addHandler(catch)
    try:
        yield
    finally:
        log.removeHandler(catch)
    if catch.messages:
        raise InvalidFrameError(
            f"could not read {p}: the TIFF is truncated or corrupt ({catch.messages[0][:200]})"
        )


def _check_extents(p: Path, pages: list[Any]) -> None:
    size = p.stat().st_size
    for i, pg in enumerate(pages):
        ends = [o + n for o, n in zip(pg.dataoffsets or (), pg.databytecounts or (), strict=False)]
        if ends and max(ends) > size:
            raise InvalidFrameError(
                f"could not read {p}: page {i}'s data ends at byte {max(ends)}, beyond the "
                f"end of the file ({size} bytes): the file is truncated"
            )


def _read_single(p: Path) -> np.ndarray:
    import imagecodecs

    with _reading(p):
        return _gray(imagecodecs.imread(str(p)))


def _is_tiff(p: Path) -> bool:
    return p.suffix.lower() in (".tif", ".tiff")


def _checked(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such image file: {p}")
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise InvalidInputError(f"unsupported image type {p.suffix!r} ({p})")
    if p.stat().st_size == 0:
        raise InvalidFrameError(f"could not read {p}: the file is empty")
    return p


@contextmanager
def _reading(p: Path, where: str = "") -> Iterator[None]:
    """Turn a decoder's exception into :class:`InvalidFrameError` naming the file."""
    try:
        yield
    except AutofocusError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        msg = f"could not read {p}{where}: not a valid {p.suffix.lower()} image ({first})"
        raise InvalidFrameError(msg) from exc


def _page(page: Any) -> np.ndarray:
    """One TIFF page as a grayscale array (planar RGB, axes ``SYX``, included)."""
    arr = page.asarray()
    if arr.ndim == 3 and page.axes.startswith("S") and arr.shape[0] in (2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    return _gray(arr)


def _gray(arr: object) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 2:  # grayscale + alpha: the gray
        return a[..., 0]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3].astype(np.float32)
        a = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return a


def iter_image_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths.

    In a folder: its image files, skipping hidden ones (``.name``) and sub-folders."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                q
                for q in p.iterdir()
                if q.suffix.lower() in IMAGE_SUFFIXES
                and q.is_file()
                and not q.name.startswith(".")  # hidden, e.g. macOS "._x.png" companions
            )
            if not found:
                raise InvalidInputError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            yield from found
        elif p.is_file():
            yield p
        else:
            raise InvalidInputError(f"no such file or folder: {p}")
