"""Validation of image frames at every entry point (scorers, metrics, search, service)."""

from __future__ import annotations

from typing import Any

import numpy as np

from autofocus.errors import InvalidFrameError

__all__ = ["SUPPORTED_DTYPES", "as_frame"]

SUPPORTED_DTYPES = (
    np.uint8,
    np.uint16,
    np.uint32,
    np.int16,
    np.int32,
    np.float32,
    np.float64,
)


def as_frame(
    frame: Any,
    *,
    min_shape: tuple[int, int] = (1, 1),
    name: str = "frame",
) -> np.ndarray:
    """Return ``frame`` as a 2-D numeric array, or raise :class:`InvalidFrameError`.

    Accepts a squeezable array with singleton leading axes (e.g. ``(1, H, W)``) but
    refuses colour (``H x W x 3``) and true 3-D stacks, booleans, complex and object
    arrays, and non-finite values.  The data are not copied when already valid.
    """
    if not isinstance(frame, np.ndarray):
        try:
            frame = np.asarray(frame)
        except Exception as exc:  # pragma: no cover - numpy raises many kinds
            raise InvalidFrameError(f"{name} is not array-like: {exc}") from exc
    if frame.dtype == object or frame.dtype.kind not in "uif":
        raise InvalidFrameError(
            f"{name} has unsupported dtype {frame.dtype}; expected an integer or float image"
        )
    arr = frame
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InvalidFrameError(
            f"{name} must be a 2-D grayscale image, got shape {frame.shape}"
            + (
                " (looks like colour: convert to grayscale first)"
                if frame.ndim == 3 and frame.shape[-1] in (3, 4)
                else ""
            )
        )
    h, w = arr.shape
    if h < min_shape[0] or w < min_shape[1]:
        raise InvalidFrameError(
            f"{name} of {h}x{w} px is smaller than the minimum {min_shape[0]}x{min_shape[1]} px"
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidFrameError(f"{name} contains NaN or infinite values")
    return arr
