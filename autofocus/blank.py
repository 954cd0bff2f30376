"""Is a frame only illumination and noise?  (A blank field: no specimen to judge.)

The most common blank frame is not constant: a brightfield or fluorescence field with no
specimen shows the illumination's vignetting or ramp under shot noise.  Each patch of
it, normalised to zero mean and unit variance, is a smooth gradient, which the models
read as extreme blur (level ~9.5 with certainty 0.64, b ~ 89 px, "textured"); and a dark
frame with a few hot pixels reads as in-focus points.  Neither has a specimen, so the
scorer's verdict must be "undetermined" (:class:`autofocus.scorer.LocalScorer` asks
:func:`is_blank_field` first).

Two tests on the whole frame; it is blank only when both find nothing but noise:

*Block scale* (:func:`blank_ratio`): illumination is smooth at the frame's scale, a
specimen - even far out of focus - is not.

1. the pixel noise ``sigma`` from horizontal neighbour differences (their RMS within 5
   robust SDs, on evenly spaced rows, about ``_NOISE_SAMPLES`` pixels in all);
2. block means (``k x k`` pixels, ``k = max(4, min(h, w) // 96)``), whose noise is
   ``sigma / k``;
3. a least-squares fit of a 2-D polynomial of degree 4 (15 terms: vignetting, ramps,
   a tilted lamp) to the block means;
4. blocks whose residual exceeds 5 noise SDs are outliers, and the fit is redone
   without them; an outlier block whose excess is carried by spikes (pixels 8 noise SDs
   out whose four neighbours are within 4: narrower than any point spread function,
   even undersampled) holds hot pixels or a cosmic ray and is left out; any other block
   beyond 8 SDs is an object, however small, and so are more than 256 outliers;
5. the ratio is the RMS residual of the remaining blocks in units of their noise: 1 for
   a blank field.  Blank needs it below ``BLANK_RATIO`` (1.2).

*Pixel scale* (:func:`neighbour_correlation_ratio`): block means average away structure
finer than a block (a dense in-focus texture of small contrast).  Any image of a
specimen is correlated between neighbouring pixels (the point spread function spans
more than one pixel); white noise is not, and hot pixels are left out.  The variance of
second differences two pixels apart over that of adjacent ones is 1 for noise, above 1
for structure that spans pixels and below 1 for structure at the Nyquist limit
(illumination cancels in second differences).  Blank needs it within
``PIXEL_TOLERANCE`` (0.05) of 1.

Both tests are conservative: correlated camera noise (sCMOS column noise, a
compressed file) raises both ratios, so such a frame is never called blank and is
judged by the models as before.  Cost: a few ms for a 2048x2048 frame.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "BLANK_RATIO",
    "PIXEL_TOLERANCE",
    "blank_ratio",
    "is_blank_field",
    "neighbour_correlation_ratio",
]

BLANK_RATIO = 1.2
PIXEL_TOLERANCE = 0.05
_DEGREE = 4
_OUTLIER_SD = 5.0
_STRUCTURE_SD = 8.0
_SPIKE_SD = 8.0
_NEIGHBOUR_SD = 4.0
_MAX_OUTLIERS = 256  # beyond this many outlier blocks the field has structure
_NOISE_SAMPLES = 32768  # pixel differences the noise and correlation tests look at


def is_blank_field(frame: np.ndarray) -> bool:
    """True when ``frame`` (2-D, finite) is illumination and noise only (see module)."""
    rows = _sample_rows(frame)
    sigma = _pixel_noise(rows)
    if not blank_ratio(frame, sigma=sigma) < BLANK_RATIO:
        return False
    return abs(neighbour_correlation_ratio(frame, rows=rows) - 1.0) < PIXEL_TOLERANCE


def blank_ratio(frame: np.ndarray, *, sigma: float | None = None) -> float:
    """RMS residual of the block means about a smooth illumination fit, in units of
    their noise (1 for a blank field; ``inf`` when there is structure beyond doubt or
    the frame is too small to tell; 0 for a constant frame)."""
    f = np.asarray(frame)
    h, w = f.shape
    k = max(4, min(h, w) // 96)
    ny, nx = h // k, w // k
    if ny < 8 or nx < 8:
        return float("inf")
    if sigma is None:
        sigma = _pixel_noise(_sample_rows(f))
    if not sigma > 0:
        return 0.0 if float(np.ptp(f)) == 0 else float("inf")
    means = _block_means(f, k, ny, nx).ravel()
    basis, pinv = _basis(ny, nx)
    sd = sigma / k
    resid = means - basis @ (pinv @ means)
    out = np.abs(resid) > _OUTLIER_SD * sd
    if out.any():  # refit without the outliers (hot pixels pull a least-squares fit)
        if out.sum() > _MAX_OUTLIERS or (~out).sum() < 2 * basis.shape[1]:
            return float("inf")
        coef, *_ = np.linalg.lstsq(basis[~out], means[~out], rcond=None)
        resid = means - basis @ coef
        out = np.abs(resid) > _OUTLIER_SD * sd
        if out.sum() > _MAX_OUTLIERS:
            return float("inf")
    keep = np.ones(resid.size, dtype=bool)
    for i in np.flatnonzero(out):
        by, bx = divmod(int(i), nx)
        if _only_spikes(f, by * k, bx * k, k, float(means[i] - resid[i]), sigma):
            keep[i] = False  # hot pixels or a cosmic ray, not a specimen
        elif abs(resid[i]) > _STRUCTURE_SD * sd:
            return float("inf")  # an object, however small
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.mean(resid[keep] ** 2)) / sd) if keep.any() else 0.0


def _only_spikes(f: np.ndarray, y0: int, x0: int, k: int, fit: float, sigma: float) -> bool:
    """Whether the ``k x k`` block at ``(y0, x0)`` departs from ``fit`` only through
    spikes: pixels beyond ``_SPIKE_SD`` noise SDs whose four neighbours are all within
    ``_NEIGHBOUR_SD`` (narrower than any point spread function, even undersampled).
    Without them, its mean must be within ``_OUTLIER_SD`` block noise SDs of the fit."""
    h, w = f.shape
    ya, xa = max(y0 - 1, 0), max(x0 - 1, 0)
    e = f[ya : min(y0 + k + 1, h), xa : min(x0 + k + 1, w)].astype(np.float64) - fit
    pad = ((int(y0 == ya), int(y0 + k + 1 > h)), (int(x0 == xa), int(x0 + k + 1 > w)))
    e = np.pad(e, pad)  # a frame edge counts as a quiet neighbour
    inner = e[1:-1, 1:-1]
    near = np.maximum.reduce(
        [np.abs(e[:-2, 1:-1]), np.abs(e[2:, 1:-1]), np.abs(e[1:-1, :-2]), np.abs(e[1:-1, 2:])]
    )
    spike = (np.abs(inner) > _SPIKE_SD * sigma) & (near < _NEIGHBOUR_SD * sigma)
    if not spike.any():
        return False
    rest = float(inner[~spike].sum()) / (k * k)
    return abs(rest) <= _OUTLIER_SD * sigma / k


def neighbour_correlation_ratio(frame: np.ndarray, *, rows: np.ndarray | None = None) -> float:
    """Along rows, ``var(x[i+2] - 2 x[i] + x[i-2]) / var(x[i+1] - 2 x[i] + x[i-1])``: 1
    for white noise, above 1 for structure that spans pixels, below 1 for structure at
    the Nyquist limit; ``nan`` for a frame with no variation.  Second differences, so
    that illumination (linear or gently curved over a few pixels) cancels; each
    variance is taken within 5 robust SDs, so that hot pixels do not count."""
    r = _sample_rows(np.asarray(frame)) if rows is None else rows
    v1 = _clipped_mean_square(r[:, 2:] - 2.0 * r[:, 1:-1] + r[:, :-2])
    v2 = _clipped_mean_square(r[:, 4:] - 2.0 * r[:, 2:-2] + r[:, :-4])
    return v2 / v1 if v1 > 0 else float("nan")


def _sample_rows(f: np.ndarray) -> np.ndarray:
    """Evenly spaced whole rows (at least 8, about ``_NOISE_SAMPLES`` pixels), float64."""
    h, w = f.shape
    n = min(h, max(8, _NOISE_SAMPLES // max(w, 1)))
    return f[np.linspace(0, h - 1, n).astype(np.intp)].astype(np.float64)


def _pixel_noise(rows: np.ndarray) -> float:
    """Pixel noise SD from horizontal neighbour differences (each row's mean difference,
    a ramp, removed): their mean square within 5 robust SDs, over 2."""
    d = np.diff(rows, axis=1)
    return float(np.sqrt(_clipped_mean_square(d - d.mean(axis=1, keepdims=True)) / 2.0))


def _clipped_mean_square(d: np.ndarray) -> float:
    """Mean of ``d**2`` over ``|d|`` within 5 robust SDs of 0, so that a hot pixel or a
    cosmic ray is left out.  The robust SD is the largest of the three Gaussian
    estimates from the 50th, 75th and 90th percentiles of ``|d|``: a dim integer frame
    whose differences are mostly 0 and sometimes +/-1 keeps its steps."""
    a = np.abs(d).ravel()
    if a.size == 0:
        return 0.0
    sub = a[:: max(1, a.size // 4096)]  # the clip needs a scale, not a precise one
    q50, q75, q90 = np.percentile(sub, [50.0, 75.0, 90.0])
    robust = max(q50 / 0.6745, q75 / 1.1503, q90 / 1.6449)
    inside = a[a <= 5.0 * robust]
    with np.errstate(over="ignore"):
        return float(np.mean(inside**2)) if inside.size else 0.0


def _block_means(f: np.ndarray, k: int, ny: int, nx: int) -> np.ndarray:
    """``(ny, nx)`` means of ``k x k`` blocks (float64).  Small integers are summed over
    rows in float32 first (exact: ``k * 65535 < 2**24``), which is 3x faster."""
    crop = f[: ny * k, : nx * k]
    small = f.dtype.kind in "ui" and f.dtype.itemsize <= 2 and k * 65535 < 2**24
    rows = crop.reshape(ny, k, nx * k).sum(axis=1, dtype=np.float32 if small else np.float64)
    return rows.reshape(ny, nx, k).sum(axis=2, dtype=np.float64) / (k * k)


@lru_cache(maxsize=16)
def _basis(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """The polynomial terms at the block centres (``(ny nx, 15)``) and their
    pseudo-inverse (the least-squares fit as one product)."""
    y = np.linspace(-1.0, 1.0, ny)[:, None]
    x = np.linspace(-1.0, 1.0, nx)[None, :]
    cols = [
        np.broadcast_to(y**i * x**j, (ny, nx)).ravel()
        for i in range(_DEGREE + 1)
        for j in range(_DEGREE + 1 - i)
    ]
    out = np.stack(cols, axis=1)
    pinv = np.linalg.pinv(out)
    out.setflags(write=False)
    pinv.setflags(write=False)
    return out, pinv
