"""Optical point-spread functions of the virtual microscope (scalar pupil model).

Model
-----
The amplitude in the image of a point at defocus ``dz_um`` is the inverse Fourier
transform of the generalised pupil

    H(kx, ky) = P(k) * exp(i 2 pi dz (sqrt((n/lambda)^2 - k^2) - n/lambda))
                     * exp(i 2 pi W(rho, theta)),

with ``k = sqrt(kx^2 + ky^2)`` in cycles/um, the pupil ``P`` a disc of radius
``NA / lambda`` (a one-sample linear ramp at its edge, to avoid staircase artefacts),
``rho = k lambda / NA`` and ``theta = atan2(ky, kx)`` the normalised pupil coordinates,
and ``W`` the aberration wavefront in waves (Noll Zernike polynomials, RMS-normalised).
The defocus phase is the exact (non-paraxial) one; the constant piston ``n/lambda dz``
is subtracted.  Sign convention: ``dz_um = z_stage_um - z_focus_um``.  The model is
scalar and has no aplanatic apodisation; the same emission wavelength is used for
brightfield.

The incoherent (fluorescence) PSF is ``|IFFT(H)|^2``, computed on a grid oversampled
``s = ceil(pixel / (lambda / (4 NA)))`` times per camera pixel (at or below the Nyquist
interval of the intensity), on an FFT grid large enough that

* the phase step between neighbouring pupil samples stays below ``pi / 2``:
  ``N dx > 4 (|dz| tan(theta) + (lambda / NA) max|grad W|)`` (equivalently: the grid
  spans twice the geometric blur diameter, so nothing wraps around), and
* the kernel plus a few diffraction radii fits on it,

then box-summed ("integrated") into camera pixels, cropped to an odd square kernel
centred on its middle pixel and normalised to sum 1.

Kernel size (:func:`psf_radius_px`): ``ceil((|dz| tan(theta) + (lambda/NA) max|grad W|
+ 4 * 0.61 lambda / NA) / pixel) + 1``, at least 2 and at most
:data:`MAX_PSF_RADIUS_PX` (255 px, kernel <= 511 px).  Beyond the cap (e.g. 10X beyond
~800 um of defocus) the kernel is truncated before normalisation: such a frame is a
featureless blur anyway.  The FFT grid is capped at :data:`MAX_FFT_SIZE`; a warning is
logged when the cap makes the defocus phase alias.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy.special import j0, roots_legendre

from autofocus.checks import finite_float
from autofocus.errors import InvalidInputError
from autofocus.optics import Objective, get_objective

__all__ = [
    "MAX_FFT_SIZE",
    "MAX_PSF_RADIUS_PX",
    "Aberrations",
    "born_wolf_psf",
    "check_condenser_na",
    "coherent_transfer",
    "illumination_shift_kernel",
    "incoherent_psf",
    "noll_to_nm",
    "psf_captured_energy",
    "psf_radius_px",
    "pupil_psf",
    "zernike_noll",
]

logger = logging.getLogger(__name__)

MAX_PSF_RADIUS_PX = 255
"""Cap on the kernel radius: kernels are at most 511 x 511 camera pixels."""
MAX_FFT_SIZE = 4096
"""Cap on the side of the oversampled FFT grid used to compute one PSF."""
DIFFRACTION_RADII_MARGIN = 4.0
"""Airy radii (0.61 lambda / NA) added to the geometric blur radius for the kernel."""
_MAX_ABERRATION_WAVES = 10.0
_WORKERS = -1


# ---------------------------------------------------------------------------
# Zernike polynomials
# ---------------------------------------------------------------------------
def noll_to_nm(j: int) -> tuple[int, int]:
    """Radial order ``n`` and signed azimuthal frequency ``m`` of Noll index ``j >= 1``.

    Even ``j`` carry ``cos(|m| theta)`` (``m > 0``), odd ``j`` carry ``sin`` (``m < 0``):
    Z4 = defocus (2, 0), Z5 = (2, -2), Z6 = (2, 2), Z7 = (3, -1), Z8 = (3, 1),
    Z11 = spherical (4, 0).
    """
    if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or j < 1:
        raise InvalidInputError(f"Noll index must be an integer >= 1, got {j!r}")
    j = int(j)
    n = 0
    rest = j - 1
    while rest > n:
        n += 1
        rest -= n
    m_abs = (n % 2) + 2 * ((rest + ((n + 1) % 2)) // 2)
    return n, (m_abs if j % 2 == 0 else -m_abs)


def _radial(n: int, m_abs: int, rho: np.ndarray) -> np.ndarray:
    """Zernike radial polynomial ``R_n^|m|(rho)``."""
    out = np.zeros_like(rho, dtype=float)
    for s in range((n - m_abs) // 2 + 1):
        c = (-1) ** s * math.factorial(n - s)
        c /= (
            math.factorial(s)
            * math.factorial((n + m_abs) // 2 - s)
            * math.factorial((n - m_abs) // 2 - s)
        )
        out += c * rho ** (n - 2 * s)
    return out


def zernike_noll(j: int, rho: Any, theta: Any) -> np.ndarray:
    """Noll-indexed Zernike polynomial ``Z_j(rho, theta)``, RMS-normalised on the unit disc.

    ``Z_j = sqrt(n + 1) R_n^0(rho)`` for ``m = 0``, else
    ``sqrt(2 (n + 1)) R_n^|m|(rho) {cos, sin}(|m| theta)``, so that the mean of
    ``Z_i Z_j`` over the unit disc is ``delta_ij``.  Values are returned everywhere
    (not masked outside ``rho <= 1``).
    """
    n, m = noll_to_nm(j)
    rho_a = np.asarray(rho, dtype=float)
    theta_a = np.asarray(theta, dtype=float)
    r = _radial(n, abs(m), rho_a)
    if m == 0:
        return math.sqrt(n + 1) * r
    ang = np.cos(m * theta_a) if m > 0 else np.sin(-m * theta_a)
    return math.sqrt(2 * (n + 1)) * r * ang


# ---------------------------------------------------------------------------
# Aberrations
# ---------------------------------------------------------------------------
_NOLL_OF_FIELD = {
    "astig_oblique": 5,
    "astig_vertical": 6,
    "coma_vertical": 7,
    "coma_horizontal": 8,
    "spherical": 11,
}


@dataclass(frozen=True)
class Aberrations:
    """Pupil aberrations as Noll Zernike coefficients, in waves RMS.

    ``astig_oblique`` Z5, ``astig_vertical`` Z6, ``coma_vertical`` Z7,
    ``coma_horizontal`` Z8, ``spherical`` Z11.  Frozen and hashable (keys PSF caches).
    Each coefficient must be finite and at most 10 waves in magnitude.
    """

    astig_oblique: float = 0.0
    astig_vertical: float = 0.0
    coma_vertical: float = 0.0
    coma_horizontal: float = 0.0
    spherical: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            raw = getattr(self, f.name)
            try:
                value = float(raw)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"aberration {f.name} must be a number, got {raw!r}"
                ) from exc
            if not math.isfinite(value) or abs(value) > _MAX_ABERRATION_WAVES:
                raise InvalidInputError(
                    f"aberration {f.name} must be finite and within +/-{_MAX_ABERRATION_WAVES}"
                    f" waves, got {raw!r}"
                )
            object.__setattr__(self, f.name, value + 0.0)  # -0.0 -> 0.0

    def noll_coefficients(self) -> dict[int, float]:
        """Non-zero coefficients keyed by Noll index."""
        out = {}
        for name, j in _NOLL_OF_FIELD.items():
            c = getattr(self, name)
            if c != 0.0:
                out[j] = c
        return out

    @property
    def is_zero(self) -> bool:
        return not self.noll_coefficients()

    def wavefront_waves(self, rho: Any, theta: Any) -> np.ndarray:
        """Wavefront ``W(rho, theta) = sum_j c_j Z_j`` in waves."""
        rho_a = np.asarray(rho, dtype=float)
        w = np.zeros(np.broadcast(rho_a, np.asarray(theta)).shape)
        for j, c in self.noll_coefficients().items():
            w = w + c * zernike_noll(j, rho_a, theta)
        return w


@lru_cache(maxsize=64)
def _max_wavefront_slope(aberrations: Aberrations) -> float:
    """max |grad_rho W| over the unit disc (waves per unit pupil radius), numerically."""
    if aberrations.is_zero:
        return 0.0
    t = np.linspace(-1.0, 1.0, 257)
    x, y = np.meshgrid(t, t)
    rho = np.hypot(x, y)
    w = aberrations.wavefront_waves(rho, np.arctan2(y, x))
    gy, gx = np.gradient(w, t, t)
    inside = rho <= 1.0
    return float(np.max(np.hypot(gx, gy)[inside]))


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------
def _as_objective(objective: Objective | str) -> Objective:
    if isinstance(objective, Objective):
        return objective
    return get_objective(objective)


def _as_dz(dz_um: Any, name: str = "dz_um") -> float:
    return finite_float(dz_um, name)


def _as_aberrations(aberrations: Any) -> Aberrations:
    if aberrations is None:
        return Aberrations()
    if not isinstance(aberrations, Aberrations):
        raise InvalidInputError(f"aberrations must be an Aberrations, got {type(aberrations)!r}")
    return aberrations


def _dz_key_nm(dz_um: float) -> int:
    """Cache key: defocus rounded to 1 nm."""
    return round(dz_um * 1000.0)


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------
def _blur_radius_um(objective: Objective, dz_um: float, aberrations: Aberrations) -> float:
    """Geometric blur radius: defocus cone plus transverse ray aberration (um)."""
    lam, na = objective.wavelength_um, objective.na
    return abs(dz_um) * math.tan(objective.half_angle_rad) + (lam / na) * _max_wavefront_slope(
        aberrations
    )


def psf_radius_px(
    objective: Objective | str, dz_um: float, aberrations: Aberrations | None = None
) -> int:
    """Support radius (camera pixels) of the PSF kernel at defocus ``dz_um``.

    ``ceil((|dz| tan(asin(NA/n)) + (lambda/NA) max|grad W| + 4 * 0.61 lambda/NA) / pixel)
    + 1``, clipped to ``[2, MAX_PSF_RADIUS_PX]``.  Also the margin a renderer needs.
    """
    obj = _as_objective(objective)
    dz = _as_dz(dz_um)
    ab = _as_aberrations(aberrations)
    r_um = _blur_radius_um(obj, dz, ab) + DIFFRACTION_RADII_MARGIN * 0.61 * (
        obj.wavelength_um / obj.na
    )
    r_px = math.ceil(r_um / obj.pixel_size_um - 1e-9) + 1
    return int(min(max(r_px, 2), MAX_PSF_RADIUS_PX))


def _oversampling(objective: Objective) -> int:
    """Sub-samples per camera pixel so that the sampling is <= lambda / (4 NA)."""
    nyquist_um = objective.wavelength_um / (4.0 * objective.na)
    return max(1, math.ceil(objective.pixel_size_um / nyquist_um - 1e-9))


# ---------------------------------------------------------------------------
# Pupil model
# ---------------------------------------------------------------------------
def _pupil_field(
    kx: np.ndarray,
    ky: np.ndarray,
    dk: float,
    wavelength_um: float,
    na: float,
    n: float,
    dz_um: float,
    aberrations: Aberrations,
    shift_um: float = 0.0,
) -> np.ndarray:
    """Generalised pupil ``H`` on a frequency grid (cycles/um), complex128.

    ``shift_um`` multiplies by ``exp(i 2 pi (kx + ky) shift)``, i.e. samples the
    amplitude at ``x + shift`` (used to centre a PSF between grid points).
    """
    kc = na / wavelength_um
    k2 = kx**2 + ky**2
    k = np.sqrt(k2)
    amp = np.clip((kc - k) / dk + 0.5, 0.0, 1.0)
    inside = amp > 0.0
    out = np.zeros(np.broadcast(kx, ky).shape, dtype=np.complex128)
    kxi = np.broadcast_to(kx, out.shape)[inside]
    kyi = np.broadcast_to(ky, out.shape)[inside]
    ki2 = k2[inside]
    k0 = n / wavelength_um
    # exact defocus phase minus piston; written to keep precision for small k
    phase = -dz_um * ki2 / (np.sqrt(k0**2 - ki2) + k0)
    if not aberrations.is_zero:
        rho = np.sqrt(ki2) / kc
        phase = phase + aberrations.wavefront_waves(rho, np.arctan2(kyi, kxi))
    if shift_um != 0.0:
        phase = phase + (kxi + kyi) * shift_um
    out[inside] = amp[inside] * np.exp(2j * np.pi * phase)
    return out


def _intensity_unshifted(
    wavelength_um: float,
    na: float,
    n: float,
    dz_um: float,
    dx_um: float,
    n_grid: int,
    aberrations: Aberrations,
    shift_um: float = 0.0,
) -> np.ndarray:
    """``|IFFT(H)|^2`` on an ``n_grid`` square with spacing ``dx_um``; origin at [0, 0].

    Scaled so that the sum over the whole grid is 1 for every defocus (Parseval).
    """
    f = sfft.fftfreq(n_grid, d=dx_um)
    dk = 1.0 / (n_grid * dx_um)
    h = _pupil_field(
        f[np.newaxis, :], f[:, np.newaxis], dk, wavelength_um, na, n, dz_um, aberrations, shift_um
    )
    energy = float(np.sum(np.abs(h) ** 2))
    if energy <= 0.0:
        raise InvalidInputError("the pupil is not sampled by this grid (grid too small)")
    u = sfft.ifft2(h, workers=_WORKERS, overwrite_x=True)
    inten = u.real**2 + u.imag**2
    inten *= n_grid**2 / energy
    return inten


def pupil_psf(
    wavelength_um: float,
    na: float,
    n: float,
    dz_um: float,
    dx_um: float,
    n_grid: int,
    aberrations: Aberrations | None = None,
) -> np.ndarray:
    """Point-sampled (not pixel-integrated) incoherent PSF of the pupil model.

    Returns an ``n_grid x n_grid`` float64 array with spacing ``dx_um`` whose centre
    (the geometric image of the point) is at index ``[n_grid // 2, n_grid // 2]``,
    scaled so that the whole grid sums to 1.  No anti-aliasing checks: choose
    ``dx_um <= lambda / (4 NA)`` and ``n_grid dx_um > 4 |dz| tan(theta)``.
    """
    if not (wavelength_um > 0 and 0 < na < n and dx_um > 0):
        raise InvalidInputError("need wavelength_um > 0, 0 < na < n and dx_um > 0")
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 8:
        raise InvalidInputError(f"n_grid must be an integer >= 8, got {n_grid!r}")
    inten = _intensity_unshifted(
        float(wavelength_um),
        float(na),
        float(n),
        _as_dz(dz_um),
        float(dx_um),
        int(n_grid),
        _as_aberrations(aberrations),
    )
    return sfft.fftshift(inten)


# ---------------------------------------------------------------------------
# Camera-pixel PSF kernels
# ---------------------------------------------------------------------------
def _grid_size(objective: Objective, dz_um: float, aberrations: Aberrations, span_sub: int) -> int:
    s = _oversampling(objective)
    dx = objective.pixel_size_um / s
    lam, na = objective.wavelength_um, objective.na
    airy_sub = math.ceil(0.61 * lam / na / dx)
    need_phase = math.ceil(4.0 * _blur_radius_um(objective, dz_um, aberrations) / dx)
    need_kernel = span_sub + 2 * DIFFRACTION_RADII_MARGIN * airy_sub
    need_pupil = math.ceil(48.0 * lam / (na * dx))  # >= 24 samples across the pupil radius
    n_grid = sfft.next_fast_len(int(max(need_phase, need_kernel, need_pupil, 16)))
    if n_grid > MAX_FFT_SIZE:
        if need_phase > MAX_FFT_SIZE:
            logger.warning(
                "PSF at dz=%.3g um for %s needs a %d-point grid; capped at %d "
                "(defocus phase may alias)",
                dz_um,
                objective.name,
                need_phase,
                MAX_FFT_SIZE,
            )
        n_grid = max(MAX_FFT_SIZE, sfft.next_fast_len(int(span_sub)))
    return int(n_grid)


def _build_psf(
    objective: Objective, dz_um: float, aberrations: Aberrations, size_px: int
) -> tuple[np.ndarray, float]:
    """Pixel-integrated kernel (normalised) and the energy fraction it captured."""
    s = _oversampling(objective)
    dx = objective.pixel_size_um / s
    span = size_px * s
    n_grid = _grid_size(objective, dz_um, aberrations, span)
    # Sub-pixel i of the kernel lies at (i - (span - 1) / 2) dx from the centre.  For even
    # s that is a half-integer multiple of dx: sample the amplitude half a step over.
    shift = 0.5 * dx if s % 2 == 0 else 0.0
    inten = _intensity_unshifted(
        objective.wavelength_um,
        objective.na,
        objective.immersion_index,
        dz_um,
        dx,
        n_grid,
        aberrations,
        shift,
    )
    idx = (np.arange(span) - span // 2) % n_grid
    fine = inten[np.ix_(idx, idx)]
    kernel = fine.reshape(size_px, s, size_px, s).sum(axis=(1, 3))
    captured = float(kernel.sum())
    kernel /= captured
    return kernel, captured


@lru_cache(maxsize=256)
def _cached_psf(
    objective: Objective, dz_nm: int, aberrations: Aberrations, size_px: int
) -> tuple[np.ndarray, float]:
    kernel, captured = _build_psf(objective, dz_nm / 1000.0, aberrations, size_px)
    kernel.flags.writeable = False
    return kernel, captured


def _check_size(size_px: Any) -> int | None:
    if size_px is None:
        return None
    if isinstance(size_px, bool) or not isinstance(size_px, (int, np.integer)):
        raise InvalidInputError(f"size_px must be an odd positive integer, got {size_px!r}")
    if size_px < 1 or size_px % 2 == 0 or size_px > 2 * MAX_PSF_RADIUS_PX + 1:
        raise InvalidInputError(
            f"size_px must be odd and in [1, {2 * MAX_PSF_RADIUS_PX + 1}], got {size_px}"
        )
    return int(size_px)


def _psf_entry(
    objective: Objective | str, dz_um: float, aberrations: Aberrations | None, size_px: Any
) -> tuple[np.ndarray, float]:
    obj = _as_objective(objective)
    dz = _as_dz(dz_um)
    ab = _as_aberrations(aberrations)
    size = _check_size(size_px)
    dz_nm = _dz_key_nm(dz)
    if size is None:
        size = 2 * psf_radius_px(obj, dz_nm / 1000.0, ab) + 1
    return _cached_psf(obj, dz_nm, ab, size)


def incoherent_psf(
    objective: Objective | str,
    dz_um: float,
    aberrations: Aberrations | None = None,
    *,
    size_px: int | None = None,
) -> np.ndarray:
    """Fluorescence PSF kernel in camera pixels at defocus ``dz_um``.

    Float64, odd square (``size_px`` or ``2 psf_radius_px + 1``), centred on the middle
    pixel, pixel-integrated, sums to 1.  Cached per (objective, dz rounded to 1 nm,
    aberrations, size): repeated calls return the same read-only array.
    """
    return _psf_entry(objective, dz_um, aberrations, size_px)[0]


def psf_captured_energy(
    objective: Objective | str,
    dz_um: float,
    aberrations: Aberrations | None = None,
    *,
    size_px: int | None = None,
) -> float:
    """Fraction of the PSF's total energy that falls inside the kernel of
    :func:`incoherent_psf` before it is normalised (1.0 = nothing lost)."""
    return _psf_entry(objective, dz_um, aberrations, size_px)[1]


# ---------------------------------------------------------------------------
# Coherent transfer function (brightfield phase objects)
# ---------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _cached_transfer(
    objective: Objective,
    dz_nm: int,
    shape: tuple[int, int],
    pixel_size_um: float,
    aberrations: Aberrations,
) -> np.ndarray:
    h_px, w_px = shape
    fy = sfft.fftfreq(h_px, d=pixel_size_um)[:, np.newaxis]
    fx = sfft.fftfreq(w_px, d=pixel_size_um)[np.newaxis, :]
    dk = 1.0 / (max(h_px, w_px) * pixel_size_um)
    h = _pupil_field(
        fx,
        fy,
        dk,
        objective.wavelength_um,
        objective.na,
        objective.immersion_index,
        dz_nm / 1000.0,
        aberrations,
    ).astype(np.complex64)
    h.flags.writeable = False
    return h


def coherent_transfer(
    objective: Objective | str,
    dz_um: float,
    shape: tuple[int, int],
    pixel_size_um: float | None = None,
    aberrations: Aberrations | None = None,
) -> np.ndarray:
    """Amplitude transfer function ``H`` on the (unshifted) FFT grid of an image.

    ``H = P(k) exp(i 2 pi dz (sqrt((n/lambda)^2 - k^2) - n/lambda)) exp(i 2 pi W)`` at
    the frequencies ``scipy.fft.fftfreq(shape[i], pixel_size_um)``; the image of a
    phase object is ``|IFFT(FFT(exp(i phi)) * H)|^2`` (background 1).  Coherent
    (point-source) illumination; when the pixel is coarser than lambda / (2 NA) the
    pupil is simply cut at the grid's Nyquist frequency.  Complex64, read-only, cached.
    """
    obj = _as_objective(objective)
    dz = _as_dz(dz_um)
    ab = _as_aberrations(aberrations)
    try:
        h_px, w_px = (int(v) for v in shape)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"shape must be (height, width), got {shape!r}") from exc
    if h_px < 1 or w_px < 1 or len(tuple(shape)) != 2:
        raise InvalidInputError(f"shape must be two positive integers, got {shape!r}")
    px = obj.pixel_size_um if pixel_size_um is None else _as_dz(pixel_size_um, "pixel_size_um")
    if px <= 0:
        raise InvalidInputError(f"pixel_size_um must be > 0, got {pixel_size_um!r}")
    return _cached_transfer(obj, _dz_key_nm(dz), (h_px, w_px), float(px), ab)


# ---------------------------------------------------------------------------
# Koehler illumination (brightfield, partially coherent)
# ---------------------------------------------------------------------------
_KERNEL_SUPERSAMPLING = 5


def check_condenser_na(objective: Objective, condenser_na: Any) -> float:
    """``condenser_na`` as a float in ``[0, NA]``, or a clear error."""
    na_c = finite_float(condenser_na, "condenser_na")
    if not 0.0 <= na_c <= objective.na:
        raise InvalidInputError(
            f"condenser_na must be in [0, NA = {objective.na}] (the aperture diaphragm "
            f"cannot open past the objective's NA here), got {condenser_na!r}"
        )
    return na_c


@lru_cache(maxsize=32)
def _cached_shift_kernel(radius_px: float, dz_px: float) -> np.ndarray:
    half = math.ceil(radius_px + 0.5)
    s = _KERNEL_SUPERSAMPLING
    # sub-pixel centres: pixel j spans [j - 1/2, j + 1/2]; s samples per pixel
    sub = (np.arange((2 * half + 1) * s) + 0.5) / s - (half + 0.5)
    r2 = sub[:, np.newaxis] ** 2 + sub[np.newaxis, :] ** 2
    density = np.where(r2 <= radius_px**2, 1.0 / (r2 + dz_px**2) ** 2, 0.0)
    n = 2 * half + 1
    kernel = density.reshape(n, s, n, s).sum(axis=(1, 3))
    kernel /= kernel.sum()
    kernel = kernel.astype(np.float32)
    kernel.flags.writeable = False
    return kernel


def illumination_shift_kernel(
    objective: Objective | str,
    dz_um: float,
    condenser_na: float,
    pixel_size_um: float | None = None,
) -> np.ndarray | None:
    """Blur of a defocused brightfield image by the condenser's cone of illumination.

    Koehler illumination is an incoherent sum of plane waves whose directions fill the
    condenser aperture uniformly in ``sin`` (pupil coordinates, up to ``condenser_na /
    n``).  Under a plane wave tilted by ``theta_s`` the image of a thin object at
    defocus ``dz`` is the coherent image shifted by ``dz tan(theta_s)`` (exact for
    Fresnel propagation when the object's spectrum, shifted by the tilt, stays inside
    the objective pupil).  The partially coherent image is therefore the coherent one
    convolved with the distribution of these shifts: radially symmetric, with density
    ``dz^2 / (s^2 + dz^2)^2`` out to ``s_max = |dz| tan(asin(condenser_na / n))``,
    pixel-integrated (5x5 sub-samples) and normalised to sum 1.  The widening of the
    pass band by oblique illumination (resolution up to ``(NA + NA_c) / lambda``) is not
    modelled.  Returns None when ``s_max`` is under a quarter pixel (no visible blur).
    """
    obj = _as_objective(objective)
    dz = _as_dz(dz_um)
    na_c = check_condenser_na(obj, condenser_na)
    px = obj.pixel_size_um if pixel_size_um is None else _as_dz(pixel_size_um, "pixel_size_um")
    if px <= 0:
        raise InvalidInputError(f"pixel_size_um must be > 0, got {pixel_size_um!r}")
    theta_c = math.asin(na_c / obj.immersion_index)
    radius_px = abs(dz) * math.tan(theta_c) / px
    if radius_px < 0.25:
        return None
    radius_px = min(radius_px, float(MAX_PSF_RADIUS_PX))
    dz_px = abs(dz) / px
    # round for the cache: 1/1000 px of radius is far below anything visible
    return _cached_shift_kernel(round(radius_px, 3), round(dz_px, 3))


# ---------------------------------------------------------------------------
# Yang et al.'s paraxial integral (reference)
# ---------------------------------------------------------------------------
def born_wolf_psf(
    r_um: Any, z_um: Any, wavelength_um: float, na: float, n: float
) -> np.ndarray | float:
    """Unnormalised paraxial defocus PSF used by Yang et al. (2018).

    ``h(r, z) = |int_0^1 J0(k (NA/n) r rho) exp(-i/2 k rho^2 z (NA/n)^2) rho drho|^2``
    with ``k = 2 pi / lambda``; ``h(0, 0) = 0.25``.  Gauss-Legendre quadrature with
    enough nodes for the oscillations; ``r_um`` and ``z_um`` broadcast.
    """
    if not (wavelength_um > 0 and na > 0 and n > 0):
        raise InvalidInputError("need wavelength_um > 0, na > 0 and n > 0")
    r = np.asarray(r_um, dtype=float)
    z = np.asarray(z_um, dtype=float)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(z))):
        raise InvalidInputError("r_um and z_um must be finite")
    k = 2.0 * math.pi / wavelength_um
    a = k * (na / n)
    r_b, z_b = np.broadcast_arrays(r, z)
    arg_max = a * float(np.max(np.abs(r_b), initial=0.0))
    phase_max = 0.5 * k * (na / n) ** 2 * float(np.max(np.abs(z_b), initial=0.0))
    n_nodes = int(min(64 + 4 * (arg_max + phase_max), 20000))
    x, w = roots_legendre(n_nodes)
    rho = 0.5 * (x + 1.0)
    w = 0.5 * w
    rr = r_b[..., np.newaxis]
    zz = z_b[..., np.newaxis]
    integrand = j0(a * rr * rho) * np.exp(-0.5j * k * rho**2 * zz * (na / n) ** 2) * rho
    val = np.sum(integrand * w, axis=-1)
    out = val.real**2 + val.imag**2
    return float(out) if out.ndim == 0 else out
