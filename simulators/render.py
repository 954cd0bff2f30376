"""Noise-free image formation: specimen patch + objective + defocus -> expected signal.

Fluorescence (``kind == "fluorescence"``): incoherent imaging, the expected image is
``sum_layers layer.values (*) PSF(dz_um - surface_um - layer.z_offset_um)``, with the
pixel-integrated kernels of :func:`simulators.psf.incoherent_psf`.

* Flat specimen (``surface_um is None``): one FFT convolution per layer; the layers'
  spectra are summed and transformed back once.
* Tilted / curved specimen: the per-pixel defocus ``d(x)`` of each layer is covered by
  equally spaced band defocus values ``b_i`` (spacing at most DOF / 8, at most
  :data:`MAX_BANDS` bands).  Each band takes the emitters with hat weights
  ``w_i(x) = max(0, 1 - |d(x) - b_i| / spacing)`` (linear interpolation between the two
  nearest bands; ``sum_i w_i = 1``) and blurs them with ``PSF(b_i)``.  Weighting the
  emitters, rather than blending blurred images at the output pixel, is the physically
  right choice (light from an emitter spreads with that emitter's own defocus); the
  result is continuous in ``d`` and equals the flat rendering when ``d`` is constant.

Brightfield (``kind == "phase"``): thin phase object.  The layers' phase maps are summed
(their ``z_offset_um`` values are averaged into one object plane, the simple approach for
a thin sample), ``field = exp(i phase)`` and the coherent image is
``|IFFT(FFT(field) * H)|^2`` with ``H`` from :func:`simulators.psf.coherent_transfer`
(background 1.0).  A surface is handled as for fluorescence, with hat weights on the
complex field of each band.  By default the light is a point source (fully coherent: a
defocused image rings but does not blur).  With ``condenser_na`` it is Koehler
illumination through a condenser aperture of that NA: the coherent image convolved with
:func:`simulators.psf.illumination_shift_kernel` (each tilted plane wave of the aperture
shifts the defocused image by ``dz tan(theta_s)``; checked against an Abbe sum of tilted
coherent images in the tests), so a defocused brightfield image blurs with the
condenser's cone.  On a surface, each band's blur is blended at the output pixel.

Borders: the caller may supply ``margin_px`` pixels of real specimen around the region
it keeps (``render_field`` does); where the margin is smaller than the kernel radius the
patch is padded by symmetric reflection, so the circular FFT never wraps into the
kept region (brightfield reflects all the way to the FFT size, since a zero border
would ring through the coherent transfer).  FFTs use ``scipy.fft`` with all cores and
``next_fast_len`` sizes, in single precision.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.fft as sfft
from scipy.signal import fftconvolve

from autofocus.checks import finite_float
from autofocus.errors import InvalidInputError
from autofocus.optics import Objective, get_objective
from simulators.psf import (
    Aberrations,
    check_condenser_na,
    coherent_transfer,
    illumination_shift_kernel,
    incoherent_psf,
    psf_radius_px,
)

if TYPE_CHECKING:
    from simulators.specimens import Specimen, SpecimenPatch

__all__ = ["MAX_BANDS", "benchmark_render", "render_expected", "render_field"]

MAX_BANDS = 24
"""Most defocus bands used to render one layer on a tilted or curved surface."""
BAND_FRACTION_OF_DOF = 1.0 / 8.0
"""Largest band spacing as a fraction of the objective's depth of field."""
_FLAT_TOLERANCE_UM = 1e-4
_WORKERS = -1


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
def _finite_float(value: Any, name: str) -> float:
    return finite_float(value, name)


def _shape2(shape: Any, name: str = "shape") -> tuple[int, int]:
    try:
        items = tuple(shape)
    except TypeError as exc:
        raise InvalidInputError(f"{name} must be (height, width), got {shape!r}") from exc
    if len(items) != 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items
    ):
        raise InvalidInputError(f"{name} must be two positive integers, got {shape!r}")
    return int(items[0]), int(items[1])


def _as_map(arr: Any, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2 or a.dtype.kind not in "uif":
        raise InvalidInputError(f"{name} must be a 2-D real array, got shape {a.shape} {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return a


def _check_patch(patch: Any) -> tuple[str, list[tuple[float, np.ndarray]], np.ndarray | None]:
    kind = getattr(patch, "kind", None)
    if kind not in ("fluorescence", "phase"):
        raise InvalidInputError(f"patch kind must be 'fluorescence' or 'phase', got {kind!r}")
    layers = getattr(patch, "layers", None)
    if not layers:
        raise InvalidInputError("patch has no layers")
    out = []
    shape = None
    for i, layer in enumerate(layers):
        values = _as_map(getattr(layer, "values", None), f"layer {i} values")
        z_off = _finite_float(getattr(layer, "z_offset_um", None), f"layer {i} z_offset_um")
        if shape is None:
            shape = values.shape
        elif values.shape != shape:
            raise InvalidInputError(f"layer {i} has shape {values.shape}, expected {shape}")
        out.append((z_off, values))
    surface = getattr(patch, "surface_um", None)
    surf = None
    if surface is not None:
        surf = _as_map(surface, "surface_um")
        if surf.shape != shape:
            raise InvalidInputError(f"surface_um has shape {surf.shape}, expected {shape}")
    return kind, out, surf


# ---------------------------------------------------------------------------
# FFT helpers
# ---------------------------------------------------------------------------
@lru_cache(maxsize=6)
def _otf(
    objective: Objective, dz_nm: int, aberrations: Aberrations, fft_shape: tuple[int, int]
) -> np.ndarray:
    """rfft2 of the PSF kernel placed with its centre at [0, 0] of an ``fft_shape`` grid."""
    kernel = incoherent_psf(objective, dz_nm / 1000.0, aberrations)
    r = kernel.shape[0] // 2
    placed = np.zeros(fft_shape, dtype=np.float32)
    iy = (np.arange(kernel.shape[0]) - r) % fft_shape[0]
    ix = (np.arange(kernel.shape[1]) - r) % fft_shape[1]
    placed[np.ix_(iy, ix)] = kernel
    otf = sfft.rfft2(placed, workers=_WORKERS)
    otf.flags.writeable = False
    return otf


def _bands(d_map: np.ndarray, spacing_max_um: float) -> np.ndarray | None:
    """Band defocus values covering ``d_map``; None when it is flat."""
    lo, hi = float(d_map.min()), float(d_map.max())
    if hi - lo <= _FLAT_TOLERANCE_UM:
        return None
    n = min(MAX_BANDS, max(2, math.ceil((hi - lo) / spacing_max_um) + 1))
    return np.linspace(lo, hi, n)


def _hat(d_map: np.ndarray, centre: float, spacing: float) -> np.ndarray:
    return np.clip(1.0 - np.abs(d_map - centre) / spacing, 0.0, 1.0).astype(np.float32)


def _pad(a: np.ndarray, pad: int) -> np.ndarray:
    return a if pad == 0 else np.pad(a, pad, mode="symmetric")


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------
def _plan(
    objective: Objective,
    defocus_ranges: list[tuple[float, float]],
    aberrations: Aberrations,
    shape: tuple[int, int],
    margin: int,
) -> tuple[int, tuple[int, int]]:
    """Reflection padding and FFT shape for the largest kernel needed."""
    radius = max(
        psf_radius_px(objective, max(abs(lo), abs(hi)), aberrations) for lo, hi in defocus_ranges
    )
    pad = max(radius - margin, 0)
    fft_shape = (
        sfft.next_fast_len(shape[0] + 2 * pad, real=True),
        sfft.next_fast_len(shape[1] + 2 * pad, real=True),
    )
    return pad, fft_shape


@dataclass(frozen=True)
class _Band:
    """One FFT pass: blur ``source`` with the PSF at ``defocus_um``; when ``d_map`` is
    given, only the hat-weighted share of pixels whose defocus is near ``defocus_um``."""

    defocus_um: float
    d_map: np.ndarray | None = None
    spacing_um: float = 0.0

    def weight(self) -> np.ndarray | None:
        if self.d_map is None:
            return None
        return _hat(self.d_map, self.defocus_um, self.spacing_um)


def _bands_for(d0: float, surface: np.ndarray | None, spacing_max_um: float) -> list[_Band]:
    """Bands covering the defocus ``d0 - surface`` (a single band when flat)."""
    if surface is None:
        return [_Band(d0)]
    d_map = d0 - surface
    centres = _bands(d_map, spacing_max_um)
    if centres is None:
        return [_Band(float(d_map.mean()))]
    spacing = float(centres[1] - centres[0])
    return [_Band(float(c), d_map, spacing) for c in centres]


def _ranges(bands: list[_Band]) -> list[tuple[float, float]]:
    return [(b.defocus_um, b.defocus_um) for b in bands]


def _render_fluorescence(
    objective: Objective,
    dz_um: float,
    layers: list[tuple[float, np.ndarray]],
    surface: np.ndarray | None,
    aberrations: Aberrations,
    margin: int,
) -> np.ndarray:
    shape = layers[0][1].shape
    spacing_max = objective.dof_um * BAND_FRACTION_OF_DOF
    work = [
        (values, band)
        for z_off, values in layers
        for band in _bands_for(dz_um - z_off, surface, spacing_max)
    ]
    pad, fft_shape = _plan(objective, _ranges([b for _, b in work]), aberrations, shape, margin)
    acc = None
    for values, band in work:
        w = band.weight()
        if w is not None and not np.any(w > 0):
            continue
        src = values if w is None else values * w
        spec = sfft.rfft2(_pad(src, pad), s=fft_shape, workers=_WORKERS)
        spec *= _otf(objective, round(band.defocus_um * 1000.0), aberrations, fft_shape)
        acc = spec if acc is None else acc + spec
    if acc is None:  # every weight empty: cannot happen for a finite defocus map
        return np.zeros((shape[0] - 2 * margin, shape[1] - 2 * margin), dtype=np.float32)
    img = sfft.irfft2(acc, s=fft_shape, workers=_WORKERS)
    out = img[pad + margin : pad + shape[0] - margin, pad + margin : pad + shape[1] - margin]
    return np.maximum(out, 0.0).astype(np.float32, copy=False)


def _render_phase(
    objective: Objective,
    dz_um: float,
    layers: list[tuple[float, np.ndarray]],
    surface: np.ndarray | None,
    aberrations: Aberrations,
    margin: int,
    condenser_na: float | None = None,
) -> np.ndarray:
    shape = layers[0][1].shape
    phase = np.zeros(shape, dtype=np.float32)
    for _, values in layers:
        phase += values
    d0 = dz_um - float(np.mean([z for z, _ in layers]))
    field = np.exp(1j * phase).astype(np.complex64)
    bands = _bands_for(d0, surface, objective.dof_um * BAND_FRACTION_OF_DOF)
    pad, _ = _plan(objective, _ranges(bands), aberrations, shape, margin)
    fft_shape = (
        sfft.next_fast_len(shape[0] + 2 * pad),
        sfft.next_fast_len(shape[1] + 2 * pad),
    )
    # Pad by reflection all the way to the FFT size: a zero border would diffract
    # (coherent edge ringing reaches far), a unit-modulus one leaves a blank field at 1.
    widths = [(pad, fft_shape[i] - shape[i] - pad) for i in range(2)]
    padded = np.pad(field, widths, mode="symmetric")
    acc = None
    for band in bands:
        w = band.weight()
        if w is not None and not np.any(w > 0):
            continue
        src = padded if w is None else padded * np.pad(w, widths, mode="symmetric")
        spec = sfft.fft2(src, workers=_WORKERS)
        spec *= coherent_transfer(
            objective, band.defocus_um, fft_shape, objective.pixel_size_um, aberrations
        )
        acc = spec if acc is None else acc + spec
    if acc is None:  # pragma: no cover - at least one band carries weight
        return np.ones((shape[0] - 2 * margin, shape[1] - 2 * margin), dtype=np.float32)
    amp = sfft.ifft2(acc, workers=_WORKERS, overwrite_x=True)
    if condenser_na is None:
        amp = amp[pad + margin : pad + shape[0] - margin, pad + margin : pad + shape[1] - margin]
        return (amp.real**2 + amp.imag**2).astype(np.float32, copy=False)
    amp = amp[pad : pad + shape[0], pad : pad + shape[1]]
    coherent = (amp.real**2 + amp.imag**2).astype(np.float32, copy=False)
    out = _koehler_blur(objective, coherent, bands, condenser_na)
    return out[margin : shape[0] - margin, margin : shape[1] - margin]


def _koehler_blur(
    objective: Objective, coherent: np.ndarray, bands: list[_Band], condenser_na: float
) -> np.ndarray:
    """The coherent image blurred by the condenser's cone (``illumination_shift_kernel``)
    of each band's defocus; bands of a surface are blended with their hat weights at the
    output pixel (an approximation: each pixel takes the blur of its own defocus)."""
    out = np.zeros_like(coherent)
    for band in bands:
        kernel = illumination_shift_kernel(objective, band.defocus_um, condenser_na)
        blurred = coherent if kernel is None else _convolve_reflect(coherent, kernel)
        w = band.weight()
        if w is None:
            return blurred
        out += w * blurred
    return out


def _convolve_reflect(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    r = kernel.shape[0] // 2
    padded = np.pad(image, r, mode="symmetric")
    return fftconvolve(padded, kernel, mode="valid").astype(np.float32, copy=False)


def render_expected(
    patch: SpecimenPatch,
    objective: Objective | str,
    dz_um: float,
    aberrations: Aberrations | None = None,
    *,
    margin_px: int = 0,
    condenser_na: float | None = None,
) -> np.ndarray:
    """Noise-free expected image of a specimen patch at defocus ``dz_um``.

    Returns float32 of the patch shape minus ``margin_px`` on every side: relative
    fluorescence (1.0 ~ a bright in-focus structure; clipped at 0 against FFT
    round-off) or brightfield intensity (background 1.0).  Per-pixel defocus is
    ``dz_um - surface_um - layer.z_offset_um``.

    ``condenser_na`` (brightfield only): Koehler illumination through a condenser
    aperture of that NA (at most the objective's), i.e. the coherent image blurred by
    :func:`simulators.psf.illumination_shift_kernel`; None: a point source (fully
    coherent, the limit of a closed aperture diaphragm).  Checked, then ignored, for
    fluorescence.
    """
    obj = objective if isinstance(objective, Objective) else get_objective(objective)
    dz = _finite_float(dz_um, "dz_um")
    ab = Aberrations() if aberrations is None else aberrations
    if not isinstance(ab, Aberrations):
        raise InvalidInputError(f"aberrations must be an Aberrations, got {type(ab)!r}")
    kind, layers, surface = _check_patch(patch)
    if isinstance(margin_px, bool) or not isinstance(margin_px, (int, np.integer)):
        raise InvalidInputError(f"margin_px must be an integer, got {margin_px!r}")
    margin = int(margin_px)
    h, w = layers[0][1].shape
    if margin < 0 or h - 2 * margin < 1 or w - 2 * margin < 1:
        raise InvalidInputError(f"margin_px={margin_px} does not fit a {h}x{w} patch")
    if condenser_na is not None:
        condenser_na = check_condenser_na(obj, condenser_na)
    if kind == "fluorescence":
        return _render_fluorescence(obj, dz, layers, surface, ab, margin)
    return _render_phase(obj, dz, layers, surface, ab, margin, condenser_na)


def _needed_margin(patch: Any, objective: Objective, dz_um: float, aberrations: Aberrations) -> int:
    worst = 0.0
    surface = getattr(patch, "surface_um", None)
    s_lo, s_hi = (0.0, 0.0) if surface is None else (float(np.min(surface)), float(np.max(surface)))
    offsets = [float(layer.z_offset_um) for layer in patch.layers]
    if getattr(patch, "kind", None) == "phase":
        offsets = [float(np.mean(offsets))]
    for z in offsets:
        worst = max(worst, abs(dz_um - z - s_lo), abs(dz_um - z - s_hi))
    return psf_radius_px(objective, worst, aberrations)


def render_field(
    specimen: Specimen,
    objective: Objective | str,
    dz_um: float,
    x_um: float,
    y_um: float,
    shape: tuple[int, int],
    aberrations: Aberrations | None = None,
    *,
    condenser_na: float | None = None,
) -> np.ndarray:
    """Render the field of view of ``shape`` (H, W) centred on sample point (x_um, y_um).

    Pixel (0, 0) is at ``(x_um - W/2 * pixel, y_um - H/2 * pixel)``.  The patch is
    fetched with a margin of the PSF support radius (re-fetched, larger, up to twice
    when the specimen's surface or layers need more; any shortfall left is padded by
    reflection), rendered and cropped.  Float32.  ``condenser_na``: as for
    :func:`render_expected` (brightfield specimens only).
    """
    obj = objective if isinstance(objective, Objective) else get_objective(objective)
    dz = _finite_float(dz_um, "dz_um")
    x = _finite_float(x_um, "x_um")
    y = _finite_float(y_um, "y_um")
    h, w = _shape2(shape)
    ab = Aberrations() if aberrations is None else aberrations
    if not isinstance(ab, Aberrations):
        raise InvalidInputError(f"aberrations must be an Aberrations, got {type(ab)!r}")
    px = obj.pixel_size_um
    x0 = x - w / 2 * px
    y0 = y - h / 2 * px
    margin = psf_radius_px(obj, dz, ab)
    tries = 0
    while True:
        patch = specimen.patch(
            x0 - margin * px, y0 - margin * px, (h + 2 * margin, w + 2 * margin), px
        )
        _check_patch(patch)
        need = _needed_margin(patch, obj, dz, ab)
        # a tilted surface grows with the patch: a few tries, then reflection padding
        if need <= margin or tries == 2:
            break
        margin, tries = need, tries + 1
    out = render_expected(patch, obj, dz, ab, margin_px=margin, condenser_na=condenser_na)
    if out.shape != (h, w):  # pragma: no cover - specimen returned a wrong shape
        raise InvalidInputError(f"specimen returned a patch that renders to {out.shape}")
    return out


# ---------------------------------------------------------------------------
# benchmark
# ---------------------------------------------------------------------------
def benchmark_render(
    sizes: tuple[int, ...] = (512, 2048),
    repeats: int = 5,
    objective: Objective | str = "20X",
    dz_um: float = 3.0,
) -> dict[str, float]:
    """Median seconds of :func:`render_expected` for square frames of each size.

    Uniform defocus, one random-texture fluorescence layer, the patch carrying a
    margin of the PSF radius (as ``render_field`` fetches it).  ``"<size>x<size>"``:
    the same defocus every frame (caches warm, as for a camera sitting still);
    ``"<size>x<size> new dz"``: a defocus never seen before each frame (PSF and its
    transform computed afresh, as during a focus sweep).
    """
    from simulators.specimens import Layer, SpecimenPatch

    obj = objective if isinstance(objective, Objective) else get_objective(objective)
    dz0 = _finite_float(dz_um, "dz_um")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InvalidInputError(f"repeats must be a positive integer, got {repeats!r}")
    rng = np.random.default_rng(0)
    margin = psf_radius_px(obj, abs(dz0) + 0.1)
    results: dict[str, float] = {}
    fresh = 0
    for size in sizes:
        n = _shape2((size, size), "sizes")[0] + 2 * margin
        layer = Layer(z_offset_um=0.0, values=rng.random((n, n), dtype=np.float32))
        patch = SpecimenPatch(kind="fluorescence", layers=[layer], surface_um=None)
        render_expected(patch, obj, dz0, margin_px=margin)
        warm, cold = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            render_expected(patch, obj, dz0, margin_px=margin)
            t1 = time.perf_counter()
            fresh += 1  # a defocus never rendered before (distinct nanometres)
            render_expected(patch, obj, dz0 + 0.0013 * fresh, margin_px=margin)
            t2 = time.perf_counter()
            warm.append(t1 - t0)
            cold.append(t2 - t1)
        results[f"{size}x{size}"] = statistics.median(warm)
        results[f"{size}x{size} new dz"] = statistics.median(cold)
    return results
