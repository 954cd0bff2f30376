"""Physics checks of the scalar pupil PSF model (simulators.psf)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from autofocus.errors import InvalidInputError
from autofocus.optics import OBJECTIVE_PRESETS, Objective, get_objective
from simulators.psf import (
    Aberrations,
    born_wolf_psf,
    coherent_transfer,
    incoherent_psf,
    noll_to_nm,
    psf_captured_energy,
    psf_radius_px,
    pupil_psf,
    zernike_noll,
)


def _second_moment_radius(k: np.ndarray) -> float:
    yy, xx = np.indices(k.shape) - k.shape[0] // 2
    return float(np.sqrt(np.sum(k * (xx**2 + yy**2)) / k.sum()))


def _first_minimum(profile: np.ndarray) -> float:
    """Position (samples) of the first local minimum, refined by a parabola."""
    i = next(i for i in range(1, len(profile) - 1) if profile[i] <= profile[i + 1])
    a, b, c = profile[i - 1], profile[i], profile[i + 1]
    return i + 0.5 * (a - c) / (a - 2 * b + c)


# low-NA, finely sampled objective: NA 0.25 in air, 0.1 um pixels, lambda 0.5 um
LOW_NA = Objective(
    name="test-0.25", magnification=65, na=0.25, camera_pixel_size_um=6.5, wavelength_um=0.5
)


# ---------------------------------------------------------------------------
# Born & Wolf / Yang et al.
# ---------------------------------------------------------------------------
def test_born_wolf_golden_values() -> None:
    assert born_wolf_psf(0.0, 0.0, 0.5, 0.5, 1.0) == pytest.approx(0.25, abs=1e-9)
    assert born_wolf_psf(0.0, 1.0, 0.5, 0.5, 1.0) == pytest.approx(0.20264, abs=2e-5)
    # analytic on axis: sin^2(a/2) / a^2 with a = k z (NA/n)^2 / 2
    z = np.array([0.5, 2.0, 3.7])
    a = 0.5 * (2 * math.pi / 0.5) * z * 0.25
    np.testing.assert_allclose(
        born_wolf_psf(0.0, z, 0.5, 0.5, 1.0), np.sin(a / 2) ** 2 / a**2, rtol=1e-8
    )


def test_born_wolf_airy_zero_and_vectorised() -> None:
    r = np.linspace(0.0, 2.0, 401)
    h = born_wolf_psf(r, 0.0, 0.5, 0.5, 1.0)
    assert h.shape == r.shape
    r0 = _first_minimum(h) * (r[1] - r[0])
    assert r0 == pytest.approx(0.61 * 0.5 / 0.5, rel=0.01)


# ---------------------------------------------------------------------------
# Airy pattern at focus
# ---------------------------------------------------------------------------
def test_pupil_psf_airy_first_zero() -> None:
    lam, na = 0.5, 0.25
    dx = lam / na / 40
    psf = pupil_psf(lam, na, 1.0, 0.0, dx, 1024)
    assert psf.sum() == pytest.approx(1.0, abs=1e-9)
    c = 512
    profile = psf[c, c:]
    assert np.argmax(psf) == c * 1024 + c
    r0_um = _first_minimum(profile) * dx
    assert r0_um == pytest.approx(0.61 * lam / na, rel=0.02)
    assert profile[round(r0_um / dx)] < 0.01 * profile[0]


def test_incoherent_psf_airy_first_zero_fine_pixels() -> None:
    # NA 0.1, 65 nm pixels: the Airy radius spans ~49 pixels, pixel integration negligible
    obj = Objective(name="test-0.1", magnification=100, na=0.1, camera_pixel_size_um=6.5)
    k = incoherent_psf(obj, 0.0)
    c = k.shape[0] // 2
    r0_um = _first_minimum(k[c, c:]) * obj.pixel_size_um
    assert r0_um == pytest.approx(0.61 * obj.wavelength_um / obj.na, rel=0.02)


# ---------------------------------------------------------------------------
# Agreement with the paraxial integral at low NA
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dz_um", [0.0, 2.0, 5.0, 10.0])
def test_incoherent_psf_matches_born_wolf_at_low_na(dz_um: float) -> None:
    k = incoherent_psf(LOW_NA, dz_um)
    n = k.shape[0]
    yy, xx = (np.indices(k.shape) - n // 2) * LOW_NA.pixel_size_um
    r = np.hypot(xx, yy)
    ref = born_wolf_psf(r, dz_um, 0.5, 0.25, 1.0)
    ref = ref / ref.sum()
    assert np.sum(np.abs(k - ref)) < 0.03  # L1 distance of two unit-sum PSFs
    # What remains is the paraxial approximation: the exact defocus phase at the pupil
    # edge equals the paraxial one at z * 2 (1 - sqrt(1 - NA^2)) / NA^2 (+1.6% at NA 0.25).
    z_eff = dz_um * 2 * (1 - math.sqrt(1 - 0.25**2)) / 0.25**2
    ref_eff = born_wolf_psf(r, z_eff, 0.5, 0.25, 1.0)
    ref_eff = ref_eff / ref_eff.sum()
    err = np.max(np.abs(k - ref_eff)) / ref_eff.max()
    assert err < 0.01, f"max deviation {err:.3%} of the peak at dz={dz_um}"


# ---------------------------------------------------------------------------
# Normalisation, energy, shape
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OBJECTIVE_PRESETS))
def test_kernel_shape_centre_and_sum(name: str) -> None:
    obj = get_objective(name)
    for dz in (0.0, 0.7 * obj.dof_um, -2.3 * obj.dof_um):
        k = incoherent_psf(obj, dz)
        assert k.dtype == np.float64
        assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert k.shape[0] == 2 * psf_radius_px(obj, dz) + 1
        assert k.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(k >= 0)
        yy, xx = np.indices(k.shape) - k.shape[0] // 2
        assert abs(np.sum(k * xx)) < 1e-9 and abs(np.sum(k * yy)) < 1e-9
        # no aberrations: symmetric under flips and transposition
        np.testing.assert_allclose(k, k[::-1, :], atol=1e-12)
        np.testing.assert_allclose(k, k.T, atol=1e-12)


def test_total_energy_independent_of_defocus() -> None:
    obj = get_objective("20X")
    full = [pupil_psf(0.52, 0.5, 1.0, dz, 0.25, 512).sum() for dz in (0.0, 3.0, 10.0)]
    np.testing.assert_allclose(full, 1.0, atol=1e-10)
    # a kernel large enough keeps (almost) all of it, the same at every defocus
    fractions = [psf_captured_energy(obj, dz, size_px=151) for dz in (0.0, 2.0, 5.0, 10.0, -10.0)]
    assert min(fractions) > 0.98
    assert max(fractions) - min(fractions) < 0.015
    # the automatic size keeps most of the energy too
    for dz in (0.0, 4.0, 15.0):
        assert psf_captured_energy(obj, dz) > 0.95


def test_radius_covers_geometric_blur() -> None:
    for obj in OBJECTIVE_PRESETS.values():
        for dz in (0.0, 3.0, 20.0):
            geo = abs(dz) * math.tan(obj.half_angle_rad) / obj.pixel_size_um
            r = psf_radius_px(obj, dz)
            assert r >= min(geo + 2 * 0.61 * obj.wavelength_um / obj.na / obj.pixel_size_um, 255)
    assert psf_radius_px("10X", 5000.0) == 255


@pytest.mark.parametrize("name", list(OBJECTIVE_PRESETS))
def test_blur_grows_monotonically_with_defocus(name: str) -> None:
    obj = get_objective(name)
    dzs = np.linspace(0.0, 3.0 * obj.dof_um, 7)
    radii = [_second_moment_radius(incoherent_psf(obj, dz)) for dz in dzs]
    assert all(b > a for a, b in itertools.pairwise(radii)), radii
    assert radii[-1] > 2.0 * radii[0]
    neg = [_second_moment_radius(incoherent_psf(obj, -dz)) for dz in dzs]
    np.testing.assert_allclose(neg, radii, rtol=1e-9)


def test_peak_falls_with_defocus() -> None:
    obj = get_objective("40X")
    peaks = [incoherent_psf(obj, dz).max() for dz in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(b < a for a, b in itertools.pairwise(peaks))


# ---------------------------------------------------------------------------
# Aberrations
# ---------------------------------------------------------------------------
def test_spherical_aberration_breaks_defocus_symmetry() -> None:
    obj = get_objective("40X")
    dz = 0.8 * obj.dof_um
    plain_p, plain_m = incoherent_psf(obj, dz), incoherent_psf(obj, -dz)
    np.testing.assert_allclose(plain_p, plain_m, atol=1e-12)
    sph = Aberrations(spherical=0.1)
    p, m = incoherent_psf(obj, dz, sph), incoherent_psf(obj, -dz, sph)
    assert p.shape == m.shape
    assert np.sum(np.abs(p - m)) > 0.5  # L1 distance of unit-sum kernels (at most 2)
    assert abs(p.max() - m.max()) > 0.1 * max(p.max(), m.max())


def test_astigmatism_swaps_elongation_through_focus() -> None:
    obj = get_objective("40X")
    ab = Aberrations(astig_vertical=0.15)
    dz = 0.5 * obj.dof_um

    def moments(k: np.ndarray) -> tuple[float, float]:
        yy, xx = np.indices(k.shape) - k.shape[0] // 2
        return float(np.sum(k * xx**2)), float(np.sum(k * yy**2))

    sx_p, sy_p = moments(incoherent_psf(obj, dz, ab))
    sx_m, sy_m = moments(incoherent_psf(obj, -dz, ab))
    assert (sx_p - sy_p) * (sx_m - sy_m) < 0
    assert abs(sx_p - sy_p) > 0.1 * (sx_p + sy_p)
    sx0, sy0 = moments(incoherent_psf(obj, 0.0))
    assert sx0 == pytest.approx(sy0, rel=1e-9)


def test_coma_shifts_the_centroid() -> None:
    obj = get_objective("40X")
    k = incoherent_psf(obj, 0.0, Aberrations(coma_horizontal=0.2))
    yy, xx = np.indices(k.shape) - k.shape[0] // 2
    assert abs(np.sum(k * xx)) > 0.1
    assert abs(np.sum(k * yy)) < 1e-6


def test_zernike_orthonormal_on_unit_disc() -> None:
    t = np.linspace(-1, 1, 801)
    x, y = np.meshgrid(t, t)
    rho, theta = np.hypot(x, y), np.arctan2(y, x)
    inside = rho <= 1.0
    zs = np.array([zernike_noll(j, rho[inside], theta[inside]) for j in range(1, 16)])
    gram = zs @ zs.T / inside.sum()
    np.testing.assert_allclose(gram, np.eye(15), atol=1e-2)


def test_noll_indices() -> None:
    expected = {1: (0, 0), 2: (1, 1), 3: (1, -1), 4: (2, 0), 5: (2, -2), 6: (2, 2)}
    expected |= {7: (3, -1), 8: (3, 1), 9: (3, -3), 10: (3, 3), 11: (4, 0)}
    for j, nm in expected.items():
        assert noll_to_nm(j) == nm
    # explicit forms
    rho, theta = np.array([0.3, 0.8]), np.array([0.4, 2.0])
    np.testing.assert_allclose(
        zernike_noll(11, rho, theta), math.sqrt(5) * (6 * rho**4 - 6 * rho**2 + 1)
    )
    np.testing.assert_allclose(
        zernike_noll(7, rho, theta), math.sqrt(8) * (3 * rho**3 - 2 * rho) * np.sin(theta)
    )
    np.testing.assert_allclose(
        zernike_noll(6, rho, theta), math.sqrt(6) * rho**2 * np.cos(2 * theta)
    )


# ---------------------------------------------------------------------------
# Coherent transfer (brightfield)
# ---------------------------------------------------------------------------
def _smooth_phase(shape: tuple[int, int], cutoff: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = np.fft.fft2(rng.standard_normal(shape))
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    spec *= np.hypot(fx, fy) < cutoff
    phi = np.fft.ifft2(spec).real
    return phi / phi.std()


def test_weak_phase_object_contrast_inverts_through_focus() -> None:
    obj = get_objective("40X")
    shape = (128, 128)
    phi = 0.05 * _smooth_phase(shape, cutoff=0.12)
    field_spec = np.fft.fft2(np.exp(1j * phi))

    def image(dz: float) -> np.ndarray:
        return np.abs(np.fft.ifft2(field_spec * coherent_transfer(obj, dz, shape))) ** 2

    dz = 0.5 * obj.dof_um
    focus, plus, minus = image(0.0) - 1, image(dz) - 1, image(-dz) - 1
    assert plus.std() > 10 * focus.std()
    c_plus = np.corrcoef(plus.ravel(), phi.ravel())[0, 1]
    c_minus = np.corrcoef(minus.ravel(), phi.ravel())[0, 1]
    assert c_plus * c_minus < 0
    assert min(abs(c_plus), abs(c_minus)) > 0.5
    assert np.corrcoef(plus.ravel(), minus.ravel())[0, 1] < -0.8


def test_coherent_transfer_properties() -> None:
    obj = get_objective("20X")
    h = coherent_transfer(obj, 2.0, (64, 96))
    assert h.shape == (64, 96) and np.iscomplexobj(h)
    assert abs(h[0, 0] - 1) < 1e-6
    assert np.max(np.abs(h)) <= 1 + 1e-6
    h0 = coherent_transfer(obj, 0.0, (64, 96))
    np.testing.assert_allclose(np.angle(h0[np.abs(h0) > 0.99]), 0.0, atol=1e-6)
    # cut-off NA / lambda
    fy = np.fft.fftfreq(64, obj.pixel_size_um)[:, None]
    fx = np.fft.fftfreq(96, obj.pixel_size_um)[None, :]
    k = np.hypot(fx, fy)
    assert np.all(np.abs(h)[k > obj.na / obj.wavelength_um + 0.05] == 0)
    assert coherent_transfer(obj, 2.0, (64, 96)) is h
    with pytest.raises(InvalidInputError):
        coherent_transfer(obj, 1.0, (0, 5))
    with pytest.raises(InvalidInputError):
        coherent_transfer(obj, 1.0, (8, 8), pixel_size_um=-1.0)


# ---------------------------------------------------------------------------
# Caching and validation
# ---------------------------------------------------------------------------
def test_cache_returns_same_read_only_array() -> None:
    obj = get_objective("20X")
    a = incoherent_psf(obj, 1.2341)
    assert incoherent_psf(obj, 1.2341) is a
    assert incoherent_psf("20x", 1.23410004) is a  # same nanometre, same name
    assert incoherent_psf(obj, 1.2351) is not a
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    b = incoherent_psf(obj, 1.2341, size_px=9)
    assert b.shape == (9, 9) and b.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dz_um": float("nan")},
        {"dz_um": float("inf")},
        {"dz_um": "far"},
        {"dz_um": 1.0, "size_px": -3},
        {"dz_um": 1.0, "size_px": 0},
        {"dz_um": 1.0, "size_px": 8},
        {"dz_um": 1.0, "size_px": 2.5},
    ],
)
def test_bad_input_rejected(kwargs: dict) -> None:
    with pytest.raises(InvalidInputError):
        incoherent_psf("20X", **kwargs)


def test_bad_aberrations_and_zernike_rejected() -> None:
    with pytest.raises(InvalidInputError):
        Aberrations(spherical=float("nan"))
    with pytest.raises(InvalidInputError):
        Aberrations(coma_vertical="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        zernike_noll(0, 0.5, 0.0)
    with pytest.raises(InvalidInputError):
        psf_radius_px("20X", float("nan"))
    with pytest.raises(InvalidInputError):
        born_wolf_psf(np.nan, 0.0, 0.5, 0.5, 1.0)
    assert Aberrations() == Aberrations(spherical=-0.0)
    assert hash(Aberrations(spherical=0.1)) == hash(Aberrations(spherical=0.1))
