"""Fit the blur-versus-defocus curve of a calibration stack (astropy modeling).

Model: ``Const1D(baseline) + Moffat1D(amplitude=-A, x_0, gamma, alpha)``, i.e. the
inverted Moffat profile of :class:`autofocus.curve.BlurCurve`::

    b(dz) = baseline - A (1 + ((dz - x_0) / gamma)^2)^(-alpha),   A > 0

fitted by bounded least squares (``TRFLSQFitter``) from several starting values of
``alpha``; the best (lowest residual sum of squares) wins.  Reported: the centre
``x_0`` (where the stack's best focus is, relative to the stack's dz origin), FWHM
``2 gamma sqrt(2^(1/alpha) - 1)``, amplitude, baseline, ``R^2 = 1 - SS_res / SS_tot``
on b, the residuals and their RMS.  The stored curve is centred (``centre_um = 0``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autofocus.curve import BlurCurve
from autofocus.errors import CalibrationError, InvalidInputError

__all__ = ["CurveFit", "fit_blur_curve"]

logger = logging.getLogger(__name__)

_ALPHA_STARTS = (0.5, 1.0, 2.5)
_ALPHA_BOUNDS = (0.5, 50.0)  # below 0.5 the FWHM (2^(1/alpha)) runs off on V-shaped curves


@dataclass(frozen=True)
class CurveFit:
    """Result of :func:`fit_blur_curve`.  ``curve`` is centred at its minimum."""

    curve: BlurCurve
    centre_um: float
    fwhm_um: float
    amplitude_px: float
    baseline_px: float
    r2: float
    residual_rms_px: float
    residuals_px: tuple[float, ...]


def fit_blur_curve(
    dz_um: Sequence[float] | np.ndarray,
    b_px: Sequence[float] | np.ndarray,
    *,
    sigma_px: Sequence[float] | np.ndarray | None = None,
    residual_correction: bool = True,
) -> CurveFit:
    """Fit an inverted Moffat + baseline to samples ``(dz_um, b_px)``.

    ``sigma_px`` (optional, per sample, > 0) weights the fit by ``1 / sigma``.
    With ``residual_correction`` the curve also carries the fit residuals smoothed by a
    3-point running median then a 3-point mean, and made even in ``dz`` about the fitted
    centre where both sides were sampled (see :mod:`autofocus.curve`); R^2 and the
    residuals reported are those of the Moffat alone, ``residual_sd_px`` is the scatter
    left after the correction (the noise the search should expect).
    Raises :class:`~autofocus.errors.InvalidInputError` for malformed input and
    :class:`~autofocus.errors.CalibrationError` when no fit converges.
    """
    from astropy.modeling import fitting, models

    x = np.asarray(dz_um, dtype=np.float64)
    y = np.asarray(b_px, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise InvalidInputError("dz_um and b_px must be 1-D arrays of one length")
    if x.size < 5:
        raise InvalidInputError(f"a curve fit needs at least 5 samples, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InvalidInputError("dz_um and b_px must be finite")
    weights = None
    if sigma_px is not None:
        s = np.asarray(sigma_px, dtype=np.float64)
        if s.shape != x.shape or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise InvalidInputError("sigma_px must be finite, > 0 and one per sample")
        weights = 1.0 / s
    order = np.argsort(x)
    x, y = x[order], y[order]
    if weights is not None:
        weights = weights[order]
    span = float(x[-1] - x[0])
    if span <= 0:
        raise InvalidInputError("the samples must cover more than one dz")

    # starting values: baseline from the top, centre at the smoothed minimum
    k = max(1, x.size // 15)
    smooth = np.convolve(y, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
    smooth[:k] = y[:k]
    smooth[-k:] = y[-k:]
    i0 = int(np.argmin(smooth))
    base0 = float(np.percentile(y, 90))
    amp0 = max(base0 - float(y[i0]), 1e-3)
    half = y[i0] + amp0 / 2
    below = x[y <= half]
    width0 = float(below.max() - below.min()) if below.size >= 2 else span / 4
    width0 = max(width0, span / (4 * x.size))

    fitter = fitting.TRFLSQFitter(calc_uncertainties=False)
    best: tuple[float, object] | None = None
    for alpha0 in _ALPHA_STARTS:
        gamma0 = width0 / (2 * math.sqrt(2 ** (1 / alpha0) - 1))
        model = models.Const1D(amplitude=base0) + models.Moffat1D(
            amplitude=-amp0, x_0=float(x[i0]), gamma=gamma0, alpha=alpha0
        )
        model.amplitude_1.bounds = (None, -1e-9)
        model.gamma_1.bounds = (span * 1e-4, span * 100)
        model.alpha_1.bounds = _ALPHA_BOUNDS
        model.x_0_1.bounds = (x[0] - span, x[-1] + span)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = fitter(model, x, y, weights=weights, maxiter=2000)
        except Exception as exc:  # astropy/scipy raise several kinds on a bad start
            logger.debug("Moffat fit from alpha %.2f failed: %s", alpha0, exc)
            continue
        pred = fitted(x)
        if not np.all(np.isfinite(pred)):
            continue
        r = (y - pred) if weights is None else (y - pred) * weights
        ssr = float(np.sum(r**2))
        if best is None or ssr < best[0]:
            best = (ssr, fitted)
    if best is None:
        raise CalibrationError("the Moffat fit failed from every starting value")
    fitted = best[1]
    amp = -float(fitted.amplitude_1.value)  # type: ignore[attr-defined]
    centre = float(fitted.x_0_1.value)  # type: ignore[attr-defined]
    gamma = abs(float(fitted.gamma_1.value))  # type: ignore[attr-defined]
    alpha = float(fitted.alpha_1.value)  # type: ignore[attr-defined]
    baseline = float(fitted.amplitude_0.value)  # type: ignore[attr-defined]
    if not all(math.isfinite(v) for v in (amp, centre, gamma, alpha, baseline)) or amp <= 0:
        raise CalibrationError("the Moffat fit returned invalid parameters")
    pred = fitted(x)  # type: ignore[operator]
    resid = y - pred
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 0.0
    rms = float(np.sqrt(np.mean(resid**2)))
    correction: dict[str, object] = {}
    noise_rms = rms
    if residual_correction and x.size >= 7 and np.all(np.diff(x) > 0):
        smooth_r = _even_part(x - centre, _smooth_residuals(resid))
        correction = {
            "correction_dz_um": tuple(float(v) for v in x - centre),
            "correction_px": tuple(float(v) for v in smooth_r),
        }
        noise_rms = float(np.sqrt(np.mean((resid - smooth_r) ** 2)))
    curve = BlurCurve(
        baseline_px=baseline,
        amplitude_px=amp,
        centre_um=centre,
        gamma_um=gamma,
        alpha=alpha,
        residual_sd_px=noise_rms,
        dz_range_um=(float(x[0]), float(x[-1])),
        **correction,  # type: ignore[arg-type]
    ).centred()
    inv = np.argsort(order)
    return CurveFit(
        curve=curve,
        centre_um=centre,
        fwhm_um=curve.fwhm_um,
        amplitude_px=amp,
        baseline_px=baseline,
        r2=r2,
        residual_rms_px=rms,
        residuals_px=tuple(float(v) for v in resid[inv]),
    )


def _even_part(dz: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``(r(dz) + r(-dz)) / 2`` where the stack reached both sides, else ``r``.

    Blur is even in defocus, so the odd part of the residuals is noise (or the grid
    sitting off-centre): kept, it tilts the curve, and the search's symmetric flank pair
    then settles a fixed fraction of a micrometre to one side (+0.13 um on 10x).
    """
    reach = min(-float(dz[0]), float(dz[-1]))
    if reach <= 0:
        return r
    out = r.copy()
    both = np.abs(dz) <= reach
    out[both] = 0.5 * (r[both] + np.interp(-dz[both], dz, r))
    return out


def _smooth_residuals(r: np.ndarray) -> np.ndarray:
    """3-point running median (ends kept) followed by a 3-point running mean."""
    r = np.asarray(r, dtype=np.float64)
    med = r.copy()
    med[1:-1] = np.median(np.stack([r[:-2], r[1:-1], r[2:]]), axis=0)
    out = med.copy()
    out[1:-1] = (med[:-2] + med[1:-1] + med[2:]) / 3.0
    return out
