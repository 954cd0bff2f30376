"""Signed contrast of phase objects: signatures, their correlation, signed amplitudes."""

from __future__ import annotations

import numpy as np
import pytest

from autofocus.contrast import contrast_amplitudes, contrast_signature, signature_correlation


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


def test_amplitudes_are_signed_contrast_along_the_shared_pattern() -> None:
    """sig(z) = (z - z*) L + noise: the amplitudes are proportional to z - z*, whatever
    the pattern's sign, and grow with z; the faint images near focus keep their sign."""
    rng = np.random.default_rng(2)
    pattern = rng.normal(size=(32, 32))
    z = np.array([-40.0, -12.0, 3.5, 4.0, 30.0])
    z_true = 3.7
    sigs = np.stack([(zi - z_true) * pattern + rng.normal(0, 0.5, (32, 32)) for zi in z])
    c = contrast_amplitudes(sigs, z)
    np.testing.assert_allclose(c / np.linalg.norm(pattern), z - z_true, atol=0.05)
    np.testing.assert_allclose(contrast_amplitudes(-sigs, z), c)
    assert np.all(contrast_amplitudes(np.zeros((3, 4, 4)), z[:3]) == 0)


def _rendered(specimen: str, dz_um: float) -> np.ndarray:
    from autofocus.optics import get_objective
    from simulators.render import render_field
    from simulators.specimens import make_specimen

    obj = get_objective("10X")
    return render_field(make_specimen(specimen, seed=3), obj, dz_um, 0.0, 0.0, (128, 128))


@pytest.mark.parametrize("dz_um", [8.0, 30.0])
def test_simulated_phase_object_inverts_and_fluorescence_does_not(dz_um: float) -> None:
    """Brightfield phase object: the images at -dz and +dz are anti-correlated, with
    amplitudes of opposite sign and equal size (focus half-way); a fluorescent
    specimen's are positively correlated."""
    below, above = (contrast_signature(_rendered("phase", s * dz_um)) for s in (-1, 1))
    assert below is not None and above is not None
    assert signature_correlation(below, above) < -0.8
    c_lo, c_hi = contrast_amplitudes(np.stack([below, above]), np.array([-dz_um, dz_um]))
    est = -dz_um - c_lo * 2 * dz_um / (c_hi - c_lo)  # interpolated sign change
    assert c_lo < 0 < c_hi and abs(est) < 0.25 * 7.9  # DOF/4 of the 10X objective
    f_below, f_above = (contrast_signature(_rendered("tissue", s * dz_um)) for s in (-1, 1))
    assert signature_correlation(f_below, f_above) > 0.5
