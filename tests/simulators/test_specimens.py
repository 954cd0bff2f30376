"""Tests for simulators.specimens: shapes, determinism, tiling, content, options."""

from __future__ import annotations

import numpy as np
import pytest

from autofocus.errors import InvalidInputError, UnknownNameError
from simulators.specimens import (
    SPECIMEN_NAMES,
    TILE_UM,
    Specimen,
    SpecimenPatch,
    make_specimen,
)

FLUO = [n for n in SPECIMEN_NAMES if n != "phase"]


@pytest.mark.parametrize("name", SPECIMEN_NAMES)
def test_every_specimen_renders(name: str) -> None:
    sp = make_specimen(name, seed=1)
    assert isinstance(sp, Specimen)
    assert sp.name == name and sp.seed == 1
    pt = sp.patch(-37.0, 512.5, (96, 130), 0.5)
    assert isinstance(pt, SpecimenPatch)
    assert pt.kind == ("phase" if name == "phase" else "fluorescence")
    assert len(pt.layers) == 1 and pt.layers[0].z_offset_um == 0.0
    assert pt.surface_um is None
    v = pt.layers[0].values
    assert v.shape == (96, 130) == pt.shape
    assert v.dtype == np.float32
    assert np.all(np.isfinite(v)) and v.min() >= 0.0


@pytest.mark.parametrize("name", [n for n in SPECIMEN_NAMES if n != "empty"])
def test_structure_is_present_and_scaled_like_bright_objects(name: str) -> None:
    v = make_specimen(name, seed=2).patch(0.0, 0.0, (256, 256), 1.0).layers[0].values
    assert v.max() > 0.3  # there is something bright in a 256 um field
    assert v.std() > 0.01


def test_empty_is_all_zero() -> None:
    v = make_specimen("empty").patch(5.0, 5.0, (64, 64), 0.3).layers[0].values
    assert not np.any(v)


@pytest.mark.parametrize("name", SPECIMEN_NAMES)
def test_deterministic_for_a_seed(name: str) -> None:
    a = make_specimen(name, seed=7).patch(100.0, -50.0, (64, 64), 0.65).layers[0].values
    b = make_specimen(name, seed=7).patch(100.0, -50.0, (64, 64), 0.65).layers[0].values
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", [n for n in SPECIMEN_NAMES if n != "empty"])
def test_different_seeds_differ(name: str) -> None:
    a = make_specimen(name, seed=1).patch(0.0, 0.0, (128, 128), 1.0).layers[0].values
    b = make_specimen(name, seed=2).patch(0.0, 0.0, (128, 128), 1.0).layers[0].values
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", SPECIMEN_NAMES)
@pytest.mark.parametrize("pixel_um", [0.25, 1.0])
def test_overlapping_patches_agree(name: str, pixel_um: float) -> None:
    """A small patch equals the matching crop of a larger one, across tile borders."""
    sp = make_specimen(name, seed=3)
    # the big patch straddles the tile corner at (TILE_UM, TILE_UM)
    x0 = TILE_UM - 100 * pixel_um
    y0 = TILE_UM - 90 * pixel_um
    big = sp.patch(x0, y0, (200, 220), pixel_um).layers[0].values
    # one small patch inside tile (0, 0) next to its corner, one across the corner
    for i0, j0, h, w in ((20, 60, 60, 35), (37, 51, 120, 110)):
        small_sp = make_specimen(name, seed=3)  # fresh cache: nothing shared
        small = small_sp.patch(x0 + j0 * pixel_um, y0 + i0 * pixel_um, (h, w), pixel_um)
        crop = big[i0 : i0 + h, j0 : j0 + w]
        np.testing.assert_allclose(small.layers[0].values, crop, rtol=1e-5, atol=1e-5)


def test_objects_crossing_tile_borders_are_whole() -> None:
    """Rendering two half-fields either side of a tile border equals one whole field."""
    sp = make_specimen("nuclei", seed=5, density=3.0)
    whole = sp.patch(TILE_UM - 64.0, 0.0, (128, 128), 1.0).layers[0].values
    left = sp.patch(TILE_UM - 64.0, 0.0, (128, 64), 1.0).layers[0].values
    right = sp.patch(TILE_UM, 0.0, (128, 64), 1.0).layers[0].values
    np.testing.assert_allclose(np.hstack([left, right]), whole, atol=1e-5)
    # and there is structure right at the border
    assert whole[:, 60:68].max() > 0.2


def test_far_away_positions_work() -> None:
    sp = make_specimen("actin", seed=0)
    v = sp.patch(-123456.0, 98765.0, (128, 128), 0.5).layers[0].values
    assert np.all(np.isfinite(v))


def test_nuclei_have_empty_background_and_bright_nuclei() -> None:
    v = make_specimen("nuclei", seed=4).patch(0.0, 0.0, (512, 512), 1.0).layers[0].values
    background = np.mean(v < 1e-3)
    assert 0.3 < background < 0.97
    bright = v[v > 1e-3]
    assert np.percentile(bright, 90) > 0.5
    # chromatin texture: nuclei are not flat inside
    assert np.std(bright[bright > 0.4]) > 0.05


def test_calibration_slide_is_textured_everywhere() -> None:
    for p in (0.25, 1.0):
        v = make_specimen("calibration_slide", seed=6).patch(0.0, 0.0, (256, 256), p)
        blocks = v.layers[0].values.reshape(8, 32, 8, 32).swapaxes(1, 2).reshape(64, -1)
        assert np.all(blocks.std(axis=1) > 0.005)
        assert np.all(blocks.mean(axis=1) > 0.1)


def test_beads_are_sparse_points() -> None:
    v = make_specimen("beads", seed=1).patch(0.0, 0.0, (512, 512), 0.5).layers[0].values
    lit = np.mean(v > 0.01)
    assert 0 < lit < 0.01
    # sub-resolution: each bead's total density is about 1 um^2 (flux conserved)
    total_um2 = v.sum() * 0.5**2
    n_beads = (v > 0.05 * v.max()).sum()
    assert total_um2 > 0 and n_beads > 5


def test_beads_flux_is_independent_of_pixel_size() -> None:
    sp = make_specimen("beads", seed=2)
    fine = sp.patch(0.0, 0.0, (800, 800), 0.25).layers[0].values.sum() * 0.25**2
    coarse = sp.patch(-0.375, -0.375, (200, 200), 1.0).layers[0].values.sum() * 1.0
    assert coarse == pytest.approx(fine, rel=0.02)


def test_thin_filaments_conserve_density_across_pixel_sizes() -> None:
    """Microtubules are thinner than a pixel: area coverage keeps the integral."""
    sp = make_specimen("microtubules", seed=8)
    fine = sp.patch(0.125, 0.125, (1024, 1024), 0.25).layers[0].values.sum() * 0.25**2
    coarse = sp.patch(0.5, 0.5, (256, 256), 1.0).layers[0].values.sum() * 1.0
    assert fine > 10
    assert coarse == pytest.approx(fine, rel=0.05)


def test_microtubule_lines_are_antialiased() -> None:
    v = make_specimen("microtubules", seed=8).patch(0.0, 0.0, (256, 256), 1.0).layers[0].values
    on = v[v > 0]
    # a 0.25 um line on 1 um pixels covers a quarter of a pixel: many partial values
    assert np.mean(on < 0.3) > 0.3


def test_phase_specimen_is_mostly_transparent_bumps() -> None:
    pt = make_specimen("phase", seed=2).patch(0.0, 0.0, (512, 512), 1.0)
    v = pt.layers[0].values
    assert pt.kind == "phase"
    assert np.mean(v < 0.01) > 0.4
    assert 0.5 < v.max() < 3.0


def test_density_option_scales_object_count() -> None:
    lo = make_specimen("nuclei", seed=9, density=0.3).patch(0.0, 0.0, (512, 512), 1.0)
    hi = make_specimen("nuclei", seed=9, density=2.0).patch(0.0, 0.0, (512, 512), 1.0)
    assert np.mean(hi.layers[0].values > 0.01) > 2 * np.mean(lo.layers[0].values > 0.01)
    none = make_specimen("nuclei", density=0.0).patch(0.0, 0.0, (64, 64), 1.0)
    assert not np.any(none.layers[0].values)


def test_brightness_scales_values() -> None:
    a = make_specimen("tissue", seed=1).patch(0.0, 0.0, (64, 64), 1.0).layers[0].values
    b = make_specimen("tissue", seed=1, brightness=2.5).patch(0.0, 0.0, (64, 64), 1.0)
    np.testing.assert_allclose(b.layers[0].values, 2.5 * a, rtol=1e-6)


def test_tilt_and_curvature_give_the_documented_surface() -> None:
    sp = make_specimen("beads", tilt_x_um_per_um=0.01, tilt_y_um_per_um=-0.002, curvature_um=5.0)
    x0, y0, p = 100.0, -20.0, 0.5
    s = sp.patch(x0, y0, (40, 60), p).surface_um
    assert s is not None and s.shape == (40, 60) and s.dtype == np.float32
    xs = x0 + np.arange(60) * p
    ys = y0 + np.arange(40) * p
    xx, yy = np.meshgrid(xs, ys)
    expected = 0.01 * xx - 0.002 * yy + 5.0 * (xx**2 + yy**2) / 1000.0**2
    np.testing.assert_allclose(s, expected, atol=1e-5)
    # pure tilt is a plane: constant step per pixel
    t = make_specimen("empty", tilt_x_um_per_um=0.02).patch(0.0, 0.0, (8, 16), 1.0).surface_um
    assert t is not None
    np.testing.assert_allclose(np.diff(t, axis=1), 0.02, atol=1e-6)
    np.testing.assert_allclose(np.diff(t, axis=0), 0.0, atol=1e-7)


def test_thick_sample_has_layers_spanning_the_thickness() -> None:
    sp = make_specimen("tissue", seed=3, thickness_um=12.0, n_layers=4)
    pt = sp.patch(0.0, 0.0, (64, 64), 1.0)
    z = [layer.z_offset_um for layer in pt.layers]
    np.testing.assert_allclose(z, [-6.0, -2.0, 2.0, 6.0])
    vals = [layer.values for layer in pt.layers]
    assert all(v.shape == (64, 64) and v.dtype == np.float32 for v in vals)
    assert not np.allclose(vals[0], vals[1])  # each layer has its own structure
    auto = make_specimen("nuclei", thickness_um=10.0).patch(0.0, 0.0, (8, 8), 1.0)
    assert len(auto.layers) >= 2
    assert auto.layers[0].z_offset_um == pytest.approx(-5.0)
    assert auto.layers[-1].z_offset_um == pytest.approx(5.0)


def test_unknown_name() -> None:
    with pytest.raises(UnknownNameError):
        make_specimen("unicorns")


@pytest.mark.parametrize(
    "options",
    [
        {"density": -1.0},
        {"density": float("nan")},
        {"brightness": 0.0},
        {"tilt_x_um_per_um": 5.0},
        {"thickness_um": -1.0},
        {"n_layers": 3},  # needs a thickness
        {"thickness_um": 5.0, "n_layers": 0},
        {"thickness_um": 5.0, "n_layers": 2.5},
        {"curvature_um": "deep"},
        {"colour": "red"},
    ],
)
def test_bad_options(options: dict) -> None:
    with pytest.raises(InvalidInputError):
        make_specimen("nuclei", **options)


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 0.0, (0, 10), 1.0),
        (0.0, 0.0, (10,), 1.0),
        (0.0, 0.0, (10, 10), 0.0),
        (0.0, 0.0, (10, 10), float("nan")),
        (float("inf"), 0.0, (10, 10), 1.0),
        (0.0, 0.0, (10.5, 10), 1.0),
    ],
)
def test_bad_patch_requests(args: tuple) -> None:
    with pytest.raises(InvalidInputError):
        make_specimen("nuclei").patch(*args)


def test_bad_seed() -> None:
    with pytest.raises(InvalidInputError):
        make_specimen("beads", seed=-1)
    with pytest.raises(InvalidInputError):
        make_specimen("beads", seed=1.5)  # type: ignore[arg-type]
