"""Classic focus metrics: Micro-Manager's OughtaFocus set and common baselines.

Every metric is a function ``name(frame, *, crop_fraction=1.0) -> float`` that

* validates the frame with :func:`autofocus.frames.as_frame` (2-D, numeric, finite,
  at least the metric's minimum size) and raises
  :class:`~autofocus.errors.InvalidFrameError` otherwise;
* optionally keeps only a centred crop (:func:`centre_crop`, like OughtaFocus's
  ``CropFactor``) before computing;
* computes in float64 and returns a finite Python ``float``;
* is oriented so that **higher means sharper** (for ``plls`` this is the slope
  itself, which is negative and rises towards 0 as the frame gets sharper).

Notation: ``I`` is the (cropped) frame as float64 with ``H`` rows (y) and ``W``
columns (x); ``mu`` and ``sigma`` are its mean and population standard deviation
(``ddof = 0``).  Gradient and Laplacian stencils are evaluated on the *valid*
interior only (no padding, so there are no border artefacts): a 3x3 stencil gives
``(H - 2) x (W - 2)`` values.

Ratio metrics (``edges``, ``std_dev``, ``normalized_variance``) divide by ``mu``;
when ``mu <= 0`` (a black frame, or a background-subtracted frame whose mean is
not positive) the ratio is meaningless and they return ``0.0``.

Scaling under a gain ``I -> g I`` (``g > 0``): ``edges`` and ``std_dev`` are
invariant; ``normalized_variance`` scales by ``g``; ``redondo``, ``vollath_f4``,
``vollath_f5``, ``tenengrad``, ``fft_bandpass`` and ``variance_of_laplacian``
scale by ``g**2``; ``plls`` is invariant.  Adding an offset changes
``edges``/``std_dev``/``normalized_variance`` (they divide by the mean) and
``vollath_f4`` (by ``offset**2 * H``), but not the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft

from autofocus.errors import InvalidFrameError, InvalidInputError, UnknownNameError
from autofocus.frames import as_frame

__all__ = [
    "FFT_BAND_HIGH",
    "FFT_BAND_LOW",
    "METRICS",
    "PLLS_BAND_HIGH",
    "PLLS_BAND_LOW",
    "PLLS_N_BINS",
    "centre_crop",
    "edges",
    "fft_bandpass",
    "get_metric",
    "metric_names",
    "normalized_variance",
    "plls",
    "redondo",
    "std_dev",
    "tenengrad",
    "variance_of_laplacian",
    "vollath_f4",
    "vollath_f5",
]

Metric = Callable[..., float]

#: FFT band-pass annulus, as fractions of the Nyquist frequency (OughtaFocus: 2.5 %-14 %).
FFT_BAND_LOW = 0.025
FFT_BAND_HIGH = 0.14
#: PLLS fit band, as fractions of the Nyquist frequency (see :func:`plls`).
PLLS_BAND_LOW = 0.04
PLLS_BAND_HIGH = 1.0
#: Number of logarithmically spaced frequency bins used by the PLLS fit.
PLLS_N_BINS = 16
#: Minimum number of frequency samples, from DC, kept below the PLLS band (window leakage).
_PLLS_MIN_BIN_OFFSET = 4

_MIN_3X3 = (3, 3)
_MIN_FFT = (16, 16)


# --------------------------------------------------------------------------- helpers


def centre_crop(frame: np.ndarray, fraction: float) -> np.ndarray:
    """Return the centred ``round(H * fraction) x round(W * fraction)`` region (a view).

    ``fraction`` must lie in ``(0, 1]``; 1 returns the frame unchanged.  Each side
    keeps at least one pixel; the crop starts at ``(H - h) // 2, (W - w) // 2`` (as
    Micro-Manager's OughtaFocus ``CropFactor``, applied to both axes).
    """
    try:
        fraction_f = float(fraction)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"crop fraction must be a number, got {fraction!r}") from exc
    if not (math.isfinite(fraction_f) and 0.0 < fraction_f <= 1.0):
        raise InvalidInputError(f"crop fraction must lie in (0, 1], got {fraction!r}")
    if frame.ndim != 2:
        raise InvalidFrameError(f"centre_crop needs a 2-D frame, got shape {frame.shape}")
    if fraction_f == 1.0:
        return frame
    h_full, w_full = frame.shape
    h = max(1, round(h_full * fraction_f))
    w = max(1, round(w_full * fraction_f))
    y0 = (h_full - h) // 2
    x0 = (w_full - w) // 2
    return frame[y0 : y0 + h, x0 : x0 + w]


def _prepare(
    frame: Any, crop_fraction: float, min_shape: tuple[int, int], metric: str
) -> np.ndarray:
    """Validate, crop and convert to float64 (contiguous)."""
    arr = as_frame(frame, min_shape=min_shape, name=f"{metric} frame")
    arr = centre_crop(arr, crop_fraction)
    if arr.shape[0] < min_shape[0] or arr.shape[1] < min_shape[1]:
        raise InvalidFrameError(
            f"{metric}: the crop ({arr.shape[0]}x{arr.shape[1]} px) is smaller than the "
            f"minimum {min_shape[0]}x{min_shape[1]} px; use a larger crop_fraction"
        )
    return np.ascontiguousarray(arr, dtype=np.float64)


def _sobel_valid(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 Sobel derivatives on the valid interior, ``(H-2) x (W-2)`` each.

    ``Gx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` (x = columns, rightwards positive),
    ``Gy = [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]`` (y = rows, downwards positive),
    both applied as correlations (no kernel flip).  Computed separably.
    """
    dx = img[:, 2:] - img[:, :-2]  # central difference along x, H x (W-2)
    gx = dx[:-2] + dx[2:]  # [1, 2, 1] smoothing along y, in place
    gx += dx[1:-1]
    gx += dx[1:-1]
    del dx
    dy = img[2:, :] - img[:-2, :]  # (H-2) x W
    gy = dy[:, :-2] + dy[:, 2:]
    gy += dy[:, 1:-1]
    gy += dy[:, 1:-1]
    return gx, gy


def _laplacian_valid(img: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` on the valid interior."""
    centre = img[1:-1, 1:-1]
    return img[:-2, 1:-1] + img[2:, 1:-1] + img[1:-1, :-2] + img[1:-1, 2:] - 4.0 * centre


@lru_cache(maxsize=8)
def _hann_periodic(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Periodic ("DFT-even") Hann window ``0.5 - 0.5 cos(2 pi k / n)`` and its DFT at
    bins ``0, 1, -1`` (the only non-zero ones): ``n/2, -n/4, -n/4``.  Read-only, cached.
    """
    k = np.arange(n)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)
    dft = np.array([n / 2.0, -n / 4.0, -n / 4.0])
    w.setflags(write=False)
    dft.setflags(write=False)
    return w, dft


@lru_cache(maxsize=8)
def _half_plane_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Radial frequency and multiplicity of each ``rfft2`` sample of an ``h x w`` frame.

    ``rho = sqrt((fy / 0.5)^2 + (fx / 0.5)^2)`` with ``fy, fx`` in cycles per pixel,
    i.e. each axis normalised to its own Nyquist frequency (1.0 = Nyquist).  The
    multiplicity is 2 for half-plane columns that stand for a conjugate pair and 1 for
    the ``fx = 0`` column (and the ``fx = 0.5`` column when ``w`` is even), so that
    weighted means over the half-plane equal means over the full plane.
    """
    fy = np.fft.fftfreq(h) / 0.5
    fx = np.fft.rfftfreq(w) / 0.5
    rho = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    mult = np.full(fx.shape, 2.0)
    mult[0] = 1.0
    if w % 2 == 0:
        mult[-1] = 1.0
    mult2 = np.broadcast_to(mult[None, :], rho.shape).copy()
    rho.setflags(write=False)
    mult2.setflags(write=False)
    return rho, mult2


def _windowed_spectrum(img: np.ndarray) -> tuple[np.ndarray, float]:
    """Half-plane spectrum ``FFT(w (I - m))`` (``rfft2`` layout) and its power norm.

    ``w = wy(y) wx(x)`` is the separable periodic Hann window and
    ``m = sum(w I) / sum(w)`` the window-weighted mean, removed so that the windowed
    signal has exactly zero DC.  Because the DFT of a periodic Hann window is non-zero
    only at bins 0 and +-1, removing ``m w`` only touches the 3 x 2 lowest half-plane
    bins and is done in the frequency domain.  The returned norm is ``sum(w^2)``:
    ``P = |spectrum|^2 / norm`` has expectation ``s^2`` for white noise of variance
    ``s^2``.  The window suppresses the leakage of the frame's edges (a non-periodic
    frame would otherwise add a ``1 / f^2`` cross to every spectrum).
    """
    h, w = img.shape
    wy, dfty = _hann_periodic(h)
    wx, dftx = _hann_periodic(w)
    x = img * wx[None, :]
    x *= wy[:, None]
    spec = scipy.fft.rfft2(x, overwrite_x=True)
    m = spec[0, 0].real / (dfty[0] * dftx[0])
    ky = (0, 1, -1)
    for iy in range(3):
        for ix in range(2):
            spec[ky[iy], ix] -= m * dfty[iy] * dftx[ix]
    norm = float(np.dot(wy, wy) * np.dot(wx, wx))
    return spec, norm


@lru_cache(maxsize=8)
def _band_selection(h: int, w: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat half-plane indices with ``lo <= rho <= hi`` and their multiplicities."""
    rho, mult = _half_plane_grid(h, w)
    flat = np.flatnonzero((rho >= lo) & (rho <= hi))
    weights = mult.ravel()[flat]
    flat.setflags(write=False)
    weights.setflags(write=False)
    return flat, weights


def _is_constant(img: np.ndarray) -> bool:
    return bool(img.min() == img.max())


def _ratio(numerator: float, mu: float) -> float:
    if not mu > 0.0:
        return 0.0
    return float(numerator / mu)


# --------------------------------------------------------------------------- metrics


def edges(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """OughtaFocus "Edges": ``mean(sqrt(Gx^2 + Gy^2)) / mu``.

    ``Gx, Gy`` are the 3x3 Sobel derivatives on the valid interior (see
    :func:`_sobel_valid`), ``mu`` the mean of the whole (cropped) frame.  Invariant
    to gain; 0.0 when ``mu <= 0``.  Minimum frame 3x3.
    """
    img = _prepare(frame, crop_fraction, _MIN_3X3, "edges")
    gx, gy = _sobel_valid(img)
    np.square(gx, out=gx)
    np.square(gy, out=gy)
    gx += gy
    np.sqrt(gx, out=gx)
    return _ratio(float(gx.mean()), float(img.mean()))


def std_dev(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """OughtaFocus "StdDev": ``sigma / mu`` (coefficient of variation, ``ddof = 0``).

    Invariant to gain; 0.0 when ``mu <= 0``.  Minimum frame 2x2.
    """
    img = _prepare(frame, crop_fraction, (2, 2), "std_dev")
    return _ratio(float(img.std()), float(img.mean()))


def normalized_variance(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """OughtaFocus "NormalizedVariance": ``sigma^2 / mu`` (``ddof = 0``).

    Scales linearly with gain; 0.0 when ``mu <= 0``.  Minimum frame 2x2.  Known
    failure: on brightfield phase objects it peaks on a defocused plane.
    """
    img = _prepare(frame, crop_fraction, (2, 2), "normalized_variance")
    return _ratio(float(img.var()), float(img.mean()))


def redondo(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """OughtaFocus "Redondo": ``sum_{interior} p(x, y)^2`` with the stencil

    ``p = I(x-1, y) + I(x+1, y) + I(x, y-1) + I(x, y+1) - 4 I(x-1, y)``

    i.e. ``-3 I(x-1, y) + I(x+1, y) + I(x, y-1) + I(x, y+1)``, or as a 3x3
    correlation kernel (rows = y, columns = x) ``[[0, 1, 0], [-3, 0, 1], [0, 1, 0]]``.
    This is Micro-Manager's implementation (Redondo et al. 2012, after Russell &
    Douglas 2007): a Laplacian whose centre weight sits on the left neighbour, which
    Micro-Manager keeps because it works better than the true Laplacian (that one
    is :func:`variance_of_laplacian`).  It is 0 on a constant frame; a ramp of slope
    ``a`` along x gives ``4 a`` per pixel.  Sum over the ``(H-2)(W-2)`` interior
    pixels; scales with gain squared.  Minimum frame 3x3.
    """
    img = _prepare(frame, crop_fraction, _MIN_3X3, "redondo")
    p = img[1:-1, 2:] + img[:-2, 1:-1] + img[2:, 1:-1] - 3.0 * img[1:-1, :-2]
    return float(np.vdot(p, p))


def vollath_f4(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """Vollath F4 (OughtaFocus "Volath"): autocorrelation difference along x.

    ``F4 = sum_{y=0}^{H-1} sum_{x=0}^{W-2} I(x, y) I(x+1, y)
    - sum_{y=0}^{H-1} sum_{x=0}^{W-3} I(x, y) I(x+2, y)``

    (the textbook ranges; Micro-Manager starts its first sum at ``x = 1``).  Because
    the two sums have different lengths a constant frame ``c`` gives ``c^2 H``, and
    an offset ``b`` adds about ``b^2 H``; a gain ``g`` scales it by ``g^2``.
    Minimum frame 3x3.
    """
    img = _prepare(frame, crop_fraction, _MIN_3X3, "vollath_f4")
    s1 = np.einsum("ij,ij->", img[:, :-1], img[:, 1:])
    s2 = np.einsum("ij,ij->", img[:, :-2], img[:, 2:])
    return float(s1 - s2)


def vollath_f5(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """Vollath F5 (OughtaFocus "Volath5"): lag-1 autocovariance along x, summed.

    ``F5 = sum_{y=0}^{H-1} sum_{x=0}^{W-2} I(x, y) I(x+1, y) - (W - 1) H mu^2``

    ``mu`` is the mean of the whole frame.  The first sum has ``(W - 1) H`` terms, so
    ``(W - 1) H mu^2`` is exactly the product of means over the same number of terms:
    F5 is 0 for a constant frame (up to rounding), insensitive to an offset to first
    order, and scales with gain squared.  It is a *sum*, so it grows with the frame
    area (not a per-pixel mean, as in Micro-Manager).  Minimum frame 2x2.
    """
    img = _prepare(frame, crop_fraction, (2, 2), "vollath_f5")
    h, w = img.shape
    mu = float(img.mean())
    s1 = float(np.einsum("ij,ij->", img[:, :-1], img[:, 1:]))
    return float(s1 - (w - 1) * h * mu * mu)


def tenengrad(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """Tenengrad: ``sum_{interior} (Gx^2 + Gy^2)`` with the 3x3 Sobel kernels.

    ``Gx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``, ``Gy`` its transpose, evaluated on
    the ``(H-2) x (W-2)`` valid interior (no border padding; Micro-Manager pads by
    edge replication).  A sum, so it grows with the area; scales with gain squared.
    Minimum frame 3x3.
    """
    img = _prepare(frame, crop_fraction, _MIN_3X3, "tenengrad")
    gx, gy = _sobel_valid(img)
    return float(np.vdot(gx, gx) + np.vdot(gy, gy))


def variance_of_laplacian(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """Variance (``ddof = 0``) of the 4-neighbour Laplacian over the valid interior.

    Kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` (OpenCV's ``Laplacian(ksize=1)``),
    giving ``(H-2) x (W-2)`` values.  Scales with gain squared.  Minimum frame 3x3.
    """
    img = _prepare(frame, crop_fraction, _MIN_3X3, "variance_of_laplacian")
    return float(_laplacian_valid(img).var())


def fft_bandpass(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """OughtaFocus "FFTBandpass": mean spectral power in a low-frequency annulus.

    ``P(f) = |FFT(w (I - m))(f)|^2 / sum(w^2)`` (see :func:`_windowed_spectrum`:
    separable periodic Hann window ``w``, window-weighted mean ``m`` removed), averaged
    over every frequency sample of the full plane whose radial frequency, normalised
    per axis to Nyquist (``rho = sqrt((2 fy)^2 + (2 fx)^2)``, ``f`` in cycles/pixel),
    satisfies ``FFT_BAND_LOW <= rho <= FFT_BAND_HIGH`` (2.5 %-14 % of the half-width).
    Units: intensity squared per frequency sample (white noise of variance ``s^2``
    gives ``s^2``); scales with gain squared; 0.0 for a constant frame.  Differences
    from Micro-Manager: a Hann window instead of none, no padding to a power of two,
    and the mean is over the annulus only.  Minimum frame 16x16 (smaller frames have
    no sample in the band).
    """
    img = _prepare(frame, crop_fraction, _MIN_FFT, "fft_bandpass")
    if _is_constant(img):
        return 0.0
    spec, norm = _windowed_spectrum(img)
    flat, weights = _band_selection(*img.shape, FFT_BAND_LOW, FFT_BAND_HIGH)
    if flat.size == 0:  # pragma: no cover - prevented by the 16x16 minimum
        raise InvalidFrameError(f"fft_bandpass: a {img.shape} frame has no frequency in the band")
    sel = spec.ravel()[flat]
    power = sel.real**2 + sel.imag**2
    return float(np.dot(power, weights) / (weights.sum() * norm))


def _plls_band(h: int, w: int) -> tuple[float, float]:
    return max(PLLS_BAND_LOW, 2.0 * _PLLS_MIN_BIN_OFFSET / min(h, w)), PLLS_BAND_HIGH


@lru_cache(maxsize=8)
def _plls_bins(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """In-band flat indices, their weighted bin index, total weight and mean log10 rho
    per bin (``nan`` for empty bins)."""
    lo, hi = _plls_band(h, w)
    flat, weights = _band_selection(h, w, lo, hi)
    rho, _ = _half_plane_grid(h, w)
    log_rho = np.log(rho.ravel()[flat])
    edges_log = np.linspace(math.log(lo), math.log(hi), PLLS_N_BINS + 1)
    bin_of = np.clip(np.searchsorted(edges_log, log_rho, side="right") - 1, 0, PLLS_N_BINS - 1)
    wsum = np.bincount(bin_of, weights=weights, minlength=PLLS_N_BINS)
    lsum = np.bincount(bin_of, weights=weights * log_rho / math.log(10.0), minlength=PLLS_N_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre_log10 = lsum / wsum
    for arr in (bin_of, wsum, centre_log10):
        arr.setflags(write=False)
    return flat, bin_of, wsum, centre_log10


def plls(frame: np.ndarray, *, crop_fraction: float = 1.0) -> float:
    """Power log-log slope (Bray et al. 2012): ``d log10 P / d log10 rho``.

    Spectrum ``P`` as in :func:`fft_bandpass` (periodic Hann window, weighted mean
    removed).  The band ``rho_lo <= rho <= PLLS_BAND_HIGH`` (``rho`` = radial
    frequency as a fraction of Nyquist, 1.0 = Nyquist; the corners beyond Nyquist are
    excluded) with ``rho_lo = max(PLLS_BAND_LOW, 8 / min(H, W))`` (at least four
    frequency samples above DC, clear of the window's leakage) is split into
    ``PLLS_N_BINS`` logarithmically spaced bins; in each non-empty bin the mean power
    and the mean ``log10 rho`` are taken (full-plane weighting), and the returned
    value is the least-squares slope of ``log10(mean power)`` against mean
    ``log10 rho`` over those bins (equal weight per bin, so every octave counts alike).

    Sign: the slope is negative for natural images (about -2 to -3 for sharp
    microscopy, 0 for white noise) and becomes MORE negative as the frame blurs, so
    the slope itself is "higher = sharper" and is returned as is.  Invariant to gain
    and offset.  A frame without variation has no spectrum: it returns 0.0 (the slope
    of white noise), which a search should not mistake for a sharp frame (check
    ``std_dev`` if constant frames can occur).  Bins whose power is exactly 0 are
    dropped; fewer than 3 usable bins raise :class:`InvalidFrameError`.  Noise-free,
    very strongly blurred frames reach the float64 round-off floor (about 1e-30 of the
    peak power) at high frequencies, which flattens the slope; real frames hit their
    noise floor long before.  Minimum frame 16x16.
    """
    img = _prepare(frame, crop_fraction, _MIN_FFT, "plls")
    if _is_constant(img):
        return 0.0
    flat, bin_of, wsum, centre_log10 = _plls_bins(*img.shape)
    _, weights = _band_selection(*img.shape, *_plls_band(*img.shape))
    spec, _ = _windowed_spectrum(img)
    sel = spec.ravel()[flat]
    power = sel.real**2 + sel.imag**2
    power *= weights
    psum = np.bincount(bin_of, weights=power, minlength=PLLS_N_BINS)
    valid = (wsum > 0) & (psum > 0)
    if int(valid.sum()) < 3:
        raise InvalidFrameError(
            f"plls: a {img.shape[0]}x{img.shape[1]} frame leaves fewer than 3 usable frequency bins"
        )
    x = centre_log10[valid]
    y = np.log10(psum[valid] / wsum[valid])
    xc = x - x.mean()
    slope = float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))
    return slope if math.isfinite(slope) else 0.0


# --------------------------------------------------------------------------- registry

#: Every metric, by name; each is "higher = sharper".
METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "edges": edges,
    "std_dev": std_dev,
    "normalized_variance": normalized_variance,
    "redondo": redondo,
    "vollath_f4": vollath_f4,
    "vollath_f5": vollath_f5,
    "tenengrad": tenengrad,
    "fft_bandpass": fft_bandpass,
    "variance_of_laplacian": variance_of_laplacian,
    "plls": plls,
}


def metric_names() -> list[str]:
    """Names of the registered metrics, in registry order."""
    return list(METRICS)


def get_metric(name: str) -> Callable[[np.ndarray], float]:
    """Return the metric called ``name`` or raise :class:`UnknownNameError`."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown focus metric {name!r}; known metrics: {', '.join(METRICS)}"
        ) from None
