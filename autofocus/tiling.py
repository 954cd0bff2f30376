"""Pre-processing and tiling shared by training and inference (pure numpy).

* **Tiling** covers every pixel: along an axis of length ``L`` with patch size ``p`` there
  are ``n = ceil(L / p)`` patches whose starts are spread evenly over ``[0, L - p]``, so
  the last row/column is shifted inwards and overlaps its neighbour instead of being
  dropped (Yang et al.'s code dropped the remainder).
* **Normalisation** is per patch: ``x = (p - mean(p)) / std(p)``.  It is exactly
  invariant to camera gain and offset (any affine map ``a p + c`` with ``a > 0``), so the
  verdict cannot depend on them.  A constant patch (``std == 0``) becomes all zeros and
  is marked as having no signal.
* **Context** (classifier, when its model card asks for it): beside each patch, its
  surroundings twice as wide (``2 * size`` px, centred on the patch, reflected at the
  frame's borders) binned 2x2 to ``size`` px, normalised on their own.  At high
  magnification an 84 px patch can lie inside one smooth object; the context shows the
  object's edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autofocus.errors import InvalidFrameError
from autofocus.frames import as_frame

__all__ = ["TileGrid", "extract_context", "extract_patches", "normalise_patches", "tile_starts"]

CONSTANT_STD = 1e-6


def tile_starts(length: int, patch: int) -> np.ndarray:
    """Start offsets of ``ceil(length / patch)`` patches evenly covering ``[0, length)``."""
    if length < patch:
        raise InvalidFrameError(f"axis of {length} px is smaller than one {patch} px patch")
    n = -(-length // patch)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    return np.rint(np.linspace(0, length - patch, n)).astype(np.int64)


@dataclass(frozen=True)
class TileGrid:
    """Patch positions: patch ``(i, j)`` covers rows ``ys[i]:ys[i]+size``, cols ``xs[j]:...``."""

    ys: np.ndarray
    xs: np.ndarray
    size: int

    @classmethod
    def for_shape(cls, shape: tuple[int, int], size: int) -> TileGrid:
        return cls(tile_starts(shape[0], size), tile_starts(shape[1], size), size)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ys.size, self.xs.size)

    def coverage(self, frame_shape: tuple[int, int]) -> np.ndarray:
        """How many patches cover each pixel (>= 1 everywhere for a valid grid)."""
        cov = np.zeros(frame_shape, dtype=np.int32)
        for y in self.ys:
            for x in self.xs:
                cov[y : y + self.size, x : x + self.size] += 1
        return cov


def extract_patches(frame: np.ndarray, grid: TileGrid) -> np.ndarray:
    """``(n_patches, size, size)`` float32 patches in row-major grid order."""
    f = np.asarray(frame)
    s = grid.size
    # A strided view gives every window; fancy-index the grid's starts (one copy).
    win = np.lib.stride_tricks.sliding_window_view(f, (s, s))
    out = win[grid.ys[:, None], grid.xs[None, :]]  # (ny, nx, s, s)
    return out.reshape(-1, s, s).astype(np.float32, copy=False)


def extract_context(frame: np.ndarray, grid: TileGrid) -> np.ndarray:
    """``(n_patches, size, size)`` float32: each patch's ``2 size`` px surroundings, 2x2 binned.

    The window of patch ``(y, x)`` covers frame rows ``y - size/2 .. y + 3 size/2`` (and the
    same columns), reflected where it leaves the frame; output pixel ``(i, j)`` is the *sum*
    of the 2x2 frame pixels at ``(y - size/2 + 2i, x - size/2 + 2j)`` (a sum, not a mean:
    the per-patch normalisation that follows removes the scale).  Row-pair sums and the
    two column parities are formed once for the whole frame, so the cost is a few passes
    over the frame plus one contiguous copy per patch.
    """
    s = grid.size
    if s % 2:
        raise InvalidFrameError(f"context needs an even patch size, got {s}")
    f = np.asarray(frame, dtype=np.float32)
    pad = s // 2
    if min(f.shape) <= pad:
        raise InvalidFrameError(f"frame {f.shape} is too small for {s} px context windows")
    p = np.pad(f, pad, mode="reflect")
    rows = p[:-1] + p[1:]  # rows[y] = p[y] + p[y + 1]
    w = p.shape[1]
    # pairs[b][y, k] = sum of p[y:y+2, b+2k : b+2k+2]
    pairs = []
    for b in (0, 1):
        n = (w - b) // 2
        pairs.append(rows[:, b : b + 2 * n : 2] + rows[:, b + 1 : b + 2 * n : 2])
    out = np.empty((grid.ys.size * grid.xs.size, s, s), np.float32)
    k = 0
    for y in grid.ys.tolist():
        for x in grid.xs.tolist():
            c = x // 2
            out[k] = pairs[x % 2][y : y + 2 * s : 2, c : c + s]
            k += 1
    return out


def normalise_patches(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch zero mean / unit variance; returns ``(normalised, has_signal)``.

    ``has_signal`` is False where the patch is constant (std below ``CONSTANT_STD``
    relative to its magnitude); those patches are returned as zeros.
    """
    p = np.asarray(patches, dtype=np.float32)
    if p.ndim != 3:
        raise InvalidFrameError(f"expected (n, h, w) patches, got shape {p.shape}")
    n = p.shape[0]
    flat = p.reshape(n, -1)
    mean = flat.mean(axis=1, dtype=np.float64)
    # (p - mean) in float64, rounded to float32, without a float64 temporary; the
    # variance accumulates in float64.  Bit-identical to the float64 formulation the
    # shipped models were trained with (tests/autofocus/test_tiling.py), twice as fast.
    centred = np.empty_like(flat)
    np.subtract(flat, mean[:, None], out=centred, dtype=np.float64, casting="same_kind")
    std = np.sqrt(np.einsum("ij,ij->i", centred, centred, dtype=np.float64) / flat.shape[1])
    scale = np.maximum(np.abs(mean), 1.0)
    has_signal = std > CONSTANT_STD * scale
    centred /= np.where(has_signal, std, 1.0).astype(np.float32)[:, None]
    centred[~has_signal] = 0.0
    out = centred.reshape(p.shape)
    return out, has_signal


def prepare_frame(frame: object, min_size: int) -> np.ndarray:
    """Validate a frame for scoring (2-D, numeric, finite, at least one patch)."""
    return as_frame(frame, min_shape=(min_size, min_size))
