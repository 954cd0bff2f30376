"""Signed contrast of phase objects: signatures, their correlation, the zero crossing."""

from __future__ import annotations

import numpy as np
import pytest

from autofocus.contrast import (
    contrast_signature,
    newton_step_um,
    signature_correlation,
    zero_crossing_um,
)


def test_signature_is_block_means_over_the_mean_and_gain_invariant() -> None:
    rng = np.random.default_rng(0)
    frame = rng.uniform(50, 150, (256, 320)).astype(np.uint16)
    sig = contrast_signature(frame)
    assert sig is not None and sig.shape == (32, 40)  # 8 px blocks (256 // 32)
    blocks = frame.astype(np.float64).reshape(32, 8, 40, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(sig, blocks / blocks.mean() - 1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(contrast_signature(frame.astype(np.float32) * 7.5), sig, atol=1e-5)


@pytest.mark.parametrize(
    "frame",
    [
        np.ones((8, 8)),  # fewer than 4 x 4 blocks of 4 px
        np.zeros((64, 64)),  # mean 0
        np.full((64, 64), np.nan),
        np.ones((64, 64, 3)),  # RGB
        np.array([["a"] * 64] * 64),
    ],
)
def test_signature_of_a_frame_without_usable_contrast_is_none(frame: np.ndarray) -> None:
    assert contrast_signature(frame) is None


def test_correlation_sign_shape_and_flat() -> None:
    a = np.random.default_rng(1).normal(size=(8, 8))
    assert signature_correlation(a, -3 * a) == pytest.approx(-1.0)
    assert signature_correlation(a, a + 2) == pytest.approx(1.0)
    assert np.isnan(signature_correlation(a, np.ones((8, 8))))
    assert np.isnan(signature_correlation(a, a[:4]))


def test_zero_crossing_and_newton_step_of_linear_contrast() -> None:
    """sig(z) = (z - z*) L: two images anywhere give z* exactly; one image and the
    slope give the step to z*."""
    rng = np.random.default_rng(2)
    slope = rng.normal(size=(16, 16))
    z_true = 3.7

    def sig(z: float) -> np.ndarray:
        return (z - z_true) * slope

    est, beta = zero_crossing_um(np.array([-20.0, 11.0]), np.stack([sig(-20.0), sig(11.0)]))
    assert est == pytest.approx(z_true)
    assert newton_step_um(sig(5.0), beta) == pytest.approx(z_true - 5.0)
    # same-side images work too (in the linear regime)
    est2, _ = zero_crossing_um(np.array([10.0, 30.0]), np.stack([sig(10.0), sig(30.0)]))
    assert est2 == pytest.approx(z_true)
    with pytest.raises(ValueError):
        zero_crossing_um(np.array([1.0, 1.0]), np.stack([sig(1.0), sig(1.0)]))
    with pytest.raises(ValueError):
        zero_crossing_um(np.array([1.0, 2.0]), np.zeros((2, 4, 4)))


def _rendered(specimen: str, dz_um: float) -> np.ndarray:
    from autofocus.optics import get_objective
    from simulators.render import render_field
    from simulators.specimens import make_specimen

    obj = get_objective("10X")
    return render_field(make_specimen(specimen, seed=3), obj, dz_um, 0.0, 0.0, (128, 128))


@pytest.mark.parametrize("dz_um", [8.0, 30.0])
def test_simulated_phase_object_inverts_and_fluorescence_does_not(dz_um: float) -> None:
    """Brightfield phase object: the images at -dz and +dz are anti-correlated and their
    zero crossing is focus; a fluorescent specimen's are positively correlated."""
    below, above = (contrast_signature(_rendered("phase", s * dz_um)) for s in (-1, 1))
    assert below is not None and above is not None
    assert signature_correlation(below, above) < -0.8
    est, _ = zero_crossing_um(np.array([-dz_um, dz_um]), np.stack([below, above]))
    assert abs(est) < 0.25 * 7.9  # DOF/4 of the 10X objective
    f_below, f_above = (contrast_signature(_rendered("tissue", s * dz_um)) for s in (-1, 1))
    assert signature_correlation(f_below, f_above) > 0.5
