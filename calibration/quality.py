"""Quality gates of a calibration: each failure raises :class:`CalibrationError` with a
message that says what to do.

Gates (thresholds in :class:`QualityThresholds`):

* texture: at least ``min_textured_slices`` of the slices must be determined and the
  median textured fraction over slices at least ``min_textured_fraction``;
* minimum inside the range: the lowest (3-slice running-median) blur must not lie in
  the outer ``edge_slices`` slices of either end (else: extend the range that way);
* contrast: ``max b - min b`` (running median) at least ``min_contrast_px`` and at least
  ``min_contrast_sd`` times the noise (median slice-to-slice jitter ``1.4826 MAD(b_i -
  (b_{i-1} + b_{i+1}) / 2) / sqrt(1.5)``);
* fit: ``R^2 >= min_r2`` and a minimum of the fitted curve inside the sampled range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autofocus.errors import CalibrationError
from calibration.fit import CurveFit
from calibration.store import CalibrationSample

__all__ = ["QualityThresholds", "check_fit", "check_samples", "noise_sd_px"]


@dataclass(frozen=True)
class QualityThresholds:
    min_textured_slices: int = 7
    min_textured_fraction: float = 0.2
    edge_slices: int = 2
    min_contrast_px: float = 2.0
    min_contrast_sd: float = 8.0
    min_r2: float = 0.9


def noise_sd_px(b: np.ndarray) -> float:
    """Slice-to-slice noise of b from second differences (robust; see module doc)."""
    if b.size < 3:
        return 0.0
    d = b[1:-1] - 0.5 * (b[:-2] + b[2:])
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(1.5))


def _running_median(b: np.ndarray) -> np.ndarray:
    if b.size < 3:
        return b.copy()
    out = b.copy()
    out[1:-1] = np.median(np.stack([b[:-2], b[1:-1], b[2:]]), axis=0)
    return out


def check_samples(
    samples: list[CalibrationSample], t: QualityThresholds | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the sample gates; returns the determined ``(dz_um, b_px)``, sorted by dz."""
    t = t or QualityThresholds()
    det = [s for s in samples if s.b_px is not None]
    frac = float(np.median([s.textured_fraction for s in samples])) if samples else 0.0
    if len(det) < t.min_textured_slices or frac < t.min_textured_fraction:
        raise CalibrationError(
            f"too few textured patches: {len(det)} of {len(samples)} slices had texture "
            f"(median textured fraction {frac:.2f}); use a flat slide with texture across "
            "the field (e.g. a fluorescent calibration slide or tissue section) and check "
            "exposure and illumination"
        )
    det.sort(key=lambda s: s.dz_um)
    dz = np.array([s.dz_um for s in det])
    b = np.array([s.b_px for s in det], dtype=np.float64)
    sm = _running_median(b)
    k = int(np.argmin(sm))
    step = float(np.median(np.diff(dz))) if dz.size > 1 else 0.0
    if k < t.edge_slices or k >= dz.size - t.edge_slices:
        side = "below" if k < t.edge_slices else "above"
        sign = -1 if side == "below" else 1
        extend = max(0.25 * (dz[-1] - dz[0]), 4 * step)
        raise CalibrationError(
            f"no minimum inside the range: the blur keeps falling towards dz = {dz[k]:+.2f} um; "
            f"focus is probably {side} the stack - extend the range {side} by about "
            f"{extend:.0f} um (to dz = {dz[k] + sign * extend:+.0f} um) or start closer to focus"
        )
    contrast = float(sm.max() - sm.min())
    noise = noise_sd_px(b)
    if contrast < t.min_contrast_px:
        raise CalibrationError(
            f"curve too flat: blur varies by only {contrast:.2f} px over the stack; widen the "
            "range or use a slide with finer texture"
        )
    if noise > 0 and contrast < t.min_contrast_sd * noise:
        raise CalibrationError(
            f"curve too noisy: contrast {contrast:.2f} px is under {t.min_contrast_sd:g} x the "
            f"slice-to-slice noise {noise:.2f} px; increase exposure or use a brighter slide"
        )
    return dz, b


def check_fit(fit: CurveFit, dz: np.ndarray, t: QualityThresholds | None = None) -> None:
    """Apply the fit gates (R^2, minimum inside the range)."""
    t = t or QualityThresholds()
    if not dz.min() <= fit.centre_um <= dz.max():
        raise CalibrationError(
            f"the fitted minimum dz = {fit.centre_um:+.2f} um lies outside the stack "
            f"[{dz.min():+.2f}, {dz.max():+.2f}] um; extend the range that way"
        )
    if fit.r2 < t.min_r2:
        raise CalibrationError(
            f"fit failed the quality gate: R^2 = {fit.r2:.3f} < {t.min_r2}; the curve is too "
            "noisy or not V-shaped (is the slide flat and textured?)"
        )
