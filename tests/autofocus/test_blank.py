"""Blank-field detection (autofocus.blank): illumination and noise only, or a specimen?"""

import warnings

import numpy as np
import pytest

from autofocus.blank import (
    BLANK_RATIO,
    MIN_RATIO,
    blank_ratio,
    is_blank_field,
    neighbour_correlation_ratio,
)


def _field(kind: str, seed: int, shape: tuple[int, int] = (512, 512)) -> np.ndarray:
    """A blank camera frame: shot noise and an offset over an illumination profile."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    electrons = {
        "flat": np.full(shape, 800.0),
        "vignetted": 800.0 * (1.0 - 0.35 * (x**2 + y**2)),
        "ramp": 800.0 * (1.0 + 0.3 * x + 0.1 * y),
        "dim": np.full(shape, 3.0),
    }[kind]
    return (rng.poisson(electrons) + 100).astype(np.uint16)


@pytest.mark.parametrize("kind", ["flat", "vignetted", "ramp", "dim"])
@pytest.mark.parametrize("shape", [(512, 512), (84, 84), (300, 1024)])
def test_illumination_under_noise_is_blank(kind: str, shape: tuple[int, int]) -> None:
    for seed in range(3):
        f = _field(kind, seed, shape)
        assert is_blank_field(f), (kind, shape, seed, blank_ratio(f))
        assert 0.8 < blank_ratio(f) < BLANK_RATIO


def test_hot_pixels_and_cosmic_rays_do_not_make_a_specimen() -> None:
    rng = np.random.default_rng(4)
    f = rng.normal(100.0, 2.0, (1024, 1024))
    idx = rng.integers(0, 1024, size=(60, 2))
    f[idx[:, 0], idx[:, 1]] = 4000.0  # hot pixels, some near edges and in one block
    f[idx[:5, 0], (idx[:5, 1] + 2) % 1024] = 3000.0
    assert is_blank_field(f.astype(np.uint16))


@pytest.mark.parametrize("sigma_px", [0.6, 1.2, 3.0])
def test_one_small_object_is_a_specimen(sigma_px: float) -> None:
    """A single bead (however small, once it spans more than one pixel) is structure."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:1024, :1024]
    spot = 400.0 * np.exp(-((yy - 300) ** 2 + (xx - 401) ** 2) / (2 * sigma_px**2))
    f = rng.normal(100.0, 2.0, (1024, 1024)) + spot
    assert not is_blank_field(f.astype(np.uint16))


def test_fine_pattern_only_the_neighbour_test_sees_is_a_specimen() -> None:
    """A pattern of period 4 px down the columns averages out of every cell and block
    (so the block ratio is that of noise) and does not touch the noise estimate from
    horizontal differences; the column-wise neighbour correlation sees it."""
    rng = np.random.default_rng(6)
    y = np.arange(512)[:, None]
    f = 1000.0 + 10.0 * np.sin(np.pi * y / 2 + 0.3) + rng.normal(0.0, 10.0, (512, 512))
    assert MIN_RATIO < blank_ratio(f) < BLANK_RATIO
    assert neighbour_correlation_ratio(f.T) > 1.2
    assert not is_blank_field(f)
    assert is_blank_field(1000.0 + rng.normal(0.0, 10.0, (512, 512)))


@pytest.mark.parametrize(("axis", "period"), [(1, 3.0), (0, 3.0), (0, 7.0), (1, 2.0)])
def test_fine_periodic_patterns_are_specimens(axis: int, period: float) -> None:
    """Period 3 leaves the second-difference ratio at 1 (both variances equal); a
    pattern across rows inflates the noise estimate, so the block ratio drops below
    MIN_RATIO; one down the columns shows in the cells or the column correlation."""
    rng = np.random.default_rng(9)
    pos = np.arange(2048)[:, None] if axis == 0 else np.arange(2048)[None, :]
    f = 1000.0 + 20.0 * np.sin(2 * np.pi * pos / period + 0.4) + rng.normal(0, 2.0, (2048, 2048))
    assert not is_blank_field(f), (blank_ratio(f), neighbour_correlation_ratio(f))


def test_sparse_in_focus_beads_in_a_large_frame_are_a_specimen() -> None:
    """Small objects are looked for in 4x4 px cells whatever the frame size: 30 faint
    beads (PSF SD 1 px, peak 20 noise SDs) in a 2048 px frame, where blocks are 20 px."""
    rng = np.random.default_rng(10)
    f = rng.normal(100.0, 2.0, (2048, 2048))
    yy, xx = np.mgrid[-6:7, -6:7]
    spot = 40.0 * np.exp(-(yy**2 + xx**2) / 2.0)
    for cy, cx in rng.integers(20, 2028, size=(30, 2)):
        f[cy - 6 : cy + 7, cx - 6 : cx + 7] += spot
    assert not is_blank_field(f.astype(np.uint16))
    one = rng.normal(100.0, 2.0, (2048, 2048))
    one[1000:1013, 700:713] += spot
    assert not is_blank_field(one.astype(np.uint16))


def test_simulated_sparse_beads_at_2048_px_are_scored() -> None:
    """The simulator's faint sparse beads at 20X in focus, 2048x2048 (the case that the
    review of the first version found called blank)."""
    from autofocus.optics import get_objective
    from simulators.camera import CameraModel
    from simulators.series import render_series
    from simulators.specimens import make_specimen

    obj = get_objective("20X")
    spec = make_specimen("beads", seed=10**9 + 5, density=0.2, brightness=0.01)
    f = render_series(spec, obj, [0.0], shape=(2048, 2048), camera=CameraModel(), seed=5)
    assert not is_blank_field(f.frames[0])


def test_corner_touching_bright_pairs_are_not_spikes() -> None:
    rng = np.random.default_rng(11)
    f = rng.normal(100.0, 2.0, (512, 512))
    for cy, cx in rng.integers(4, 508, size=(50, 2)):
        f[cy, cx] += 60.0
        f[cy + 1, cx + 1] += 60.0
    assert not is_blank_field(f)


@pytest.mark.parametrize("size", [84, 128, 256, 512])
def test_one_saturated_hot_pixel_leaves_a_dark_frame_blank(size: int) -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        f = rng.normal(100.0, 2.0, (size, size))
        f[rng.integers(size), rng.integers(size)] = 65535
        assert is_blank_field(f.astype(np.uint16)), (size, seed, blank_ratio(f.astype(np.uint16)))


def test_correlation_ratio_of_noise_hot_pixels_and_structure() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 1.0, (256, 256))
    assert neighbour_correlation_ratio(noise) == pytest.approx(1.0, abs=0.03)
    hot = noise.copy()
    hot[::17, ::13] = 500.0
    assert neighbour_correlation_ratio(hot) == pytest.approx(1.0, abs=0.05)
    smooth = np.cumsum(noise, axis=1)  # a random walk: strongly correlated neighbours
    assert neighbour_correlation_ratio(smooth) > 1.5
    checker = noise + 5.0 * (np.indices((256, 256)).sum(0) % 2)  # Nyquist-limit pattern
    assert neighbour_correlation_ratio(checker) < 0.5
    assert np.isnan(neighbour_correlation_ratio(np.zeros((64, 64))))


def test_constant_tiny_and_extreme_frames() -> None:
    assert blank_ratio(np.full((256, 256), 7, np.uint16)) == 0.0
    assert blank_ratio(np.zeros((20, 500))) == np.inf  # too few blocks to tell
    noise = np.random.default_rng(2).normal(100.0, 2.0, (100, 100))
    for tiny in (noise[:3, :3], noise[:, :5], noise[:31, :], noise[:1, :1]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not is_blank_field(tiny)
    f = _field("flat", 1).astype(np.float64)
    assert is_blank_field(f * 1e-6) and is_blank_field(f * 1e12)  # scale-free
    assert not is_blank_field(f * 1e300)  # overflowing squares: never a blank claim


def test_simulated_specimens_are_not_blank_in_focus_or_far_out() -> None:
    """Every specimen type, at focus and 10 DOF away, is structure; the empty specimen
    (a dark fluorescence field) is blank."""
    from autofocus.optics import get_objective
    from simulators.camera import CameraModel
    from simulators.series import render_series
    from simulators.specimens import make_specimen

    obj = get_objective("20X")
    for name in ("nuclei", "actin", "microtubules", "tissue", "calibration_slide", "beads"):
        series = render_series(
            make_specimen(name, seed=10**9 + 3),
            obj,
            [0.0, 10 * obj.dof_um],
            shape=(256, 256),
            camera=CameraModel(),
            seed=3,
        )
        for f in series.frames:
            assert not is_blank_field(f), (name, blank_ratio(f), neighbour_correlation_ratio(f))
    empty = render_series(
        make_specimen("empty", seed=1), obj, [0.0], shape=(256, 256), camera=CameraModel()
    )
    assert is_blank_field(empty.frames[0])
