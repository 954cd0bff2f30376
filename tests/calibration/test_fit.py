"""Moffat fit of the blur curve on synthetic samples with known parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autofocus.curve import BlurCurve
from autofocus.errors import InvalidInputError
from calibration.fit import fit_blur_curve


@pytest.mark.parametrize(
    ("centre", "gamma", "alpha"), [(0.0, 10.0, 1.0), (3.5, 25.0, 0.6), (-7.0, 6.0, 2.5)]
)
def test_moffat_parameters_recovered(centre: float, gamma: float, alpha: float) -> None:
    true = BlurCurve(
        baseline_px=40.0, amplitude_px=35.0, centre_um=centre, gamma_um=gamma, alpha=alpha
    )
    dz = np.linspace(-80, 80, 65)
    rng = np.random.default_rng(0)
    b = true(dz) + rng.normal(0, 0.1, dz.size)
    fit = fit_blur_curve(dz, b, residual_correction=False)
    assert fit.centre_um == pytest.approx(centre, abs=0.15)
    assert fit.fwhm_um == pytest.approx(true.fwhm_um, rel=0.03)
    assert fit.amplitude_px == pytest.approx(35.0, rel=0.03)
    assert fit.baseline_px == pytest.approx(40.0, abs=0.5)
    assert fit.r2 > 0.999
    assert fit.residual_rms_px == pytest.approx(0.1, rel=0.3)
    assert len(fit.residuals_px) == dz.size
    # the stored curve is centred at its minimum
    assert fit.curve.centre_um == 0.0
    assert fit.curve(0.0) == pytest.approx(fit.curve.min_px)
    assert fit.curve.dz_range_um == pytest.approx((-80 - centre, 80 - centre), abs=0.2)


def test_fwhm_formula() -> None:
    c = BlurCurve(baseline_px=10, amplitude_px=8, gamma_um=3.0, alpha=1.0)
    assert c.fwhm_um == pytest.approx(6.0)  # Lorentzian: 2 gamma
    half = c.min_px + c.amplitude_px / 2
    assert c(c.fwhm_um / 2) == pytest.approx(half)


def test_v_shaped_blur_fits_with_reported_r2() -> None:
    dz = np.linspace(-90, 90, 61)
    v = np.hypot(dz * 0.95, 2.0)
    b = 60 * np.tanh(v / 60)
    fit = fit_blur_curve(dz, b)
    assert 0.99 < fit.r2 <= 1.0
    assert abs(fit.centre_um) < 0.5


def test_unordered_input_and_weights() -> None:
    true = BlurCurve(baseline_px=20.0, amplitude_px=15.0, centre_um=1.0, gamma_um=8, alpha=1.2)
    dz = np.random.default_rng(1).permutation(np.linspace(-40, 40, 41))
    fit = fit_blur_curve(dz, true(dz), sigma_px=np.full(dz.size, 0.2))
    assert fit.centre_um == pytest.approx(1.0, abs=0.05)
    assert fit.residuals_px[0] == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize(
    ("dz", "b"),
    [
        ([0, 1, 2], [1, 0, 1]),
        ([0, 1, 2, 3, 4, 5], [1, 0, math.nan, 1, 2, 3]),
        ([0, 0, 0, 0, 0], [1, 2, 3, 4, 5]),
    ],
)
def test_bad_input(dz: list[float], b: list[float]) -> None:
    with pytest.raises(InvalidInputError):
        fit_blur_curve(dz, b)


def test_residual_correction_follows_a_v_shaped_curve() -> None:
    """A V-shaped, saturating b(z) (what the regressor gives) is matched far better by
    the corrected curve than by the Moffat alone, while the Moffat parameters stay."""
    dz = np.linspace(-60, 60, 49)
    true_b = np.minimum(np.sqrt(3.0**2 + (0.97 * dz) ** 2), 45.0)
    rng = np.random.default_rng(1)
    b = true_b + rng.normal(0, 0.2, dz.size)
    plain = fit_blur_curve(dz, b, residual_correction=False)
    corr = fit_blur_curve(dz, b)
    fine = np.linspace(-55, 55, 221)
    truth = np.minimum(np.sqrt(9 + (0.97 * fine) ** 2), 45.0)
    err_plain = np.abs(plain.curve(fine + plain.centre_um) - truth).mean()
    err_corr = np.abs(corr.curve(fine + corr.centre_um) - truth).mean()
    assert err_corr < 0.5 * err_plain
    assert corr.fwhm_um == pytest.approx(plain.fwhm_um)
    assert corr.curve.residual_sd_px < plain.curve.residual_sd_px
    # the slope is consistent with the values
    h = 1e-3
    num = (corr.curve(10 + h) - corr.curve(10 - h)) / (2 * h)
    assert corr.curve.slope(10.0) == pytest.approx(num, rel=0.1)  # piecewise-linear knots


def test_abs_dz_inverts_the_symmetrised_curve() -> None:
    curve = BlurCurve(
        baseline_px=60.0, amplitude_px=56.0, gamma_um=20.0, alpha=1.0, dz_range_um=(-50.0, 50.0)
    )
    assert curve.abs_dz_um(curve.min_px - 1) == 0.0
    for dz in (5.0, 12.0, 30.0):
        assert curve.abs_dz_um(curve(dz)) == pytest.approx(dz, abs=0.05)
    assert curve.abs_dz_um(1e6) == pytest.approx(50.0)
    assert np.isnan(curve.abs_dz_um(float("nan")))


def test_residual_correction_is_even_about_focus() -> None:
    """Blur is even in defocus: the noise's odd part (and a grid sitting off-centre) must
    not tilt the calibrated curve, or the symmetric flank pair settles to one side."""
    dz = np.arange(-57.0, 63.0, 2.5) + 1.3  # grid off-centre
    rng = np.random.default_rng(4)
    b = np.minimum(np.sqrt(3.0**2 + (0.97 * (dz - 1.0)) ** 2), 45.0) + rng.normal(0, 0.5, dz.size)
    curve = fit_blur_curve(dz, b).curve
    lo, hi = curve.dz_range_um
    d = np.linspace(0.5, min(-lo, hi) - 0.5, 200)
    asym = np.abs(curve(d) - curve(-d))
    assert asym.max() < 0.2  # px, against noise of 0.5 px per sample
    assert abs(curve.abs_dz_um(float(curve(12.0))) - 12.0) < 0.3
