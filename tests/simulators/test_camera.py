"""Tests for simulators.camera: photon-transfer statistics, clipping, dtypes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from autofocus.errors import InvalidInputError
from simulators.camera import CameraModel


def test_defaults_give_a_well_exposed_frame() -> None:
    cam = CameraModel()
    peak_e = cam.photon_flux * cam.exposure_ms
    assert 1000 <= peak_e <= 5000 < cam.full_well_e
    assert cam.dtype == np.uint16 and cam.max_adu == 65535


def test_shot_noise_statistics_match_poisson_plus_read_noise() -> None:
    cam = CameraModel(photon_flux=50.0, exposure_ms=10.0, read_noise_e=3.0, gain_adu_per_e=0.5)
    signal = np.full((512, 512), 0.8)
    lam = 0.8 * 50.0 * 10.0  # 400 e-
    adu = cam.expose(signal, np.random.default_rng(0)).astype(np.float64)
    electrons = (adu - cam.offset_adu) / cam.gain_adu_per_e
    assert electrons.mean() == pytest.approx(lam, rel=0.01)
    expected_var = cam.gain_adu_per_e**2 * (lam + cam.read_noise_e**2) + 1 / 12  # + rounding
    assert adu.var() == pytest.approx(expected_var, rel=0.03)
    # a pure Poisson model (no read noise) has var = mean in electrons
    cam0 = CameraModel(photon_flux=50.0, exposure_ms=10.0, read_noise_e=0.0, gain_adu_per_e=1.0)
    e0 = cam0.expose(signal, np.random.default_rng(1)).astype(np.float64) - cam0.offset_adu
    assert e0.var() == pytest.approx(e0.mean(), rel=0.03)


def test_expected_adu_is_the_noise_free_mean() -> None:
    cam = CameraModel(gain_adu_per_e=2.0, offset_adu=50.0)
    s = np.array([[0.0, 0.5], [1.0, 2.0]])
    np.testing.assert_allclose(cam.expected_adu(s), 50.0 + 2.0 * s * 2000.0)
    frame = cam.expose(np.full((256, 256), 0.5), np.random.default_rng(3))
    assert frame.mean() == pytest.approx(float(cam.expected_adu(0.5)), rel=0.002)


def test_zero_signal_sits_at_the_offset() -> None:
    cam = CameraModel(read_noise_e=0.0, offset_adu=100.0)
    frame = cam.expose(np.zeros((64, 64)), np.random.default_rng(0))
    assert np.all(frame == 100)


def test_saturation_clips_at_full_well_and_max_adu() -> None:
    # full well below the ADU range: clipped at full_well * gain + offset
    cam = CameraModel(full_well_e=1000.0, read_noise_e=0.0, gain_adu_per_e=1.0)
    frame = cam.expose(np.full((32, 32), 50.0), np.random.default_rng(0))
    assert np.all(frame == 1000 + 100)
    # ADU range below the full well: clipped at 2**bit_depth - 1
    cam12 = CameraModel(bit_depth=12, gain_adu_per_e=1.0)
    frame = cam12.expose(np.full((32, 32), 10.0), np.random.default_rng(0))
    assert frame.dtype == np.uint16 and np.all(frame == 4095)
    assert cam12.expected_adu(10.0) == 4095


def test_bit_depth_8_gives_uint8() -> None:
    cam = CameraModel(bit_depth=8, offset_adu=10.0, gain_adu_per_e=0.1)
    frame = cam.expose(np.linspace(0, 3, 64 * 64).reshape(64, 64), np.random.default_rng(0))
    assert frame.dtype == np.uint8
    assert frame.max() == 255 and frame.min() >= 0


def test_gain_and_offset_scale_the_mean() -> None:
    s = np.full((256, 256), 0.3)
    m1 = CameraModel(gain_adu_per_e=1.0, offset_adu=100.0).expose(s, 7).mean()
    m2 = CameraModel(gain_adu_per_e=2.0, offset_adu=300.0).expose(s, 7).mean()
    assert (m1 - 100.0) == pytest.approx(600.0, rel=0.01)
    assert (m2 - 300.0) == pytest.approx(2 * (m1 - 100.0), rel=0.01)


def test_exposure_scales_the_signal() -> None:
    s = np.full((128, 128), 0.5)
    short = CameraModel(exposure_ms=5.0).expose(s, 0).mean() - 100.0
    long = CameraModel(exposure_ms=20.0).expose(s, 0).mean() - 100.0
    assert long / short == pytest.approx(4.0, rel=0.01)


def test_deterministic_under_a_seeded_generator() -> None:
    cam = CameraModel()
    s = np.random.default_rng(5).uniform(0, 1, (64, 80))
    a = cam.expose(s, np.random.default_rng(42))
    b = cam.expose(s, np.random.default_rng(42))
    c = cam.expose(s, np.random.default_rng(43))
    assert a.shape == (64, 80)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


@pytest.mark.parametrize(
    "signal",
    [np.array([[0.1, -0.01]]), np.array([[np.nan, 1.0]]), np.array([["a"]]), np.array([np.inf])],
)
def test_bad_signal_is_rejected(signal: np.ndarray) -> None:
    with pytest.raises(InvalidInputError):
        CameraModel().expose(signal, np.random.default_rng(0))


def test_bad_rng_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        CameraModel().expose(np.zeros((4, 4)), "seed")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bit_depth": 7},
        {"bit_depth": 17},
        {"photon_flux": 0},
        {"exposure_ms": -1},
        {"read_noise_e": -0.5},
        {"gain_adu_per_e": 0},
        {"full_well_e": 0},
        {"offset_adu": -5},
        {"unknown_field": 1},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        CameraModel(**kwargs)


def test_assignment_is_validated() -> None:
    cam = CameraModel()
    cam.exposure_ms = 25.0
    assert cam.exposure_ms == 25.0
    with pytest.raises(ValidationError):
        cam.exposure_ms = -1.0
