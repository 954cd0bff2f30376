"""The one description of the optics: :class:`Objective`, presets, and the exact
mapping between defocus level, blur diameter in pixels and defocus in micrometres.

Definitions (used by the simulator, the scorers, calibration and search alike)
---------------------------------------------------------------------------
* Sample pixel size: ``pixel_size_um = camera_pixel_size_um * binning / magnification``.
* Depth of field (for reporting): ``DOF = lambda n / NA^2 + n e / (M NA)`` with
  ``e = camera_pixel_size_um * binning`` (the usual widefield formula).
* Half-angle of the collection cone: ``theta = asin(NA / n)``.
* Blur slope ``t``: the diameter, per unit defocus, of the uniform disc whose mean ray
  radius equals that of the real defocused cone (pupil uniform in ``sin``):
  ``t = 3 (theta - sin(theta) cos(theta)) / (2 sin(theta)^2)``.  It equals
  ``tan(theta)`` for small apertures and falls below it at high NA (0.98 tan(theta) at
  NA/n 0.3, 0.83 at 0.75, 0.60 at 0.92), where the marginal rays are few and spread
  thin.  Fitting a uniform disc to the transfer function of the simulator's defocused
  PSF (24 px marginal-ray diameter) gives nearly the same fall: 0.92 / 0.78 / 0.64 of
  the NA/n 0.3 diameter at NA/n 0.6 / 0.8 / 0.9, where ``t`` says 0.93 / 0.80 / 0.66.
  The marginal ray ``tan(theta)`` made a general classifier read fields at NA/n >= 0.8
  0.7-1.7 levels too low.
* Geometric blur diameter of a point ``dz`` away from focus, in sample pixels:
  ``d_geo(dz) = 2 |dz| t / pixel_size_um``.
* Diffraction-limited spot diameter in pixels (Airy disc to its first zero):
  ``d_diff = 1.22 lambda / NA / pixel_size_um``.
* Effective blur diameter: ``d(dz) = sqrt(d_geo(dz)^2 + d_diff^2)``.
* Defocus level (Yang et al.: about 3 px of blur diameter per level, 11 levels):
  ``level(dz) = (d(dz) - d_diff) / LEVEL_STEP_PX`` with ``LEVEL_STEP_PX = 3``;
  0 at focus, continuous, clipped to ``[0, N_LEVELS - 1]`` when asked for a class.
  The inverse is ``|dz| = sqrt((d_diff + 3 level)^2 - d_diff^2) * pixel / (2 t)``.
* Brightfield under Koehler illumination: the defocus blur is the cone of the
  condenser's aperture (``NA_c <= NA``; see ``simulators.psf.illumination_shift_kernel``),
  so its level uses ``t_c = t(asin(NA_c / n))`` in ``d_geo`` (``d_diff`` stays the
  objective's): the level is the blur the image shows, in every modality.
* The shipped regressor's blur score b is the marginal-ray diameter
  ``2 |dz| tan(theta) / pixel`` (its training label).  ``autofocus train regressor
  --blur-ray mean`` trains b on ``2 |dz| t / pixel`` instead; the card records which
  (``ModelCard.blur_ray``, ``marginal`` for older cards) and the scorer converts b to
  micrometres with that slope (:func:`ray_blur_slope`).  The two diameters differ by
  2 % at NA/n 0.3 and 6 % at 0.5; calibration fits b against measured z, so the search
  relies on neither formula.

Levels are defined in pixels of blur, so a classifier trained on them is
objective-independent; the :class:`Objective` turns a level into micrometres.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autofocus.checks import finite_float
from autofocus.errors import InvalidInputError, UnknownNameError

__all__ = [
    "IN_FOCUS_MAX_LEVEL",
    "LEVEL_STEP_PX",
    "N_LEVELS",
    "OBJECTIVE_PRESETS",
    "BlurRay",
    "Objective",
    "blur_px_per_um",
    "check_blur_ray",
    "cone_blur_slope",
    "get_objective",
    "ray_blur_slope",
]

N_LEVELS = 11
"""Number of ordered defocus classes (Yang et al. 2018)."""
LEVEL_STEP_PX = 3.0
"""Blur-diameter increase, in sample pixels, from one level to the next."""
IN_FOCUS_MAX_LEVEL = 2
"""Levels 0..2 count as in focus by default (Yang et al.'s practice)."""


class Objective(BaseModel):
    """An objective plus the camera behind it.

    Frozen and hashable, so it can key caches (PSFs, models).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1)
    magnification: float = Field(gt=0)
    na: float = Field(gt=0, le=1.7, description="numerical aperture")
    immersion_index: float = Field(default=1.0, ge=1.0, le=2.0)
    camera_pixel_size_um: float = Field(default=6.5, gt=0)
    binning: int = Field(default=1, ge=1, le=16)
    wavelength_um: float = Field(default=0.52, gt=0.2, lt=2.0, description="emission wavelength")

    @model_validator(mode="after")
    def _na_below_index(self) -> Objective:
        if self.na >= self.immersion_index:
            raise ValueError(
                f"NA {self.na} must be smaller than the immersion index {self.immersion_index}"
            )
        return self

    # ---- derived quantities -------------------------------------------------
    @property
    def pixel_size_um(self) -> float:
        """Sample-plane pixel size in micrometres."""
        return self.camera_pixel_size_um * self.binning / self.magnification

    @property
    def dof_um(self) -> float:
        """Depth of field, ``lambda n / NA^2 + n e / (M NA)``."""
        n, na = self.immersion_index, self.na
        e = self.camera_pixel_size_um * self.binning
        return self.wavelength_um * n / na**2 + n * e / (self.magnification * na)

    @property
    def half_angle_rad(self) -> float:
        return math.asin(self.na / self.immersion_index)

    @property
    def spot_px(self) -> float:
        """The resolution ``lambda / (2 NA)`` in sample pixels (binning included)."""
        return self.wavelength_um / (2 * self.na) / self.pixel_size_um

    @property
    def diffraction_diameter_px(self) -> float:
        """Airy-disc diameter (to the first zero), in sample pixels."""
        return 1.22 * self.wavelength_um / self.na / self.pixel_size_um

    @property
    def blur_slope(self) -> float:
        """Effective ``tan(theta)``: blur diameter per unit defocus, ``d_geo / (2 |dz|)``.

        The diameter of the uniform disc whose mean ray radius equals that of the real
        defocused cone: ``3 (theta - sin(theta) cos(theta)) / (2 sin(theta)^2)``.  It is
        ``tan(theta)`` for small apertures and falls below it at high NA, where the
        marginal rays carry little energy (0.98 tan(theta) at NA/n 0.3, 0.79 at 0.8,
        0.52 at 0.95): what the image shows, not how far the extreme ray reaches.
        """
        return cone_blur_slope(self.na / self.immersion_index)

    @cached_property
    def _px_per_um_defocus(self) -> float:
        return 2.0 * self.blur_slope / self.pixel_size_um

    def _px_per_um(self, condenser_na: float | None) -> float:
        if condenser_na is None:
            return self._px_per_um_defocus
        na_c = finite_float(condenser_na, "condenser_na")
        if not 0.0 < na_c <= self.na:
            raise InvalidInputError(
                f"condenser_na must be in (0, NA = {self.na}], got {condenser_na!r}"
            )
        return 2.0 * cone_blur_slope(na_c / self.immersion_index) / self.pixel_size_um

    def with_binning(self, binning: int) -> Objective:
        return self.model_copy(update={"binning": int(binning)})

    # ---- level <-> blur <-> dz ---------------------------------------------
    def blur_diameter_px(self, dz_um: Any, condenser_na: float | None = None) -> Any:
        """Effective blur diameter (px) of a point ``dz_um`` away from focus.

        ``condenser_na``: a brightfield image under Koehler illumination, whose defocus
        blur is the cone of the condenser's aperture (NA_c <= NA), not the objective's.
        """
        d_geo = np.abs(np.asarray(dz_um, dtype=float)) * self._px_per_um(condenser_na)
        d = np.hypot(d_geo, self.diffraction_diameter_px)
        return float(d) if np.ndim(d) == 0 else d

    def dz_to_level(self, dz_um: Any, condenser_na: float | None = None) -> Any:
        """Continuous defocus level for a defocus (sign ignored); 0 at focus.
        ``condenser_na``: as for :meth:`blur_diameter_px` (brightfield)."""
        d = np.asarray(self.blur_diameter_px(dz_um, condenser_na))
        lv = (d - self.diffraction_diameter_px) / LEVEL_STEP_PX
        return float(lv) if np.ndim(lv) == 0 else lv

    def level_to_dz_um(self, level: Any, condenser_na: float | None = None) -> Any:
        """|dz| in micrometres for a (continuous) level >= 0; the inverse of ``dz_to_level``."""
        lv = np.asarray(level, dtype=float)
        if np.any(lv < 0) or not np.all(np.isfinite(lv)):
            raise InvalidInputError("levels must be finite and >= 0")
        d0 = self.diffraction_diameter_px
        d = d0 + LEVEL_STEP_PX * lv
        dz = np.sqrt(np.maximum(d**2 - d0**2, 0.0)) / self._px_per_um(condenser_na)
        return float(dz) if np.ndim(dz) == 0 else dz

    def dz_to_class(self, dz_um: Any) -> Any:
        """Nearest integer class in ``0..N_LEVELS-1`` for a defocus."""
        c = np.clip(np.rint(np.asarray(self.dz_to_level(dz_um))), 0, N_LEVELS - 1).astype(int)
        return int(c) if np.ndim(c) == 0 else c


BlurRay = Literal["marginal", "mean"]


def check_blur_ray(value: object) -> BlurRay:
    """``marginal`` or ``mean``: which geometric blur diameter a blur score b reads."""
    if value not in ("marginal", "mean"):
        raise InvalidInputError(f"blur_ray must be 'marginal' or 'mean', got {value!r}")
    return value  # type: ignore[return-value]


def ray_blur_slope(objective: Objective, blur_ray: str = "marginal") -> float:
    """Blur radius per unit defocus: ``tan(theta)`` (``marginal``, the edge of the cone)
    or the mean-ray slope ``Objective.blur_slope`` (``mean``, the blur the image shows
    whatever the NA, as the defocus levels use)."""
    if check_blur_ray(blur_ray) == "marginal":
        return math.tan(objective.half_angle_rad)
    return objective.blur_slope


def blur_px_per_um(objective: Objective, blur_ray: str = "marginal") -> float:
    """Pixels of geometric blur diameter per micrometre of defocus:
    ``2 ray_blur_slope / pixel``."""
    return 2.0 * ray_blur_slope(objective, blur_ray) / objective.pixel_size_um


def cone_blur_slope(sin_theta: float) -> float:
    """Mean-ray blur slope of a cone filled uniformly in ``sin`` up to ``sin_theta``:
    ``3 (theta - sin(theta) cos(theta)) / (2 sin(theta)^2)`` (``~ tan(theta)`` when small)."""
    s = float(sin_theta)
    if not 0.0 <= s < 1.0:
        raise InvalidInputError(f"sin(theta) must be in [0, 1), got {sin_theta!r}")
    if s < 1e-3:  # series: s + 3 s^3 / 10; avoids the cancellation below
        return s + 0.3 * s**3
    t = math.asin(s)
    return 1.5 * (t - s * math.cos(t)) / (s * s)


def _demo(name: str, mag: float, na: float) -> Objective:
    # Demo-config pixel sizes 1.0 / 0.5 / 0.25 um come from a 10 um camera pixel.
    return Objective(name=name, magnification=mag, na=na, camera_pixel_size_um=10.0)


OBJECTIVE_PRESETS: dict[str, Objective] = {
    o.name: o
    for o in (
        _demo("10X", 10, 0.30),
        _demo("20X", 20, 0.50),
        _demo("40X", 40, 0.75),
        Objective(name="10x-0.3-air", magnification=10, na=0.30, camera_pixel_size_um=6.5),
        Objective(
            name="60x-1.4-oil",
            magnification=60,
            na=1.40,
            immersion_index=1.515,
            camera_pixel_size_um=6.5,
        ),
    )
}
"""Named objectives.  ``10X``/``20X``/``40X`` match Micro-Manager's demo config
(1.0 / 0.5 / 0.25 um pixels); the last two are common research objectives with an
sCMOS camera (6.5 um pixels)."""


def parse_objective(text: str) -> Objective:
    """An objective from a command line: a preset's name (case-insensitive), inline
    fields ``key=value,...`` (the :class:`Objective` field names, e.g.
    ``magnification=100,na=1.45,immersion_index=1.515``; ``name`` defaults to
    ``custom``, the others to their defaults), or the path of a JSON file holding those
    fields.  Bad input raises :class:`InvalidInputError` (``UnknownNameError`` for a
    name that is neither a preset nor a file)."""
    from pydantic import ValidationError

    if not isinstance(text, str):
        raise InvalidInputError(f"expected an objective as text, got {type(text)!r}")
    text = text.strip()
    if text.lower() in {key.lower() for key in OBJECTIVE_PRESETS}:
        return get_objective(text)
    path = Path(text).expanduser()
    try:
        if text and path.suffix.lower() == ".json" and path.is_file():
            return Objective.model_validate_json(path.read_bytes())
        if "=" in text:
            fields: dict[str, object] = {}
            for item in text.split(","):
                key, sep, value = (part.strip() for part in item.partition("="))
                if not sep or not key or not value:
                    raise InvalidInputError(f"objective field {item.strip()!r} is not key=value")
                if key in fields:
                    raise InvalidInputError(f"objective field {key!r} is given twice")
                fields[key] = value
            return Objective.model_validate({"name": "custom", **fields})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'objective'}: {err['msg']}"
            for err in e.errors()
        )
        raise InvalidInputError(f"objective {text!r} is invalid: {problems}") from None
    except OSError as e:
        raise InvalidInputError(f"cannot read objective file {text!r}: {e}") from None
    raise UnknownNameError(
        f"unknown objective {text!r}; give a preset ({', '.join(OBJECTIVE_PRESETS)}), "
        "fields such as 'magnification=100,na=1.45,immersion_index=1.515', "
        "or a JSON file of them"
    )


def get_objective(name_or_objective: str | Objective) -> Objective:
    """Look up a preset by name (case-insensitive), or pass an Objective through."""
    if isinstance(name_or_objective, Objective):
        return name_or_objective
    if not isinstance(name_or_objective, str):
        raise InvalidInputError(f"expected an objective name, got {type(name_or_objective)!r}")
    for key, obj in OBJECTIVE_PRESETS.items():
        if key.lower() == name_or_objective.strip().lower():
            return obj
    raise UnknownNameError(
        f"unknown objective {name_or_objective!r}; known: {', '.join(OBJECTIVE_PRESETS)}"
    )
