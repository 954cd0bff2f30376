"""Koehler (partially coherent) brightfield: the condenser's shift kernel and its use."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.fft as sfft

from autofocus.errors import InvalidInputError
from autofocus.optics import Objective, get_objective
from simulators.psf import coherent_transfer, illumination_shift_kernel
from simulators.render import render_expected, render_field
from simulators.specimens import make_specimen

OBJ = Objective(
    name="t",
    magnification=20,
    na=0.5,
    immersion_index=1.0,
    camera_pixel_size_um=10.0,
    wavelength_um=0.55,
)


def _centred(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = k.shape[0] // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy, xx


def test_kernel_normalised_symmetric_and_sized() -> None:
    dz, na_c = 10.0, 0.3
    k = illumination_shift_kernel(OBJ, dz, na_c)
    assert k is not None and k.dtype == np.float32
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(k, k[::-1, :], atol=1e-7)
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    yy, xx = _centred(k)
    r = np.hypot(yy, xx)
    s_max = dz * math.tan(math.asin(na_c)) / OBJ.pixel_size_um
    assert float(r[k > 0].max()) <= s_max + 1.0
    # mean shift: the density dz^2 / (s^2 + dz^2)^2 over the disc, integrated by hand
    s = np.linspace(0, s_max, 20001)
    d = dz / OBJ.pixel_size_um
    w = s * d**2 / (s**2 + d**2) ** 2
    assert float((k * r).sum()) == pytest.approx(float((w * s).sum() / w.sum()), rel=0.03)
    # the same for -dz, None when the cone spreads under a quarter pixel
    np.testing.assert_array_equal(k, illumination_shift_kernel(OBJ, -dz, na_c))
    assert illumination_shift_kernel(OBJ, 0.0, na_c) is None
    assert illumination_shift_kernel(OBJ, 10.0, 0.0) is None


@pytest.mark.parametrize("na_c", [-0.1, 0.51, float("nan"), "x"])
def test_kernel_rejects_bad_condenser_na(na_c: object) -> None:
    with pytest.raises(InvalidInputError):
        illumination_shift_kernel(OBJ, 5.0, na_c)  # type: ignore[arg-type]


@pytest.mark.parametrize("dz_um, na_c", [(8.0, 0.2), (8.0, 0.3), (-15.0, 0.2), (-15.0, 0.3)])
def test_shift_kernel_matches_an_abbe_sum_of_tilted_coherent_images(
    dz_um: float, na_c: float
) -> None:
    """Independent check: average the coherent images under every tilted plane wave in
    the condenser aperture (Abbe's method, on a periodic grid), and compare."""
    n, px = 64, OBJ.pixel_size_um
    period = n * px
    y, x = np.mgrid[:n, :n] * px
    phi = (
        0.4 * np.cos(2 * np.pi * (6 * x + 2 * y) / period)
        + 0.3 * np.sin(2 * np.pi * 8 * y / period)
        + 0.3 * np.cos(2 * np.pi * (5 * x - 7 * y) / period + 1.0)
    )
    t = np.exp(1j * phi)
    h = coherent_transfer(OBJ, dz_um, (n, n), px)
    f = sfft.fftfreq(n, px)
    acc, count = np.zeros((n, n)), 0
    for sy in f:
        for sx in f:
            if sx * sx + sy * sy <= (na_c / OBJ.wavelength_um) ** 2:
                tilted = t * np.exp(2j * np.pi * (sx * x + sy * y))
                acc += np.abs(sfft.ifft2(sfft.fft2(tilted) * h)) ** 2
                count += 1
    abbe = acc / count
    coherent = np.abs(sfft.ifft2(sfft.fft2(t) * h)) ** 2
    k = illumination_shift_kernel(OBJ, dz_um, na_c)
    assert k is not None
    wrapped = np.zeros((n, n))
    yy, xx = _centred(k)
    np.add.at(wrapped, (yy % n, xx % n), k)
    shifted = np.real(sfft.ifft2(sfft.fft2(coherent) * sfft.fft2(wrapped)))
    scale = float(np.sqrt(np.mean((abbe - abbe.mean()) ** 2)))
    err_kernel = float(np.sqrt(np.mean((abbe - shifted) ** 2))) / scale
    err_coherent = float(np.sqrt(np.mean((abbe - coherent) ** 2))) / scale
    assert err_kernel < 0.2
    assert err_coherent > 1.0  # the check would see a missing or wrong blur


def test_koehler_render_blurs_with_defocus_and_equals_coherent_at_focus() -> None:
    obj = get_objective("20X")
    spec = make_specimen("phase", seed=3)
    shape = (128, 128)
    na_c = 0.75 * obj.na
    focus_c = render_field(spec, obj, 0.0, 0.0, 0.0, shape)
    focus_k = render_field(spec, obj, 0.0, 0.0, 0.0, shape, condenser_na=na_c)
    np.testing.assert_array_equal(focus_c, focus_k)

    def fine(img: np.ndarray) -> float:  # contrast above 0.1 cycles/px
        spec2 = np.abs(np.fft.fft2(img - img.mean())) ** 2
        fy = np.fft.fftfreq(img.shape[0])[:, None]
        fx = np.fft.fftfreq(img.shape[1])[None, :]
        return float(spec2[np.hypot(fy, fx) > 0.1].sum() / spec2.sum())

    ratios = []
    for dz in (4.0, 12.0, 30.0):
        c = render_field(spec, obj, dz, 0.0, 0.0, shape)
        k = render_field(spec, obj, dz, 0.0, 0.0, shape, condenser_na=na_c)
        assert k.shape == shape and k.dtype == np.float32
        assert abs(float(k.mean()) - 1.0) < 0.02  # background stays at 1
        ratios.append(fine(k) / fine(c))
    assert ratios[0] < 0.9 and ratios[2] < ratios[0]  # the cone blurs more with defocus
    # a smaller aperture blurs less
    small = render_field(spec, obj, 12.0, 0.0, 0.0, shape, condenser_na=0.2 * obj.na)
    big = render_field(spec, obj, 12.0, 0.0, 0.0, shape, condenser_na=na_c)
    assert fine(small) > fine(big)


@dataclass
class _Layer:
    z_offset_um: float
    values: np.ndarray


@dataclass
class _Patch:
    kind: str
    layers: list[_Layer]
    surface_um: np.ndarray | None = None


def _patch(kind: str, tilt: float = 0.0, size: int = 160) -> _Patch:
    rng = np.random.default_rng(5)
    values = rng.random((size, size)).astype(np.float32)
    values = (0.3 * values) if kind == "phase" else values
    x = np.arange(size, dtype=np.float32)[None, :] * 0.1
    surface = np.broadcast_to(tilt * x, (size, size)).copy() if tilt else None
    return _Patch(kind, [_Layer(0.0, values)], surface)


def test_koehler_tilted_surface_and_fluorescence() -> None:
    obj = get_objective("40X")
    tilted = _patch("phase", tilt=0.5)  # surface 0.05 um per column: defocus -1.6 to -6.4 um
    img = render_expected(tilted, obj, 0.0, margin_px=32, condenser_na=0.6)
    assert img.shape == (96, 96) and np.all(np.isfinite(img))
    flat = _Patch("phase", tilted.layers)
    for cols, dz in ((slice(4, 12), -0.05 * 40), (slice(84, 92), -0.05 * 120)):
        ref = render_expected(flat, obj, dz, margin_px=32, condenser_na=0.6)
        r = np.corrcoef(img[:, cols].ravel(), ref[:, cols].ravel())[0, 1]
        assert r > 0.8, (dz, r)  # each column looks like the flat render at its defocus
    flat = _patch("fluorescence")
    a = render_expected(flat, obj, 2.0, margin_px=32)
    b = render_expected(flat, obj, 2.0, margin_px=32, condenser_na=0.6)
    np.testing.assert_array_equal(a, b)  # fluorescence has no condenser


@pytest.mark.parametrize("kind", ["phase", "fluorescence"])
@pytest.mark.parametrize("na_c", [-0.2, 0.9, float("inf"), "x"])
def test_render_rejects_bad_condenser_na(na_c: object, kind: str) -> None:
    with pytest.raises(InvalidInputError):
        render_expected(_patch(kind, size=16), get_objective("20X"), 3.0, condenser_na=na_c)  # type: ignore[arg-type]


@pytest.mark.parametrize("na_c", [0.0, -0.1, 0.6, float("nan"), "x"])
def test_brightfield_levels_need_a_condenser_inside_the_pupil(na_c: object) -> None:
    with pytest.raises(InvalidInputError):
        get_objective("20X").dz_to_level(5.0, condenser_na=na_c)  # type: ignore[arg-type]
