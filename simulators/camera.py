"""Camera noise model: photons -> photoelectrons -> ADU.

For an expected (noise-free) signal ``s >= 0`` per pixel (relative units, 1.0 ~ a bright
in-focus structure), :meth:`CameraModel.expose` draws::

    lambda    = s * photon_flux * exposure_ms                 (mean photoelectrons)
    electrons = min(Poisson(lambda), full_well_e) + Normal(0, read_noise_e)
    ADU       = clip(round(electrons * gain_adu_per_e + offset_adu), 0, 2**bit_depth - 1)

so, away from clipping, ``mean(ADU) = gain * lambda + offset`` and
``var(ADU) = gain^2 (lambda + read_noise_e^2)`` (+1/12 ADU^2 of rounding).
The output dtype is ``uint8`` for ``bit_depth <= 8`` and ``uint16`` otherwise.

The defaults (200 e-/ms at signal 1.0, 10 ms) put a bright structure at about
2000 e- (SNR ~ 45), well below the 30000 e- full well, as in a well-exposed sCMOS frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autofocus.errors import InvalidInputError

__all__ = ["CameraModel"]


class CameraModel(BaseModel):
    """A scientific camera's photon-transfer parameters (validated on assignment too)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    photon_flux: float = Field(
        default=200.0,
        gt=0,
        le=1e7,
        description="photoelectrons per pixel per ms at expected signal 1.0",
    )
    exposure_ms: float = Field(default=10.0, gt=0, le=3.6e6)
    read_noise_e: float = Field(default=1.5, ge=0, le=1000, description="RMS read noise, e-")
    gain_adu_per_e: float = Field(default=1.0, gt=0, le=1000)
    offset_adu: float = Field(default=100.0, ge=0, le=65535)
    bit_depth: int = Field(default=16, ge=8, le=16)
    full_well_e: float = Field(default=30000.0, gt=0, le=1e8)

    # ---- derived ------------------------------------------------------------
    @property
    def max_adu(self) -> int:
        """Largest representable value, ``2**bit_depth - 1``."""
        return (1 << self.bit_depth) - 1

    @property
    def dtype(self) -> np.dtype:
        """``uint8`` for bit depths up to 8, else ``uint16``."""
        return np.dtype(np.uint8) if self.bit_depth <= 8 else np.dtype(np.uint16)

    def mean_electrons(self, expected_signal: Any) -> np.ndarray:
        """``signal * photon_flux * exposure_ms`` as float64 (validated)."""
        s = self._check_signal(expected_signal)
        return s * (self.photon_flux * self.exposure_ms)

    def expected_adu(self, expected_signal: Any) -> np.ndarray:
        """Noise-free ADU (float64, not rounded): ``clip(min(lambda, full_well) g + offset)``."""
        lam = np.minimum(self.mean_electrons(expected_signal), self.full_well_e)
        return np.clip(lam * self.gain_adu_per_e + self.offset_adu, 0.0, float(self.max_adu))

    # ---- noise --------------------------------------------------------------
    def expose(self, expected_signal: Any, rng: np.random.Generator | int) -> np.ndarray:
        """One noisy frame for the expected signal (see module docstring for the model).

        ``rng`` is a :class:`numpy.random.Generator` (or an int seed); the same generator
        state gives the same frame.
        """
        if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        if not isinstance(rng, np.random.Generator):
            raise InvalidInputError(
                f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}"
            )
        lam = self.mean_electrons(expected_signal)
        electrons = rng.poisson(lam).astype(np.float64)
        np.minimum(electrons, self.full_well_e, out=electrons)
        if self.read_noise_e > 0:
            electrons += rng.normal(0.0, self.read_noise_e, size=lam.shape)
        adu = electrons * self.gain_adu_per_e + self.offset_adu
        np.rint(adu, out=adu)
        np.clip(adu, 0.0, float(self.max_adu), out=adu)
        return adu.astype(self.dtype)

    # ---- helpers ------------------------------------------------------------
    def _check_signal(self, expected_signal: Any) -> np.ndarray:
        try:
            s = np.asarray(expected_signal)
        except Exception as exc:  # pragma: no cover - numpy raises many kinds
            raise InvalidInputError(f"expected signal is not array-like: {exc}") from exc
        if s.dtype == object or s.dtype.kind not in "uif":
            raise InvalidInputError(f"expected signal must be numeric, got dtype {s.dtype}")
        s = s.astype(np.float64, copy=False)
        if not np.all(np.isfinite(s)):
            raise InvalidInputError("expected signal contains NaN or infinite values")
        if s.size and float(s.min()) < 0:
            raise InvalidInputError(f"expected signal must be >= 0 (got min {float(s.min()):.3g})")
        lam_max = float(s.max()) * self.photon_flux * self.exposure_ms if s.size else 0.0
        if lam_max > 1e12:
            raise InvalidInputError(
                f"expected signal gives {lam_max:.3g} mean electrons per pixel; too large"
            )
        return s
