"""The calibrated blur-versus-defocus curve :class:`BlurCurve` (inverted Moffat + baseline).

Model (``dz_um`` = stage z minus the z of best focus, micrometres; ``b`` in pixels)::

    b(dz) = baseline_px - amplitude_px * (1 + ((dz - centre_um) / gamma_um)^2)^(-alpha)

* ``b(centre) = baseline - amplitude`` is the minimum (best focus); far away ``b`` tends
  to ``baseline`` (the regressor saturates where texture disappears).
* Full width at half maximum of the (inverted) Moffat profile:
  ``fwhm_um = 2 gamma sqrt(2^(1/alpha) - 1)``.
* A stored calibration is *centred*: ``centre_um == 0``, so ``b_calib(z - z_focus)``
  predicts the blur score at stage position ``z``.

``residual_sd_px`` (the RMS residual of the calibration fit) is the blur-score noise the
search uses to judge whether differences between samples are significant.

Residual correction (optional): the regressed blur score is V-shaped near focus and
saturates far away, which an inverted Moffat follows only approximately (R^2 ~ 0.99, but
systematic residuals of a fraction of a pixel bias the few-image match).  A calibration
may therefore carry the *smoothed fit residuals* at its sample positions
(``correction_dz_um``, ``correction_px``, relative to the centre); the curve is then
``b(dz) = moffat(dz) + interp(dz, correction_dz_um, correction_px)``, with the
correction held constant beyond the calibrated range.  The Moffat parameters (centre,
FWHM, amplitude) keep their meaning; without a correction the curve is the pure Moffat.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["BlurCurve"]


class BlurCurve(BaseModel):
    """Inverted Moffat profile plus a constant baseline (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    baseline_px: float = Field(description="b far from focus (saturation level), px")
    amplitude_px: float = Field(gt=0, description="depth of the dip: baseline - b(focus), px")
    centre_um: float = Field(default=0.0, description="dz of the minimum, um")
    gamma_um: float = Field(gt=0, description="Moffat core width, um")
    alpha: float = Field(gt=0, description="Moffat power index (astropy's 'alpha')")
    residual_sd_px: float = Field(default=0.0, ge=0, description="fit residual RMS, px")
    dz_range_um: tuple[float, float] | None = Field(
        default=None, description="calibrated dz interval (relative to the centre), um"
    )
    correction_dz_um: tuple[float, ...] | None = Field(
        default=None, description="dz of the residual correction knots (relative to centre)"
    )
    correction_px: tuple[float, ...] | None = Field(
        default=None, description="smoothed Moffat-fit residuals at those knots, px"
    )

    @model_validator(mode="after")
    def _check_correction(self) -> BlurCurve:
        a, b = self.correction_dz_um, self.correction_px
        if (a is None) != (b is None):
            raise ValueError("correction_dz_um and correction_px go together")
        if a is not None and b is not None:
            x = np.asarray(a, dtype=float)
            if x.size != len(b) or x.size < 2 or np.any(np.diff(x) <= 0):
                raise ValueError("correction knots must be >= 2 increasing dz values, one px each")
            if not (np.all(np.isfinite(x)) and np.all(np.isfinite(b))):
                raise ValueError("correction knots must be finite")
        return self

    @field_validator("baseline_px", "centre_um")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @property
    def fwhm_um(self) -> float:
        """``2 gamma sqrt(2^(1/alpha) - 1)``."""
        return 2.0 * self.gamma_um * math.sqrt(2.0 ** (1.0 / self.alpha) - 1.0)

    @property
    def min_px(self) -> float:
        """The blur score at best focus, ``baseline - amplitude``."""
        return self.baseline_px - self.amplitude_px

    def __call__(self, dz_um: Any) -> Any:
        """``b(dz)`` for a scalar or an array of defocus values (um)."""
        dz = np.asarray(dz_um, dtype=np.float64)
        x = (dz - self.centre_um) / self.gamma_um
        b = self.baseline_px - self.amplitude_px * (1.0 + x * x) ** (-self.alpha)
        if self.correction_dz_um is not None and self.correction_px is not None:
            b = b + np.interp(dz - self.centre_um, self.correction_dz_um, self.correction_px)
        return float(b) if np.ndim(b) == 0 else b

    def slope(self, dz_um: Any) -> Any:
        """``db/dz`` (px per um), for the search's expansion and tests."""
        if self.correction_dz_um is not None:
            h = 1e-3 * self.gamma_um
            d = np.asarray(self(np.asarray(dz_um) + h)) - np.asarray(self(np.asarray(dz_um) - h))
            d = d / (2 * h)
            return float(d) if np.ndim(d) == 0 else d
        x = (np.asarray(dz_um, dtype=np.float64) - self.centre_um) / self.gamma_um
        d = (
            self.amplitude_px
            * self.alpha
            * 2.0
            * x
            * (1.0 + x * x) ** (-self.alpha - 1.0)
            / self.gamma_um
        )
        return float(d) if np.ndim(d) == 0 else d

    def abs_dz_um(self, b_px: float) -> float:
        """Distance from focus at which the calibrated curve reaches blur score ``b_px``.

        Uses the symmetrised curve ``(b(dz) + b(-dz)) / 2`` (relative to the minimum):
        0 for scores at or below the curve's value at focus; the smallest ``|dz|``
        whose symmetrised score reaches ``b_px`` otherwise, up to the calibrated range
        (scores beyond it return the range's end: "at least this far").  This uses the
        objective's own calibration, including the regressor's floor at focus, so it
        is the better |dz| estimate whenever a calibration exists.
        """
        b = float(b_px)
        if not math.isfinite(b):
            return math.nan
        r = self.dz_range_um or (-3 * self.fwhm_um, 3 * self.fwhm_um)
        reach = max(-(r[0] - self.centre_um), r[1] - self.centre_um, 1e-9)
        dz = np.linspace(0.0, reach, 4001)
        sym = 0.5 * (np.asarray(self(self.centre_um + dz)) + np.asarray(self(self.centre_um - dz)))
        sym = np.maximum.accumulate(sym)  # first crossing of a monotone envelope
        if b <= sym[0]:
            return 0.0
        if b >= sym[-1]:
            return float(reach)
        return float(np.interp(b, sym, dz))

    def centred(self) -> BlurCurve:
        """The same curve shifted so that its Moffat minimum is at ``dz = 0``."""
        rng = self.dz_range_um
        if rng is not None:
            rng = (rng[0] - self.centre_um, rng[1] - self.centre_um)
        return self.model_copy(update={"centre_um": 0.0, "dz_range_um": rng})
