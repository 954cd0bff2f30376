"""Pre-processing and tiling shared by training and inference (pure numpy).

* **Tiling** covers every pixel: along an axis of length ``L`` with patch size ``p`` there
  are ``n = ceil(L / p)`` patches whose starts are spread evenly over ``[0, L - p]``, so
  the last row/column is shifted inwards and overlaps its neighbour instead of being
  dropped (Yang et al.'s code dropped the remainder).
* **Normalisation** is per patch: ``x = (p - mean(p)) / std(p)``.  It is exactly
  invariant to camera gain and offset (any affine map ``a p + c`` with ``a > 0``), so the
  verdict cannot depend on them.  A constant patch (``std == 0``) becomes all zeros and
  is marked as having no signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autofocus.errors import InvalidFrameError
from autofocus.frames import as_frame

__all__ = ["TileGrid", "extract_patches", "normalise_patches", "tile_starts"]

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


def normalise_patches(patches: np.ndarray, *, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch zero mean / unit variance; returns ``(normalised, has_signal)``.

    ``has_signal`` is False where the patch is constant (std below ``CONSTANT_STD``
    relative to its magnitude); those patches are returned as zeros.

    Two roundings of one formula.  ``exact=True`` (training) centres and accumulates in
    float64 and rounds once to float32: the shipped weights were trained on it, so the
    recorded recipes reproduce them bit for bit.  The default (inference) makes its
    passes over the pixels in float32 with float64 per-patch statistics and is within
    ~1 float32 ulp of it (tests/autofocus/test_tiling.py) at half the cost: it was ~25 %
    of scoring a 2048x2048 frame.
    """
    p = np.asarray(patches, dtype=np.float32)
    if p.ndim != 3:
        raise InvalidFrameError(f"expected (n, h, w) patches, got shape {p.shape}")
    n = p.shape[0]
    flat = p.reshape(n, -1)
    mean = flat.mean(axis=1, dtype=np.float64)
    if exact:
        centred, sum_sq = _centre_exact(flat, mean)
    else:
        # float32 squares overflow beyond ~1.8e19: such patches are done exactly
        with np.errstate(over="ignore", invalid="ignore"):
            centred, sum_sq = _centre_fast(flat, mean)
        over = ~np.isfinite(sum_sq)
        if over.any():
            centred[over], sum_sq[over] = _centre_exact(flat[over], mean[over])
    std = np.sqrt(sum_sq / flat.shape[1])
    scale = np.maximum(np.abs(mean), 1.0)
    has_signal = std > CONSTANT_STD * scale
    centred /= np.where(has_signal, std, 1.0).astype(np.float32)[:, None]
    centred[~has_signal] = 0.0
    return centred.reshape(p.shape), has_signal


def _centre_exact(flat: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p - mean)`` in float64 rounded to float32 (no float64 temporary) and the sum of
    squares accumulated in float64."""
    centred = np.empty_like(flat)
    np.subtract(flat, mean[:, None], out=centred, dtype=np.float64, casting="same_kind")
    return centred, np.einsum("ij,ij->i", centred, centred, dtype=np.float64)


def _centre_fast(flat: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same in float32 passes: the mean split into a float32 head and tail (``p -
    head`` is exact near the mean), the squares summed pairwise in float32."""
    head = mean.astype(np.float32)
    tail = (mean - head).astype(np.float32)
    centred = np.subtract(flat, head[:, None])
    centred -= tail[:, None]
    return centred, np.square(centred).sum(axis=1).astype(np.float64)


def prepare_frame(frame: object, min_size: int) -> np.ndarray:
    """Validate a frame for scoring (2-D, numeric, finite, at least one patch)."""
    return as_frame(frame, min_shape=(min_size, min_size))
