"""Blank-field detection (autofocus.blank): illumination and noise only, or a specimen?"""

import numpy as np
import pytest

from autofocus.blank import (
    BLANK_RATIO,
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


def test_fine_texture_with_flat_block_means_is_a_specimen() -> None:
    """Structure finer than a block averages out of the block means; the neighbour test
    sees it: a dense, faint, in-focus texture correlated over a couple of pixels."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(6)
    texture = gaussian_filter(rng.normal(size=(512, 512)), 1.0)
    f = 1000.0 + 20.0 * texture / texture.std() + rng.normal(0.0, 10.0, (512, 512))
    # block means barely see it, the neighbour correlation does
    assert neighbour_correlation_ratio(f) > 1.2
    assert not is_blank_field(f)


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
