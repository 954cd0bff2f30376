"""The level <-> blur <-> dz mapping of :mod:`autofocus.optics`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import j1

from autofocus.errors import InvalidInputError
from autofocus.optics import LEVEL_STEP_PX, Objective, blur_px_per_um, get_objective


def _objective(na: float, n: float = 1.0, sampling: float = 1.0) -> Objective:
    lam = 0.52
    pixel_um = lam / (2 * na) * sampling
    return Objective(
        name="t", magnification=20, na=na, immersion_index=n,
        camera_pixel_size_um=pixel_um * 20, wavelength_um=lam,
    )  # fmt: skip


def test_blur_slope_is_tan_theta_for_small_apertures() -> None:
    o = _objective(0.02)
    assert o.blur_slope == pytest.approx(math.tan(o.half_angle_rad), rel=1e-4)


@pytest.mark.parametrize(("na", "n"), [(0.3, 1.0), (0.75, 1.0), (0.95, 1.0), (1.4, 1.515)])
def test_blur_slope_is_the_mean_ray_radius_of_a_uniform_disc(na: float, n: float) -> None:
    # rays from a pupil uniform in rho (sin(theta_ray) = rho NA / n) land at dz tan(theta_ray);
    # a uniform disc of diameter D has mean radius D / 3, so t = 1.5 <tan(theta_ray)>
    rho = (np.arange(200_000) + 0.5) / 200_000
    s = rho * na / n
    mean_tan = float(np.mean(2 * rho * s / np.sqrt(1 - s * s)))
    assert _objective(na, n).blur_slope == pytest.approx(1.5 * mean_tan, rel=1e-6)


def test_blur_slope_hand_computed_at_na_0_95_in_air() -> None:
    t = math.asin(0.95)
    expected = 1.5 * (t - 0.95 * math.cos(t)) / 0.95**2
    o = _objective(0.95)
    assert o.blur_slope == pytest.approx(expected)
    assert o.blur_slope / math.tan(t) == pytest.approx(0.523, abs=0.001)


@pytest.mark.parametrize("name", ["10X", "20X", "40X", "10x-0.3-air", "60x-1.4-oil"])
def test_level_and_dz_invert_each_other(name: str) -> None:
    o = get_objective(name)
    levels = np.linspace(0, 10, 21)
    np.testing.assert_allclose(o.dz_to_level(o.level_to_dz_um(levels)), levels, atol=1e-9)
    d_geo = 2 * o.level_to_dz_um(4.0) * o.blur_slope / o.pixel_size_um
    d = math.hypot(d_geo, o.diffraction_diameter_px)
    assert (d - o.diffraction_diameter_px) / LEVEL_STEP_PX == pytest.approx(4.0)
    with pytest.raises(InvalidInputError):
        o.level_to_dz_um(-1.0)


def _disc_fit_diameter_px(o: Objective, dz_um: float) -> float:
    """Diameter of the uniform disc whose transfer function best fits the simulated PSF's."""
    from simulators.psf import incoherent_psf

    k = incoherent_psf(o, dz_um, size_px=129)
    mtf = np.abs(np.fft.fft2(np.fft.ifftshift(k))).ravel()
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(129), np.fft.fftfreq(129))).ravel()
    best_err, best_d = math.inf, 0.0
    for d in np.linspace(3.0, 40.0, 371):
        m = f < 2.5 / d
        x = np.pi * d * f[m]
        disc = np.abs(np.where(x == 0, 1.0, 2 * j1(x) / np.where(x == 0, 1.0, x)))
        err = float(np.mean((disc - mtf[m]) ** 2))
        if err < best_err:
            best_err, best_d = err, float(d)
    return best_d


def test_simulated_blur_follows_the_blur_slope_not_the_marginal_ray() -> None:
    # same marginal-ray diameter (24 px) at NA 0.3 and 0.9: the simulator's high-NA blur looks
    # much smaller, by about the ratio of the blur slopes
    low, high = _objective(0.3), _objective(0.9)
    fits = [
        _disc_fit_diameter_px(o, 24.0 * o.pixel_size_um / (2 * math.tan(o.half_angle_rad)))
        for o in (low, high)
    ]
    seen = fits[1] / fits[0]
    slope_ratio = (high.blur_slope / math.tan(high.half_angle_rad)) / (
        low.blur_slope / math.tan(low.half_angle_rad)
    )
    assert seen == pytest.approx(slope_ratio, rel=0.1)
    assert seen < 0.8  # the marginal ray (ratio 1) is far off


@pytest.mark.parametrize(("name", "ratio"), [("10x-0.3-air", 0.9810), ("60x-1.4-oil", 0.5997)])
def test_blur_px_per_um_mean_ray_against_marginal(name: str, ratio: float) -> None:
    obj = get_objective(name)
    marginal = blur_px_per_um(obj, "marginal")
    assert marginal == pytest.approx(2 * math.tan(obj.half_angle_rad) / obj.pixel_size_um)
    assert blur_px_per_um(obj, "mean") == pytest.approx(2 * obj.blur_slope / obj.pixel_size_um)
    assert blur_px_per_um(obj, "mean") / marginal == pytest.approx(ratio, abs=1e-3)
    assert blur_px_per_um(obj) == marginal  # the default: the cards written before the choice


@pytest.mark.parametrize("bad", ["chief", "", None, 1])
def test_blur_ray_is_marginal_or_mean(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="blur_ray"):
        blur_px_per_um(get_objective("20X"), bad)  # type: ignore[arg-type]


def test_parse_objective_takes_a_preset_fields_or_a_json_file(tmp_path) -> None:
    from autofocus.optics import parse_objective

    assert parse_objective(" 10x ") is get_objective("10X")
    oil = parse_objective("magnification=100, na=1.45, immersion_index=1.515")
    assert (oil.name, oil.magnification, oil.na, oil.immersion_index) == (
        "custom",
        100.0,
        1.45,
        1.515,
    )
    assert oil.camera_pixel_size_um == 6.5 and oil.binning == 1  # the defaults
    named = parse_objective("name=my40x,magnification=40,na=0.95,binning=2")
    assert named.name == "my40x" and named.pixel_size_um == pytest.approx(6.5 * 2 / 40)
    f = tmp_path / "obj.json"
    f.write_text(named.model_dump_json())
    assert parse_objective(str(f)) == named
    odd = tmp_path / "na=0.95.json"  # a file, even with '=' in its name
    odd.write_text(named.model_dump_json())
    assert parse_objective(str(odd)) == named


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "unknown objective"),
        ("100x", "unknown objective"),
        ("nosuch.json", "unknown objective"),
        ("na=0.5", "magnification: Field required"),
        ("magnification=100,na=1.45", "smaller than the immersion index"),
        ("magnification=10,na=x", "na: Input should be a valid number"),
        ("magnification=10,na=0.3,binning=1.5", "binning"),
        ("magnification=10,na=0.3,colour=red", "colour: Extra inputs"),
        ("magnification=10,na=0.3,na=0.4", "given twice"),
        ("magnification=10,na", "not key=value"),
        ("magnification=10,na=nan", "na"),
    ],
)
def test_parse_objective_says_what_is_wrong(text: str, why: str) -> None:
    from autofocus.errors import UnknownNameError
    from autofocus.optics import parse_objective

    err = UnknownNameError if why == "unknown objective" else InvalidInputError
    with pytest.raises(err, match=why):
        parse_objective(text)


def test_parse_objective_refuses_a_broken_json_file(tmp_path) -> None:
    from autofocus.optics import parse_objective

    f = tmp_path / "obj.json"
    f.write_text('{"magnification": 10,')
    with pytest.raises(InvalidInputError, match="invalid"):
        parse_objective(str(f))
    with pytest.raises(InvalidInputError, match="as text"):
        parse_objective(10)  # type: ignore[arg-type]
