"""Signed contrast of transparent (phase) specimens: which side of focus, and where.

A thin, weakly scattering phase object in brightfield shows intensity contrast only
through defocus.  Its phase contrast transfer function is odd in defocus
(``sin(pi lambda dz f^2)``), so the image at ``z* + dz`` is the image at ``z* - dz``
with its contrast inverted, and at low spatial frequencies (transport of intensity) the
contrast grows linearly with ``dz``::

    I(x, z) / <I> - 1  ~=  (z - z*) L(x)

A fluorescent or absorbing specimen never inverts: its defocused images are blurred
copies of one non-negative object, positively correlated on both sides of focus.

So two images whose low-pass contrasts are *anti*-correlated lie on opposite sides of
focus.  Projected on the pattern they share, each image's contrast is one signed number
``c ~ k (z - z*)``, and focus is where ``c`` changes sign: the search interpolates it
between neighbouring images of opposite sign (regula falsi) and images the estimate.

The *signature* of a frame is its block-mean image (about 32 x 32 blocks) divided by
its mean, minus 1: cheap (a fraction of a millisecond for 512 x 512), independent of
gain, and low-pass enough to stay in the linear regime over the calibrated range.
No torch here.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SIGNATURE_BLOCKS",
    "contrast_amplitudes",
    "contrast_signature",
    "signature_correlation",
]

SIGNATURE_BLOCKS = 32
"""Blocks along the shorter side of the frame (at least 4 px each)."""


def contrast_signature(frame: np.ndarray, blocks: int = SIGNATURE_BLOCKS) -> np.ndarray | None:
    """Block means of ``frame`` divided by the frame mean, minus 1 (float32, 2-D).

    ``None`` for a frame that cannot carry contrast: not 2-D, not finite, a mean at or
    below zero, or smaller than 4 x 4 blocks.  (The camera's offset scales the
    signature by the same factor in every image of one search, which cancels.)
    """
    f = np.asarray(frame)
    if f.ndim != 2 or f.dtype.kind not in "uif":
        return None
    side = max(4, min(f.shape) // blocks)
    ny, nx = f.shape[0] // side, f.shape[1] // side
    if ny < 4 or nx < 4:
        return None
    y0, x0 = (f.shape[0] - ny * side) // 2, (f.shape[1] - nx * side) // 2
    crop = f[y0 : y0 + ny * side, x0 : x0 + nx * side]
    m = crop.reshape(ny, side, nx, side).mean(axis=(1, 3), dtype=np.float64)
    mean = float(m.mean())
    if not np.isfinite(mean) or mean <= 0 or not np.all(np.isfinite(m)):
        return None
    return (m / mean - 1.0).astype(np.float32)


def signature_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two signatures (NaN when either is flat or shapes differ)."""
    if a.shape != b.shape:
        return float("nan")
    x = a.astype(np.float64).ravel()
    y = b.astype(np.float64).ravel()
    x -= x.mean()
    y -= y.mean()
    den = float(np.sqrt((x @ x) * (y @ y)))
    return float(x @ y / den) if den > 0 else float("nan")


def contrast_amplitudes(sigs: np.ndarray, z_um: np.ndarray) -> np.ndarray:
    """Each image's signed contrast along the pattern all of them share.

    ``sigs`` (n, ny, nx) of one specimen at positions ``z_um``.  The shared pattern
    ``L`` is the first principal direction of the (mean-free) signatures, so that the
    sharp, high-contrast images far from focus pin it down for the faint ones near it;
    the amplitudes ``c_i = <sig_i, L>`` are oriented to grow with z.  For a phase object
    ``c(z) ~ k (z - z*)``: negative below focus, positive above it.
    """
    y = np.asarray(sigs, dtype=np.float64).reshape(len(sigs), -1)
    y = y - y.mean(axis=1, keepdims=True)
    if not np.any(y):
        return np.zeros(len(y))
    direction = np.linalg.svd(y, full_matrices=False)[2][0]
    c = y @ direction
    z = np.asarray(z_um, dtype=np.float64)
    if float(np.dot(c - c.mean(), z - z.mean())) < 0:
        c = -c
    return c
