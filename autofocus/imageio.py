"""Reading images for scoring: TIFF (tifffile) and PNG/JPEG (imagecodecs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from autofocus.errors import InvalidFrameError, InvalidInputError

__all__ = ["IMAGE_SUFFIXES", "iter_image_paths", "read_image"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def read_image(path: str | Path) -> np.ndarray:
    """Read a grayscale image; a multi-page TIFF returns its first page.

    RGB images are converted to luminance (0.299 R + 0.587 G + 0.114 B) in float32.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such image file: {p}")
    suffix = p.suffix.lower()
    if p.stat().st_size == 0:
        raise InvalidFrameError(f"could not read {p}: the file is empty")
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(p) as tf:
                arr = tf.pages[0].asarray()
        elif suffix in IMAGE_SUFFIXES:
            import imagecodecs

            arr = imagecodecs.imread(str(p))
        else:
            raise InvalidInputError(f"unsupported image type {p.suffix!r} ({p})")
    except InvalidInputError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        msg = f"could not read {p}: not a valid {suffix} image ({first})"
        raise InvalidFrameError(msg) from exc
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3].astype(np.float32)
        arr = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return arr


def iter_image_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidInputError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            yield from found
        elif p.is_file():
            yield p
        else:
            raise InvalidInputError(f"no such file or folder: {p}")
