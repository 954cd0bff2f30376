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
focus, and fitting ``alpha(x) + beta(x) z`` to every block of a few such images puts
focus where the fitted contrast vanishes: ``z* = -sum(alpha beta) / sum(beta^2)``.
Near focus a single image refines it (a Newton step with the fitted slope).

The *signature* of a frame is its block-mean image (about 32 x 32 blocks) divided by
its mean, minus 1: cheap (a fraction of a millisecond for 512 x 512), independent of
gain, and low-pass enough to stay in the linear regime over the calibrated range.
No torch here.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SIGNATURE_BLOCKS",
    "contrast_signature",
    "newton_step_um",
    "signature_correlation",
    "zero_crossing_um",
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


def _fit(z_um: np.ndarray, sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-block least-squares line ``alpha + beta z`` (z centred for conditioning)."""
    zc = z_um - z_um.mean()
    y = sigs.reshape(len(z_um), -1).astype(np.float64)
    y = y - y.mean(axis=1, keepdims=True)
    beta = (zc @ (y - y.mean(axis=0))) / float(zc @ zc)
    alpha = y.mean(axis=0) - beta * z_um.mean()
    return alpha, beta


def zero_crossing_um(z_um: np.ndarray, sigs: np.ndarray) -> tuple[float, np.ndarray]:
    """Focus where the fitted contrast vanishes, and the fitted slope per block.

    ``z_um`` (n >= 2 distinct positions) and their signatures ``sigs`` (n, ny, nx).
    """
    z = np.asarray(z_um, dtype=np.float64)
    if z.size < 2 or np.ptp(z) <= 0:
        raise ValueError("need images at two or more distinct z")
    alpha, beta = _fit(z, np.asarray(sigs))
    bb = float(beta @ beta)
    if bb <= 0:
        raise ValueError("the signatures do not change with z")
    return float(-(alpha @ beta) / bb), beta


def newton_step_um(sig: np.ndarray, beta: np.ndarray) -> float:
    """``z* - z`` from one image's signature and the contrast slope per um."""
    y = sig.astype(np.float64).ravel()
    y = y - y.mean()
    return float(-(y @ beta) / float(beta @ beta))
