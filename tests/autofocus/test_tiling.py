import warnings

import numpy as np
import pytest

from autofocus.errors import InvalidFrameError
from autofocus.tiling import TileGrid, extract_patches, normalise_patches, tile_starts


@pytest.mark.parametrize("length", [84, 85, 100, 167, 168, 169, 512, 1000, 2048])
@pytest.mark.parametrize("patch", [84, 128])
def test_tiles_cover_every_pixel(length: int, patch: int) -> None:
    if length < patch:
        with pytest.raises(InvalidFrameError):
            tile_starts(length, patch)
        return
    starts = tile_starts(length, patch)
    assert starts[0] == 0 and starts[-1] == length - patch
    assert starts.size == -(-length // patch)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered.all()


def test_grid_coverage_2d_and_extraction() -> None:
    frame = np.arange(300 * 190, dtype=np.float32).reshape(300, 190)
    grid = TileGrid.for_shape(frame.shape, 84)
    assert grid.shape == (4, 3)
    assert grid.coverage(frame.shape).min() >= 1
    patches = extract_patches(frame, grid)
    assert patches.shape == (12, 84, 84)
    # last patch is the bottom-right corner exactly
    np.testing.assert_array_equal(patches[-1], frame[-84:, -84:])
    np.testing.assert_array_equal(patches[1], frame[:84, grid.xs[1] : grid.xs[1] + 84])


def test_normalisation_is_gain_and_offset_invariant() -> None:
    rng = np.random.default_rng(1)
    p = rng.poisson(50, size=(5, 84, 84)).astype(np.float32)
    a, _ = normalise_patches(p)
    b, _ = normalise_patches(p * 7.3 + 1234.0)
    np.testing.assert_allclose(a, b, atol=2e-4)
    assert np.allclose(a.mean(axis=(1, 2)), 0, atol=1e-5)
    assert np.allclose(a.std(axis=(1, 2)), 1, atol=1e-4)


def test_constant_patches_have_no_signal() -> None:
    p = np.stack([np.full((84, 84), 65535.0), np.zeros((84, 84)), np.eye(84) * 3])
    out, has = normalise_patches(p)
    assert has.tolist() == [False, False, True]
    assert np.all(out[:2] == 0)


def _float64_reference(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = p.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    centred = (p - mean).astype(np.float32)
    std = np.sqrt(np.mean(np.square(centred, dtype=np.float64), axis=(1, 2), keepdims=True))
    ok = std > 1e-6 * np.maximum(np.abs(mean), 1.0)
    ref = centred / np.where(ok, std, 1.0).astype(np.float32)
    ref[~ok.ravel()] = 0.0
    return ref, ok.ravel()


@pytest.mark.parametrize(
    ("offset", "gain"), [(950.0, 3.7), (60000.0, 0.01), (3e6, 0.5), (1e-3, 1e-5)]
)
def test_normalisation_matches_the_float64_reference(offset: float, gain: float) -> None:
    """The shipped models were trained with this float64 formulation (``exact=True``,
    bit for bit, so that the recorded recipes reproduce them); inference's faster
    rounding is within ~1 float32 ulp of it, even for a faint texture on a large offset
    (Yang et al.'s code normalised differently in training)."""
    rng = np.random.default_rng(7)
    p = (rng.poisson(300, size=(20, 84, 84)) * gain + offset).astype(np.float32)
    p[3] = np.float32(offset)  # a constant patch
    ref, ok = _float64_reference(p)
    exact, has_exact = normalise_patches(p, exact=True)
    assert np.array_equal(exact, ref)
    assert has_exact.tolist() == ok.tolist()
    out, has = normalise_patches(p)
    assert has.tolist() == ok.tolist()
    assert not has[3] and np.all(out[3] == 0.0)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 1e19, 1e30, 2e36])
def test_normalisation_of_huge_and_tiny_float_values(scale: float) -> None:
    """float32 squares overflow beyond ~1.8e19: the fast path must not (and no warning)."""
    rng = np.random.default_rng(3)
    p = rng.poisson(100, size=(4, 84, 84)).astype(np.float32)
    ref, _ = normalise_patches(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, has = normalise_patches(p * np.float32(scale))
    assert has.all()
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)
