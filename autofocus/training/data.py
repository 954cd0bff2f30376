"""Synthetic training and evaluation data, rendered on the fly by the simulator.

Each *field* is one simulated camera frame (default 256x256 px) of a random specimen
seen through a random objective at a random defocus, with random aberrations and camera
settings (domain randomisation).  Patches are cut from fields on a regular grid.

Labels, per patch
-----------------
* ``level``: the continuous defocus level of the field, ``Objective.dz_to_level(dz)``
  (pixels of blur; see :mod:`autofocus.optics`); the classifier's class is
  ``clip(round(level), 0, 10)``.
* ``blur_px``: the geometric blur diameter ``2 |dz| tan(theta) / pixel`` (the blur score b),
  or with ``blur_ray="mean"`` ``2 |dz| s / pixel`` with ``s`` the mean-ray slope.
* aberrations in the same pixel units: a Zernike coefficient ``c`` (waves RMS) becomes
  ``c / w_px`` where ``w_px`` is the RMS defocus wavefront (waves) per pixel of
  geometric blur diameter,
  ``w_px = (n - sqrt(n^2 - NA^2)) * pixel / (2 sqrt(3) lambda * 2 tan(theta))`` (``s`` for
  ``tan(theta)`` with ``blur_ray="mean"``).
* ``texture``: whether the noise-free patch carries detectable structure:
  ``std(expected electrons) / sqrt(mean(expected electrons) + read_noise^2) >= 0.5``.

Brightfield (``phase``) fields are lit by a point source unless ``condenser_fill`` asks
for Koehler illumination (see :func:`simulators.render.render_expected`).

Held-out evaluation: seeds from a disjoint range (``EVAL_SEED_OFFSET``) and the specimen
types in ``HELD_OUT_SPECIMENS``, which training never sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from autofocus.errors import InvalidInputError
from autofocus.optics import (
    N_LEVELS,
    BlurRay,
    Objective,
    blur_px_per_um,
    check_blur_ray,
    ray_blur_slope,
)

__all__ = [
    "EVAL_SEED_OFFSET",
    "HELD_OUT_SPECIMENS",
    "TRAIN_SPECIMENS",
    "DomainConfig",
    "FieldSample",
    "check_condenser_fill",
    "check_range",
    "generate_fields",
    "immersion_index_for",
    "random_objective",
]

TRAIN_SPECIMENS = ("nuclei", "actin", "beads", "tissue", "calibration_slide", "phase")
HELD_OUT_SPECIMENS = ("microtubules",)
EVAL_SEED_OFFSET = 1_000_000_000
TEXTURE_SNR = 0.5


@dataclass(frozen=True)
class DomainConfig:
    """Ranges of the domain randomisation (all sampled independently per field)."""

    specimens: tuple[str, ...] = TRAIN_SPECIMENS
    empty_fraction: float = 0.06
    na_range: tuple[float, float] = (0.2, 1.35)
    wavelength_um_range: tuple[float, float] = (0.45, 0.68)
    sampling_range: tuple[float, float] = (0.5, 1.4)
    """pixel size as a multiple of lambda / (2 NA) (0.5 = Nyquist)."""
    immersion: Literal["by_na", "mixed"] = "by_na"
    """``by_na``: air below NA 0.95, water to 1.2, oil above (the draws of every recipe
    before this option).  ``mixed``: also water objectives at low NA and silicone,
    glycerol and oil at any NA they can reach (see :func:`immersion_index_for`)."""
    aberration_waves_max: float = 0.10
    photons_range: tuple[float, float] = (50.0, 20000.0)
    """peak photoelectrons of a bright in-focus structure (log-uniform)."""
    read_noise_e_range: tuple[float, float] = (0.5, 6.0)
    gain_range: tuple[float, float] = (0.2, 5.0)
    offset_adu_range: tuple[float, float] = (0.0, 1000.0)
    saturation_fraction: float = 0.05
    thick_fraction: float = 0.05
    """share of thick (multi-layer) specimens, 0.5-1.5 DOF thick, labelled by their
    mid-plane.  Tilted surfaces are not used: the label is one defocus per field."""
    defocus: Literal["classifier", "regressor"] = "classifier"
    max_level: float = 10.8
    """classifier: levels drawn uniformly in [0, max_level] (beyond 10 labelled 10)."""
    max_blur_px: float = 100.0
    """regressor: ``near_share`` of the fields uniform in [0, 30] px, the rest in
    [0, max_blur_px]."""
    near_share: float = 0.5
    """regressor: share of the fields drawn in [0, 30] px.  Above 0 the drawn blur is
    denser below 30 px than above (0.5: 4.3x at the default max_blur_px), and a regressor
    pulls ambiguous large blurs towards the dense side; 0 draws it uniformly."""
    blur_ray: BlurRay = "marginal"
    """regressor: which blur diameter the ``blur_px`` label (and the px unit of the
    aberration labels) is.  ``marginal``: ``2 |dz| tan(theta)``, the edge of the
    geometric cone.  ``mean``: ``2 |dz| x`` the mean-ray slope
    (:func:`autofocus.optics.cone_blur_slope`), the blur the image shows whatever the
    NA (the classifier's levels use it).  The mean-ray diameter is 0.98 of the marginal
    one at NA 0.3 and 0.61 at NA/n 0.92: as the NA is not visible in a frame, a
    marginal label cannot be read from it at high NA."""
    field_px: int = 256
    objective: str | Objective | None = None
    """An objective (a preset's name, as training records it, or an Objective): every
    field is seen through it (its NA, wavelength and pixel size; aberrations, specimens
    and camera stay random).  None: random optics."""
    condenser_fill: tuple[float, float] | None = None
    """Brightfield (phase) fields: Koehler illumination through a condenser aperture of
    ``fill x NA``, ``fill`` uniform in this range (drawn from the field's own side
    stream ``(seed, i, 1)``, so no other field and no other draw changes).  Such a
    field keeps its drawn level, which is now the blur of the condenser's cone
    (``Objective.dz_to_level(dz, condenser_na)``), so its |dz| is larger.  Classifier
    data only.  None: a point source (fully coherent), the data every model before the
    Koehler renderer was trained on."""

    def __post_init__(self) -> None:
        # here, not in a rendering worker
        check_blur_ray(self.blur_ray)
        if self.immersion not in ("by_na", "mixed"):
            raise InvalidInputError(f"immersion must be 'by_na' or 'mixed', not {self.immersion!r}")
        check_range("na_range", self.na_range, 0.05, max(IMMERSION_INDICES) * MAX_NA_OVER_N)
        check_range("sampling_range", self.sampling_range, 0.2, 3.0)
        if not 0.0 <= self.near_share <= 1.0:  # NaN fails too
            raise InvalidInputError(f"near_share must be in [0, 1], got {self.near_share!r}")


@dataclass
class FieldSample:
    """One rendered frame and its ground truth."""

    frame: np.ndarray  # uint16 camera frame
    expected_e: np.ndarray  # noise-free expected electrons (float32)
    read_noise_e: float
    objective: Objective
    dz_um: float
    level: float
    blur_px: float
    aberrations_px: tuple[float, float, float]  # astig oblique, astig vertical, spherical
    specimen: str
    meta: dict = field(default_factory=dict)


IMMERSION_INDICES = (1.0, 1.33, 1.405, 1.47, 1.515)
"""Air, water, silicone oil, glycerol, oil."""
MAX_NA_OVER_N = 0.985
"""The steepest cone an objective's immersion allows it (NA 1.49 in oil: 0.983)."""


def immersion_index_for(na: float, side: np.random.Generator) -> float:
    """``mixed`` immersion: below NA 0.95 air (70 %) or any immersion; from 0.95 any
    immersion that reaches the NA (NA / n <= :data:`MAX_NA_OVER_N`), uniformly."""
    usable = [n for n in IMMERSION_INDICES if na / n <= MAX_NA_OVER_N]
    if na < 0.95 and side.random() < 0.7:
        return 1.0
    wet = [n for n in usable if n > 1.0]
    if not wet:
        raise InvalidInputError(f"no immersion reaches NA {na:g}")
    return float(wet[int(side.integers(len(wet)))])


def random_objective(
    rng: np.random.Generator, cfg: DomainConfig, side: np.random.Generator | None = None
) -> Objective:
    """The field's objective: ``cfg.objective``, or NA, wavelength and sampling drawn
    from ``rng``; a ``mixed`` immersion is drawn from ``side`` (a stream of its own, so
    that the other draws stay those of the ``by_na`` recipes)."""
    if cfg.objective is not None:
        from autofocus.optics import get_objective

        return get_objective(cfg.objective)
    na = float(rng.uniform(*cfg.na_range))
    if cfg.immersion == "mixed":
        if side is None:
            raise InvalidInputError("a mixed immersion is drawn from a side stream: pass side")
        n = immersion_index_for(na, side)
    elif na < 0.95:
        n = 1.0
    elif na < 1.2:
        n = 1.33
    else:
        n = 1.515
    lam = float(rng.uniform(*cfg.wavelength_um_range))
    px = lam / (2 * na) * float(rng.uniform(*cfg.sampling_range))
    mag = 20.0
    return Objective(
        name="random",
        magnification=mag,
        na=na,
        immersion_index=n,
        camera_pixel_size_um=px * mag,
        wavelength_um=lam,
    )


def check_range(
    name: str, value: object, lo: float, hi: float, *, lo_open: bool = False, why: str = ""
) -> tuple[float, float]:
    """Two finite numbers ``lo <= a <= b <= hi`` (``lo < a`` with ``lo_open``): a range
    of a domain draw.  ``why`` is added to the error message."""
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be two numbers (lo, hi), got {value!r}") from None
    low_ok = lo < a if lo_open else lo <= a
    if not (math.isfinite(a) and math.isfinite(b) and low_ok and a <= b <= hi):
        raise InvalidInputError(
            f"{name} must satisfy {lo:g} {'<' if lo_open else '<='} lo <= hi <= {hi:g}"
            f"{why}, got {value!r}"
        )
    return a, b


def check_condenser_fill(value: object) -> tuple[float, float] | None:
    """``(lo, hi)`` with ``0 < lo <= hi <= 1`` (condenser NA / objective NA), or None."""
    if value is None:
        return None
    return check_range(
        "condenser_fill", value, 0.0, 1.0, lo_open=True, why=" (a fraction of the objective's NA)"
    )


def waves_per_blur_px(obj: Objective, blur_ray: str = "marginal") -> float:
    """RMS defocus wavefront (waves) per pixel of geometric blur diameter."""
    n, na = obj.immersion_index, obj.na
    w_per_um = (n - math.sqrt(n * n - na * na)) / (2 * math.sqrt(3) * obj.wavelength_um)
    return w_per_um / blur_px_per_um(obj, blur_ray)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _sample_abs_dz_um(rng: np.random.Generator, cfg: DomainConfig, obj: Objective) -> float:
    """|dz| of a field: classifier fields have a uniform level, regressor fields a uniform
    blur diameter (``near_share`` in [0, 30] px, the rest in [0, max_blur_px];
    ``cfg.blur_ray``)."""
    if cfg.defocus == "classifier":
        return float(obj.level_to_dz_um(float(rng.uniform(0.0, cfg.max_level))))
    hi = 30.0 if rng.random() < cfg.near_share else cfg.max_blur_px
    # this order of operations keeps the marginal fields of every earlier recipe bit-exact
    slope = ray_blur_slope(obj, cfg.blur_ray)
    return float(rng.uniform(0.0, hi)) * obj.pixel_size_um / (2 * slope)


def _specimen_options(rng: np.random.Generator, cfg: DomainConfig, obj: Objective) -> dict:
    opts: dict = {"density": _log_uniform(rng, 0.3, 2.5)}
    if rng.random() < cfg.thick_fraction:
        opts["thickness_um"] = float(rng.uniform(0.5, 1.5)) * obj.dof_um
        opts["n_layers"] = int(rng.integers(2, 4))
    return opts


def generate_fields(n_fields: int, seed: int, cfg: DomainConfig) -> Iterator[FieldSample]:
    """Yield ``n_fields`` rendered frames; field ``i`` depends only on ``(seed, i)``."""
    for i in range(n_fields):
        yield render_field_sample(i, seed, cfg)


def render_field_sample(i: int, seed: int, cfg: DomainConfig) -> FieldSample:
    """Field ``i`` of the stream ``(seed, cfg)``: deterministic and independent of others."""
    from simulators.camera import CameraModel
    from simulators.psf import Aberrations
    from simulators.render import render_field
    from simulators.specimens import make_specimen

    rng = np.random.default_rng([seed, i])
    obj = random_objective(rng, cfg, np.random.default_rng([seed, i, 2]))
    dz = _sample_abs_dz_um(rng, cfg, obj)
    dz *= 1 if rng.random() < 0.5 else -1
    a = cfg.aberration_waves_max
    ab = Aberrations(
        astig_oblique=float(rng.uniform(-a, a)) * (rng.random() < 0.5),
        astig_vertical=float(rng.uniform(-a, a)) * (rng.random() < 0.5),
        coma_vertical=float(rng.uniform(-a, a)) * (rng.random() < 0.3),
        coma_horizontal=float(rng.uniform(-a, a)) * (rng.random() < 0.3),
        spherical=float(rng.uniform(-a, a)) * (rng.random() < 0.5),
    )
    name = "empty" if rng.random() < cfg.empty_fraction else str(rng.choice(cfg.specimens))
    spec_seed = int(rng.integers(0, 2**31 - 1)) % (EVAL_SEED_OFFSET - 1)
    if seed >= EVAL_SEED_OFFSET:
        spec_seed += EVAL_SEED_OFFSET
    specimen = make_specimen(name, seed=spec_seed, **_specimen_options(rng, cfg, obj))
    x_um, y_um = (float(v) for v in rng.uniform(-2000, 2000, size=2))
    s = cfg.field_px
    condenser_na = None
    if cfg.condenser_fill is not None and getattr(specimen, "kind", None) == "phase":
        fill = float(np.random.default_rng([seed, i, 1]).uniform(*cfg.condenser_fill))
        condenser_na = fill * obj.na
        if cfg.defocus == "classifier":  # the same level, now of the condenser's cone
            dz = math.copysign(obj.level_to_dz_um(obj.dz_to_level(dz), condenser_na), dz)
    signal = render_field(specimen, obj, dz, x_um, y_um, (s, s), ab, condenser_na=condenser_na)
    peak_e = _log_uniform(rng, *cfg.photons_range)
    read = float(rng.uniform(*cfg.read_noise_e_range))
    gain = _log_uniform(rng, *cfg.gain_range)
    offset = float(rng.uniform(*cfg.offset_adu_range))
    full_well = 1e8
    if rng.random() < cfg.saturation_fraction:
        full_well = peak_e * float(rng.uniform(0.3, 0.9))
    cam = CameraModel(
        photon_flux=peak_e / 10.0,
        exposure_ms=10.0,
        read_noise_e=read,
        gain_adu_per_e=min(gain, 0.9 * (65535.0 - offset) / max(peak_e, 1.0)),
        offset_adu=offset,
        full_well_e=full_well,
    )
    frame = cam.expose(signal, rng)
    wpx = waves_per_blur_px(obj, cfg.blur_ray)
    return FieldSample(
        frame=frame,
        expected_e=(np.minimum(signal * peak_e, full_well)).astype(np.float32),
        read_noise_e=read,
        objective=obj,
        dz_um=float(dz),
        level=float(obj.dz_to_level(dz, condenser_na)),
        blur_px=float(2 * abs(dz) * ray_blur_slope(obj, cfg.blur_ray) / obj.pixel_size_um),
        aberrations_px=(ab.astig_oblique / wpx, ab.astig_vertical / wpx, ab.spherical / wpx),
        specimen=name,
        meta={"field": i, "seed": seed, "aberrations": ab, "condenser_na": condenser_na},
    )


def texture_label(expected_e: np.ndarray, read_noise_e: float) -> bool:
    """True when a noise-free patch has structure above the shot + read noise."""
    m = float(expected_e.mean())
    sd = float(expected_e.std())
    return sd / math.sqrt(m + read_noise_e**2 + 1e-9) >= TEXTURE_SNR


def level_class(level: float) -> int:
    return int(min(max(round(level), 0), N_LEVELS - 1))
