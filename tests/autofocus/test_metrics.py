"""Tests for autofocus.metrics: hand-computed values, invariances, blur monotonicity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from autofocus import metrics
from autofocus.errors import InvalidFrameError, InvalidInputError, UnknownNameError
from autofocus.metrics import METRICS, centre_crop, get_metric, metric_names

ALL_NAMES = sorted(METRICS)
RATIO_METRICS = ("edges", "std_dev", "normalized_variance")


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """Seeded random texture (white noise smoothed by a 1 px Gaussian), mean 1000, sd 100."""
    rng = np.random.default_rng(12345)
    tex = gaussian_filter(rng.normal(size=(96, 128)), 1.0)
    return 1000.0 + 100.0 * tex / tex.std()


def power_law_texture(shape: tuple[int, int], alpha: float, seed: int) -> np.ndarray:
    """Random field whose power spectrum is proportional to |f|^-alpha (f in cycles/px)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    amp = f ** (-alpha / 2.0)
    amp[0, 0] = 0.0
    phase = np.exp(2j * np.pi * rng.random((h, w)))
    field = np.fft.ifft2(amp * phase).real
    return 500.0 + 50.0 * field / field.std()


# --------------------------------------------------------------------------- registry


def test_registry_names_and_lookup() -> None:
    expected = {
        "edges",
        "std_dev",
        "normalized_variance",
        "redondo",
        "vollath_f4",
        "vollath_f5",
        "tenengrad",
        "fft_bandpass",
        "variance_of_laplacian",
        "plls",
    }
    assert set(metric_names()) == expected
    assert metric_names() == list(METRICS)
    for name in expected:
        assert get_metric(name) is METRICS[name]
        assert get_metric(name) is getattr(metrics, name)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_metric("brenner")
    message = str(info.value)
    assert "brenner" in message
    for name in METRICS:
        assert name in message
    with pytest.raises(KeyError):  # UnknownNameError is also a KeyError
        get_metric("sharpness")


# --------------------------------------------------------------------------- hand values


def test_vollath_f4_step_by_hand() -> None:
    # every row is [0, 0, 5, 5]: sum I(x)I(x+1) = 25, sum I(x)I(x+2) = 0 -> 25 per row
    frame = np.tile(np.array([0.0, 0.0, 5.0, 5.0]), (4, 1))
    assert metrics.vollath_f4(frame) == pytest.approx(100.0, abs=1e-12)
    # rows [1, 2, 3, 4]: 2 + 6 + 12 = 20, 3 + 8 = 11 -> 9 per row, 3 rows
    ramp = np.tile(np.arange(1.0, 5.0), (3, 1))
    assert metrics.vollath_f4(ramp) == pytest.approx(27.0, abs=1e-12)


def test_vollath_f4_is_along_x_only() -> None:
    frame = np.tile(np.arange(1.0, 5.0)[:, None], (1, 3))  # rows 1,1,1 / 2,2,2 / ...
    # each row of constant c: (W-1) c^2 - (W-2) c^2 = c^2; sum over rows 1+4+9+16
    assert metrics.vollath_f4(frame) == pytest.approx(30.0, abs=1e-12)


def test_vollath_f5_by_hand() -> None:
    frame = np.array([[1.0, 2.0], [3.0, 4.0]])
    # sum I(x)I(x+1) = 1*2 + 3*4 = 14; (W-1) H mu^2 = 1 * 2 * 2.5^2 = 12.5
    assert metrics.vollath_f5(frame) == pytest.approx(1.5, abs=1e-12)
    assert metrics.vollath_f5(np.full((5, 7), 3.0)) == pytest.approx(0.0, abs=1e-9)


def test_tenengrad_ramp_and_step_by_hand() -> None:
    ramp = np.tile(np.arange(4.0), (4, 1))  # I = x
    # interior 2x2; Gx = (1 + 2 + 1) * (I(x+1) - I(x-1)) = 8, Gy = 0 -> 4 * 64
    assert metrics.tenengrad(ramp) == pytest.approx(256.0, abs=1e-12)
    step = np.zeros((5, 5))
    step[:, 2:] = 10.0
    # interior columns x = 1, 2, 3: Gx = 40, 40, 0; 3 interior rows -> 3 * 2 * 1600
    assert metrics.tenengrad(step) == pytest.approx(9600.0, abs=1e-9)
    assert metrics.tenengrad(step.T) == pytest.approx(9600.0, abs=1e-9)


def test_edges_ramp_by_hand() -> None:
    ramp = np.tile(np.arange(4.0) + 1.0, (4, 1))  # I = x + 1, mean 2.5
    # Sobel magnitude on the interior is 8 everywhere -> 8 / 2.5
    assert metrics.edges(ramp) == pytest.approx(3.2, rel=1e-12)


def test_redondo_stencil_by_hand() -> None:
    ramp_x = np.tile(np.arange(3.0), (3, 1))  # I = x: p = 0 + 2 + 1 + 1 - 4 * 0 = 4
    assert metrics.redondo(ramp_x) == pytest.approx(16.0, abs=1e-12)
    ramp_y = ramp_x.T  # I = y: p = 1 + 1 + 0 + 2 - 4 * 1 = 0
    assert metrics.redondo(ramp_y) == pytest.approx(0.0, abs=1e-12)
    big = np.tile(np.arange(6.0) * 0.5, (5, 1))  # slope 0.5 -> p = 2 on 3x4 interior
    assert metrics.redondo(big) == pytest.approx(12 * 4.0, abs=1e-12)


def test_std_dev_and_normalized_variance_by_hand() -> None:
    frame = np.array([[2.0, 6.0], [2.0, 6.0]])  # mu 4, sigma 2 (ddof 0)
    assert metrics.std_dev(frame) == pytest.approx(0.5)
    assert metrics.normalized_variance(frame) == pytest.approx(1.0)


def test_variance_of_laplacian_checkerboard_by_hand() -> None:
    y, x = np.mgrid[:4, :4]
    board = 10.0 + (-1.0) ** (x + y)  # Laplacian = -8 on +1 squares, +8 on -1 squares
    assert metrics.variance_of_laplacian(board) == pytest.approx(64.0, abs=1e-12)
    assert metrics.variance_of_laplacian(x**2 + 3.0 * y) == pytest.approx(0.0, abs=1e-12)


def test_fft_bandpass_white_noise_power_is_its_variance() -> None:
    rng = np.random.default_rng(7)
    # per-frame scatter of the band mean is about 3 % at 512x512 (Hann-correlated samples)
    frame = 100.0 + rng.normal(0.0, 3.0, size=(512, 512))
    assert metrics.fft_bandpass(frame) == pytest.approx(9.0, rel=0.1)


def test_fft_bandpass_sees_only_its_band() -> None:
    x = np.mgrid[:128, :128][1]
    # 0.08 of Nyquist = 0.04 cycles/px (in band); 0.5 of Nyquist = 0.25 cycles/px (out)
    in_band = 10.0 + np.cos(2 * np.pi * 0.04 * x)
    out_band = 10.0 + np.cos(2 * np.pi * 0.25 * x)
    assert metrics.fft_bandpass(in_band) > 1e3 * metrics.fft_bandpass(out_band)


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_plls_recovers_power_law_slope(alpha: float) -> None:
    frame = power_law_texture((256, 256), alpha, seed=3)
    assert metrics.plls(frame) == pytest.approx(-alpha, abs=0.25)


def test_plls_white_noise_is_flat() -> None:
    rng = np.random.default_rng(8)
    assert abs(metrics.plls(50.0 + rng.normal(size=(256, 256)))) < 0.15


# --------------------------------------------------------------------------- invariances


def test_gain_invariance_and_scaling(texture: np.ndarray) -> None:
    g = 3.7
    scaled = g * texture
    assert metrics.edges(scaled) == pytest.approx(metrics.edges(texture), rel=1e-12)
    assert metrics.std_dev(scaled) == pytest.approx(metrics.std_dev(texture), rel=1e-12)
    assert metrics.normalized_variance(scaled) == pytest.approx(
        g * metrics.normalized_variance(texture), rel=1e-12
    )
    for name in ("tenengrad", "redondo", "variance_of_laplacian", "vollath_f5", "fft_bandpass"):
        f = METRICS[name]
        assert f(scaled) == pytest.approx(g**2 * f(texture), rel=1e-9), name
    assert metrics.plls(scaled) == pytest.approx(metrics.plls(texture), abs=1e-9)


def test_offset_changes_ratio_metrics_but_not_gradients(texture: np.ndarray) -> None:
    shifted = texture + 500.0
    assert metrics.std_dev(shifted) < metrics.std_dev(texture)
    for name in ("tenengrad", "redondo", "variance_of_laplacian", "fft_bandpass", "plls"):
        f = METRICS[name]
        assert f(shifted) == pytest.approx(f(texture), rel=1e-9, abs=1e-9), name


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_metric_decreases_with_blur(name: str, texture: np.ndarray) -> None:
    f = get_metric(name)
    values = [f(gaussian_filter(texture, s)) for s in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)]
    assert all(math.isfinite(v) for v in values)
    assert all(a > b for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize("name", ALL_NAMES)
def test_integer_frames_match_float(name: str, texture: np.ndarray) -> None:
    as_uint16 = np.round(texture).astype(np.uint16)
    f = get_metric(name)
    value = f(as_uint16)
    assert isinstance(value, float)
    assert value == pytest.approx(f(as_uint16.astype(np.float64)), rel=1e-12)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("name", ALL_NAMES)
def test_constant_frames_are_finite(name: str) -> None:
    f = get_metric(name)
    for value in (0.0, 7.0):
        result = f(np.full((32, 32), value))
        assert isinstance(result, float)
        assert math.isfinite(result)
    assert f(np.zeros((32, 32), dtype=np.uint16)) == 0.0


@pytest.mark.parametrize("name", RATIO_METRICS)
def test_ratio_metrics_return_zero_without_positive_mean(name: str, texture: np.ndarray) -> None:
    f = get_metric(name)
    assert f(np.full((16, 16), 5.0)) == 0.0
    assert f(texture - 2000.0) == 0.0


@pytest.mark.parametrize("name", ALL_NAMES)
def test_bad_frames_raise(name: str) -> None:
    f = get_metric(name)
    bad = np.ones((32, 32))
    bad[3, 4] = np.nan
    with pytest.raises(InvalidFrameError):
        f(bad)
    bad[3, 4] = np.inf
    with pytest.raises(InvalidFrameError):
        f(bad)
    with pytest.raises(InvalidFrameError):
        f(np.ones((32, 32, 3)))
    with pytest.raises(InvalidFrameError):
        f(np.ones(64))
    with pytest.raises(InvalidFrameError):
        f(np.ones((1, 1)))


@pytest.mark.parametrize("name", ["fft_bandpass", "plls"])
def test_spectral_metrics_need_16x16(name: str) -> None:
    f = get_metric(name)
    with pytest.raises(InvalidFrameError):
        f(np.arange(15 * 40, dtype=float).reshape(15, 40))
    assert math.isfinite(f(np.random.default_rng(0).random((16, 16))))


# --------------------------------------------------------------------------- crops


def test_centre_crop_shape_and_position() -> None:
    frame = np.arange(10 * 20).reshape(10, 20)
    crop = centre_crop(frame, 0.5)
    assert crop.shape == (5, 10)
    assert crop[0, 0] == frame[2, 5]
    assert centre_crop(frame, 1.0) is frame
    assert centre_crop(frame, 1e-6).shape == (1, 1)
    for bad in (0.0, -0.5, 1.5, float("nan"), "half"):
        with pytest.raises(InvalidInputError):
            centre_crop(frame, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_crop_fraction_matches_centre_crop(name: str, texture: np.ndarray) -> None:
    f = METRICS[name]
    assert f(texture, crop_fraction=0.5) == pytest.approx(f(centre_crop(texture, 0.5)), rel=1e-12)


def test_crop_fraction_ignores_the_border() -> None:
    rng = np.random.default_rng(2)
    frame = np.full((64, 64), 100.0)
    frame[:8] += 50.0 * rng.random((8, 64))  # texture only in a border strip
    assert metrics.tenengrad(frame) > 0.0
    assert metrics.tenengrad(frame, crop_fraction=0.5) == 0.0
    with pytest.raises(InvalidFrameError):
        metrics.plls(frame, crop_fraction=0.2)  # 13x13 crop is below the 16x16 minimum
