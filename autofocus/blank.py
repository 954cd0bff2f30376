"""Is a frame only illumination and noise?  (A blank field: no specimen to judge.)

The most common blank frame is not constant: a brightfield or fluorescence field with no
specimen shows the illumination's vignetting or ramp under shot noise.  Each patch of
it, normalised to zero mean and unit variance, is a smooth gradient, which the models
read as extreme blur (level ~9.5 with certainty 0.64, b ~ 89 px, "textured"); and a dark
frame with a few hot pixels reads as in-focus points.  Neither has a specimen, so the
scorer's verdict must be "undetermined" (:class:`autofocus.scorer.LocalScorer` asks
:func:`is_blank_field` first).

A frame is blank only when all of these find nothing but noise (:func:`is_blank_field`):

1. **Noise.**  The pixel noise ``sigma`` from horizontal neighbour differences (their
   RMS within 5 robust SDs, on evenly spaced rows, about ``_NOISE_SAMPLES`` pixels).
2. **Illumination.**  Means of ``4 x 4`` pixel *cells* (noise ``sigma / 4``), and of
   coarse blocks of ``k x k`` pixels (``k`` = 4 up to 767 px frames, then 4 x
   ``min(h, w) // 384``: about 100 blocks a side), noise ``sigma / k``.  A 2-D
   polynomial of degree 4 (15 terms: vignetting, ramps, a tilted lamp) is fitted to
   the blocks by least squares, robustly: blocks more than 5 block SDs off are left
   out and the fit redone, up to three times (more than 5 % of them off: an object).
3. **Small objects, at the cell scale whatever the frame size.**  A cell more than
   ``_CELL_SD`` (7) cell SDs off the fit is an object - a single in-focus bead in a
   2048 px frame - unless spikes explain it: pixels 8 noise SDs out whose eight
   neighbours are all within 4 (narrower than a point spread function sampled at
   Nyquist: hot pixels, cosmic rays), and at most ``_MAX_SPIKE_SHARE`` of the cells hold
   them.  Spikes are subtracted and the fit is redone.
4. **Faint extended objects.**  A block more than 8 block SDs off is an object; so is
   an RMS block residual above ``BLANK_RATIO`` (1.2) block SDs.  The RMS must also be
   above ``MIN_RATIO`` (0.8): pixel noise that block means do not show is structure at
   the pixel scale (a fine periodic pattern), not noise.
5. **Pixel-scale correlation** (:func:`neighbour_correlation_ratio`), along rows and
   along columns: any image of a specimen is correlated between neighbouring pixels,
   white noise is not.  The variance of second differences 2 and 3 pixels apart over
   that of adjacent ones is 1 for noise (hot pixels left out, illumination cancels),
   above 1 for structure that spans pixels and below 1 for structure at the Nyquist
   limit or repeating every 2 or 3 pixels; each must be within 5.5 of its SDs for
   white noise (``2.2 / sqrt(n)`` for ``n`` differences), and at least
   ``PIXEL_TOLERANCE`` (0.05), of 1.

What it cannot see: structure below the noise at every scale (a line 1-2 px wide at 2-3
noise SDs), and structure as smooth as the illumination (a blob hundreds of pixels wide
is absorbed by the fit); the networks find no texture in such frames either.  A point
object undersampled to one pixel is a spike.  Camera noise that is not white (sCMOS
column offsets, a compressed file) raises the block residuals or the correlation: weak,
it still passes (column offsets of 3 ADU under 22 ADU of shot noise: block ratio 1.19);
stronger, the frame is not called blank and the networks judge it as before (the safe
side).  Cost (a 2-core VM): about 1 ms for a frame with a specimen in focus (the
first test decides), 3-5 ms for a near-blank 512x512 frame, 10-15 ms at 2048x2048.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "BLANK_RATIO",
    "MIN_RATIO",
    "PIXEL_TOLERANCE",
    "blank_ratio",
    "is_blank_field",
    "neighbour_correlation_ratio",
]

BLANK_RATIO = 1.2
MIN_RATIO = 0.8
PIXEL_TOLERANCE = 0.05
_DEGREE = 4
_CELL = 4
_OUTLIER_SD = 5.0  # block residuals left out of the robust fit
_STRUCTURE_SD = 8.0  # a block residual that is an object
_CELL_SD = 7.0  # a cell residual that is an object (or spikes)
_SPIKE_SD = 8.0
_NEIGHBOUR_SD = 4.0
_MAX_SPIKE_SHARE = 0.002
_MAX_OFF_SHARE = 0.05  # more blocks off the fit than this: an object
_NOISE_SAMPLES = 32768  # pixel differences the noise and correlation tests look at


def is_blank_field(frame: np.ndarray) -> bool:
    """True when ``frame`` (2-D, finite) is illumination and noise only (see module)."""
    f = np.asarray(frame)
    if min(f.shape) < 8 * _CELL:
        return False  # too small to tell illumination from a specimen
    rows = _sample_lines(f)
    v1 = _second_difference_ms(rows, 1)
    # the cheapest test first: most frames with a specimen fail it
    if not _uncorrelated(rows, v1, lag=2):
        return False
    if not MIN_RATIO < blank_ratio(f, sigma=_pixel_noise(rows)) < BLANK_RATIO:
        return False
    if not _uncorrelated(rows, v1, lag=3):
        return False
    cols = _sample_lines(f.T)
    c1 = _second_difference_ms(cols, 1)
    return _uncorrelated(cols, c1, lag=2) and _uncorrelated(cols, c1, lag=3)


def _uncorrelated(lines: np.ndarray, v1: float, lag: int) -> bool:
    """The neighbour correlation ratio along ``lines`` (``v1``: its lag-1 variance)
    within 5.5 of its SDs for white noise (about ``2.2 / sqrt(n)`` for ``n``
    differences), and at least ``PIXEL_TOLERANCE``, of 1."""
    if not v1 > 0:
        return False
    tolerance = max(PIXEL_TOLERANCE, 12.0 / np.sqrt(lines.shape[0] * (lines.shape[1] - 6)))
    return bool(abs(_second_difference_ms(lines, lag) / v1 - 1.0) < tolerance)


def blank_ratio(frame: np.ndarray, *, sigma: float | None = None) -> float:
    """RMS residual of the block means about the robust illumination fit, in units of
    their noise (about 1 for a blank field); ``inf`` for an object (a cell or a block
    beyond its threshold) or a frame too small to tell; 0 for a constant frame."""
    f = np.asarray(frame)
    h, w = f.shape
    m = max(1, min(h, w) // (96 * _CELL))  # cells per block side
    k = _CELL * m
    ny, nx = h // k, w // k
    if ny < 8 or nx < 8:
        return float("inf")
    if sigma is None:
        sigma = _pixel_noise(_sample_lines(f))
    if not sigma > 0:
        return 0.0 if float(np.ptp(f)) == 0 else float("inf")
    cells = _block_means(f, _CELL, ny * m, nx * m)
    with np.errstate(over="ignore", invalid="ignore"):
        coef = _robust_fit(cells, m, sigma / k)
        if coef is None:
            return float("inf")
        spikes = _cell_objects(f, cells, coef, m, sigma)
        if spikes is None:
            return float("inf")
        if spikes:
            for (cy, cx), excess in spikes.items():
                cells[cy, cx] -= excess / _CELL**2
            coef = _robust_fit(cells, m, sigma / k)
            if coef is None:
                return float("inf")
        means = _blocks_of(cells, m).ravel()
        resid = (means - _matvec(_basis(ny, nx)[0], coef)) / (sigma / k)
        if np.abs(resid).max() > _STRUCTURE_SD:
            return float("inf")
        return float(np.sqrt(np.mean(resid**2)))


def neighbour_correlation_ratio(
    frame: np.ndarray, *, rows: np.ndarray | None = None, lag: int = 2
) -> float:
    """Along rows, ``var(x[i+L] - 2 x[i] + x[i-L]) / var(x[i+1] - 2 x[i] + x[i-1])`` for
    the lag ``L``: 1 for white noise; above 1 for structure that spans pixels; below 1
    for structure that repeats every ``L`` pixels or at the Nyquist limit; ``nan`` for
    a frame with no variation.  Second differences, so that illumination (linear or
    gently curved over a few pixels) cancels; each variance is taken within 5 robust
    SDs, so that hot pixels do not count."""
    r = _sample_lines(np.asarray(frame)) if rows is None else rows
    v1 = _second_difference_ms(r, 1)
    return _second_difference_ms(r, lag) / v1 if v1 > 0 else float("nan")


def _second_difference_ms(lines: np.ndarray, lag: int) -> float:
    """Clipped mean square of ``x[i+lag] - 2 x[i] + x[i-lag]`` along each line."""
    n = 2 * lag
    return _clipped_mean_square(lines[:, n:] - 2.0 * lines[:, lag:-lag] + lines[:, :-n])


# ---------------------------------------------------------------------------------------
def _robust_fit(cells: np.ndarray, m: int, block_sd: float) -> np.ndarray | None:
    """Polynomial coefficients fitted to the blocks (``m x m`` cells each), leaving out
    blocks more than ``_OUTLIER_SD`` block SDs off (up to three refits); None when more
    than ``_MAX_OFF_SHARE`` of the blocks are off (an object, not illumination).  A
    refit updates the cached normal equations by the left-out rows only."""
    means = _blocks_of(cells, m)
    basis, _, gram = _basis(*means.shape)
    y = means.ravel()
    bty = np.einsum("ij,i->j", basis, y)

    def fit(use: np.ndarray) -> np.ndarray:
        b_out = basis[~use]
        rhs = bty - np.einsum("ij,i->j", b_out, y[~use])
        return _solve(gram - np.einsum("ij,ik->jk", b_out, b_out), rhs)

    # first, blocks far outside the spread of all block means (a saturated hot pixel
    # in a dark frame) are set aside: illumination varies smoothly, they do not
    med = float(np.median(y))
    spread = 1.4826 * float(np.median(np.abs(y - med)))
    use = np.abs(y - med) <= 10.0 * spread + _OUTLIER_SD * block_sd
    for _ in range(4):
        if (~use).sum() > _MAX_OFF_SHARE * y.size:
            return None
        coef = fit(use)
        new = np.abs(y - _matvec(basis, coef)) <= _OUTLIER_SD * block_sd
        if np.array_equal(new, use):
            break
        use = new
    return coef


def _cell_objects(
    f: np.ndarray, cells: np.ndarray, coef: np.ndarray, m: int, sigma: float
) -> dict[tuple[int, int], float] | None:
    """Cells off the fit by more than ``_CELL_SD`` cell SDs: ``{cell: spike excess}``
    when spikes explain every one of them (and they are few), else None (an object)."""
    ny, nx = cells.shape[0] // m, cells.shape[1] // m
    fit = _poly_on_cells(coef, ny, nx, m)
    dev = cells - fit
    np.abs(dev, out=dev)
    far = dev > _CELL_SD * sigma / _CELL
    if not far.any():
        return {}
    off = np.argwhere(far)
    if len(off) > max(16, _MAX_SPIKE_SHARE * cells.size):
        return None
    spikes: dict[tuple[int, int], float] = {}
    for cy, cx in off:
        excess = _spike_excess(f, int(cy) * _CELL, int(cx) * _CELL, float(fit[cy, cx]), sigma)
        if excess is None:
            return None
        spikes[(int(cy), int(cx))] = excess
    return spikes


def _spike_excess(f: np.ndarray, y0: int, x0: int, fit: float, sigma: float) -> float | None:
    """The summed excess of the spikes in the cell at ``(y0, x0)`` - pixels beyond
    ``_SPIKE_SD`` noise SDs whose eight neighbours are all within ``_NEIGHBOUR_SD`` - if
    without them the cell is within ``_OUTLIER_SD`` cell SDs of ``fit``; else None."""
    h, w = f.shape
    c = _CELL
    ya, xa = max(y0 - 1, 0), max(x0 - 1, 0)
    e = f[ya : min(y0 + c + 1, h), xa : min(x0 + c + 1, w)].astype(np.float64) - fit
    pad = ((int(y0 == ya), int(y0 + c + 1 > h)), (int(x0 == xa), int(x0 + c + 1 > w)))
    a = np.abs(np.pad(e, pad))  # a frame edge counts as a quiet neighbour
    inner = a[1:-1, 1:-1]
    near = np.maximum.reduce(
        [a[dy : dy + c, dx : dx + c] for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    )
    spike = (inner > _SPIKE_SD * sigma) & (near < _NEIGHBOUR_SD * sigma)
    if not spike.any():
        return None
    cell = np.pad(e, pad)[1:-1, 1:-1]
    rest = float(cell[~spike].sum()) / c**2
    if abs(rest) > _OUTLIER_SD * sigma / c:
        return None
    return float(cell[spike].sum())


def _matvec(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``a @ v`` without BLAS (see :func:`_basis`)."""
    return np.einsum("ij,j->i", a, v)


def _solve(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``g^-1 r`` by Gauss-Jordan elimination with partial pivoting (``g`` small and
    square; ``r`` a vector or a matrix of right-hand sides)."""
    n = g.shape[0]
    aug = np.concatenate([g, r.reshape(n, -1)], axis=1).astype(np.float64)
    for c in range(n):
        p = c + int(np.argmax(np.abs(aug[c:, c])))
        if p != c:
            aug[[c, p]] = aug[[p, c]]
        aug[c] /= aug[c, c]
        col = aug[:, c].copy()
        col[c] = 0.0
        aug -= col[:, None] * aug[c][None, :]
    out = aug[:, n:]
    return out.ravel() if r.ndim == 1 else out


def _blocks_of(cells: np.ndarray, m: int) -> np.ndarray:
    """Means of ``m x m`` cells."""
    if m == 1:
        return cells
    ny, nx = cells.shape[0] // m, cells.shape[1] // m
    return _block_sums(cells, m, ny, nx, np.float64) / (m * m)


def _poly_on_cells(coef: np.ndarray, ny: int, nx: int, m: int) -> np.ndarray:
    """The fitted polynomial (coordinates of the ``ny x nx`` block grid) at the centres
    of the ``m x m`` cells of every block, evaluated separably."""

    def coords(n: int) -> np.ndarray:
        centre_in_blocks = (np.arange(n * m) + 0.5) / m - 0.5
        return -1.0 + 2.0 * centre_in_blocks / (n - 1)

    y, x = coords(ny), coords(nx)
    c = np.zeros((_DEGREE + 1, _DEGREE + 1))
    c[_terms()] = coef
    ypow = y[:, None] ** np.arange(_DEGREE + 1)
    xpow = x[:, None] ** np.arange(_DEGREE + 1)
    return np.einsum("aj,bj->ab", np.einsum("ai,ij->aj", ypow, c), xpow)


def _terms() -> tuple[np.ndarray, np.ndarray]:
    """(powers of y, powers of x) of the basis columns, in order."""
    ij = [(i, j) for i in range(_DEGREE + 1) for j in range(_DEGREE + 1 - i)]
    return np.array([i for i, _ in ij]), np.array([j for _, j in ij])


def _sample_lines(f: np.ndarray) -> np.ndarray:
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
    kth = [int(q * (sub.size - 1)) for q in (0.5, 0.75, 0.9)]
    q50, q75, q90 = np.partition(sub, kth)[kth]
    robust = max(q50 / 0.6745, q75 / 1.1503, q90 / 1.6449)
    inside = a[a <= 5.0 * robust]
    with np.errstate(over="ignore"):
        return float(np.mean(inside**2)) if inside.size else 0.0


def _block_means(f: np.ndarray, k: int, ny: int, nx: int) -> np.ndarray:
    """``(ny, nx)`` means of ``k x k`` blocks (float64), summed in float32 for small
    integers (exact while ``k * k * 65535 < 2**24``)."""
    small = f.dtype.kind in "ui" and f.dtype.itemsize <= 2 and k * k * 65535 < 2**24
    return _block_sums(f, k, ny, nx, np.float32 if small else np.float64) / (k * k)


def _block_sums(a: np.ndarray, k: int, ny: int, nx: int, acc: type) -> np.ndarray:
    """``(ny, nx)`` sums of ``k x k`` blocks as float64, accumulated in ``acc``, as sums of
    strided slices (numpy reduces a short inner axis slowly)."""
    crop = a[: ny * k, : nx * k]
    rows = crop[0::k].astype(acc)
    for i in range(1, k):
        np.add(rows, crop[i::k], out=rows, casting="unsafe")
    out = rows[:, 0::k].copy()
    for j in range(1, k):
        np.add(out, rows[:, j::k], out=out)
    return out.astype(np.float64, copy=False)


@lru_cache(maxsize=16)
def _basis(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The polynomial terms at the block centres (``B``, ``(ny nx, 15)``, block
    coordinates spanning [-1, 1]), their pseudo-inverse ``(B^T B)^-1 B^T`` (the
    least-squares fit as one product) and ``B^T B``, all without BLAS or LAPACK (a
    multi-threaded BLAS keeps its threads spinning after each call: with two scoring
    processes on two cores that made every score several times slower).  The 15
    bounded terms are well enough conditioned for the normal equations in float64."""
    y = np.linspace(-1.0, 1.0, ny)[:, None]
    x = np.linspace(-1.0, 1.0, nx)[None, :]
    cols = [np.broadcast_to(y**i * x**j, (ny, nx)).ravel() for i, j in zip(*_terms(), strict=True)]
    out = np.stack(cols, axis=1)
    gram = np.einsum("ij,ik->jk", out, out)
    pinv = _solve(gram, out.T)
    for a in (out, pinv, gram):
        a.setflags(write=False)
    return out, pinv, gram
