"""Image formation checks (simulators.render) with a tiny local fake specimen."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from autofocus.errors import InvalidInputError
from autofocus.optics import get_objective
from simulators.psf import incoherent_psf, psf_radius_px
from simulators.render import benchmark_render, render_expected, render_field


@dataclass
class FakeLayer:
    z_offset_um: float
    values: np.ndarray


@dataclass
class FakePatch:
    kind: str
    layers: list[FakeLayer]
    surface_um: np.ndarray | None = None


class FakeSpecimen:
    """Deterministic texture defined in sample coordinates (um): a sum of sinusoids.

    ``tilt`` adds a surface ``tilt * x_um`` (um of height per um of x).
    """

    name = "fake"
    seed = 0

    def __init__(self, kind: str = "fluorescence", tilt: float = 0.0) -> None:
        self.kind = kind
        self.tilt = tilt
        rng = np.random.default_rng(7)
        n = 40
        freq = rng.uniform(0.05, 0.9, n)  # cycles/um
        ang = rng.uniform(0, np.pi, n)
        self._kx, self._ky = freq * np.cos(ang), freq * np.sin(ang)
        self._ph = rng.uniform(0, 2 * np.pi, n)
        self.calls: list[tuple[float, float, tuple[int, int], float]] = []

    def patch(
        self, x0_um: float, y0_um: float, shape: tuple[int, int], pixel_size_um: float
    ) -> FakePatch:
        self.calls.append((x0_um, y0_um, shape, pixel_size_um))
        y = y0_um + np.arange(shape[0])[:, None] * pixel_size_um
        x = x0_um + np.arange(shape[1])[None, :] * pixel_size_um
        t = np.zeros(shape)
        for kx, ky, ph in zip(self._kx, self._ky, self._ph, strict=True):
            t += np.cos(2 * np.pi * (kx * x + ky * y) + ph)
        t = t / np.sqrt(len(self._ph) / 2)
        if self.kind == "fluorescence":
            values = np.clip(0.5 + 0.25 * t, 0, None).astype(np.float32)
        else:
            values = (0.05 * t).astype(np.float32)
        surface = None
        if self.tilt:
            surface = np.broadcast_to(self.tilt * x, shape).astype(np.float32)
        return FakePatch(self.kind, [FakeLayer(0.0, values)], surface)


def _sharpness(img: np.ndarray) -> float:
    return float(ndimage.laplace(img.astype(np.float64))[2:-2, 2:-2].var())


OBJ = get_objective("20X")


def test_point_source_renders_to_psf() -> None:
    for dz in (0.0, 2.5, -6.0):
        values = np.zeros((101, 101), dtype=np.float32)
        values[50, 50] = 1.0
        img = render_expected(FakePatch("fluorescence", [FakeLayer(0.0, values)]), OBJ, dz)
        k = incoherent_psf(OBJ, dz)
        r = k.shape[0] // 2
        assert img.dtype == np.float32 and img.shape == (101, 101)
        np.testing.assert_allclose(img[50 - r : 51 + r, 50 - r : 51 + r], k, atol=1e-6)
        assert img.sum() == pytest.approx(1.0, abs=1e-4)


def test_layer_offset_shifts_defocus() -> None:
    values = np.zeros((81, 81), dtype=np.float32)
    values[40, 40] = 1.0
    img = render_expected(FakePatch("fluorescence", [FakeLayer(1.5, values)]), OBJ, 4.0)
    ref = render_expected(FakePatch("fluorescence", [FakeLayer(0.0, values)]), OBJ, 2.5)
    np.testing.assert_allclose(img, ref, atol=1e-7)
    # two layers add
    both = render_expected(
        FakePatch("fluorescence", [FakeLayer(1.5, values), FakeLayer(0.0, values)]), OBJ, 4.0
    )
    ref4 = render_expected(FakePatch("fluorescence", [FakeLayer(0.0, values)]), OBJ, 4.0)
    np.testing.assert_allclose(both, img + ref4, atol=1e-6)


def test_blur_grows_away_from_focus() -> None:
    spec = FakeSpecimen()
    dof = OBJ.dof_um
    for sign in (1.0, -1.0):
        s = [
            _sharpness(render_field(spec, OBJ, sign * f * dof, 10.0, -5.0, (96, 96)))
            for f in (0.0, 0.5, 1.0, 2.0, 4.0)
        ]
        assert all(b < a for a, b in itertools.pairwise(s)), s
        assert s[-1] < 0.1 * s[0]


def test_uniform_surface_equals_flat() -> None:
    spec = FakeSpecimen()
    patch = spec.patch(0.0, 0.0, (80, 90), OBJ.pixel_size_um)
    flat = render_expected(patch, OBJ, 3.0, margin_px=5)
    zeros = FakePatch(patch.kind, patch.layers, np.zeros((80, 90), dtype=np.float32))
    np.testing.assert_array_equal(render_expected(zeros, OBJ, 3.0, margin_px=5), flat)
    const = FakePatch(patch.kind, patch.layers, np.full((80, 90), 1.25, dtype=np.float32))
    shifted = render_expected(patch, OBJ, 3.0 - 1.25, margin_px=5)
    np.testing.assert_allclose(render_expected(const, OBJ, 3.0, margin_px=5), shifted, atol=1e-6)
    assert flat.shape == (70, 80)


def test_tilted_surface_gives_sharpness_gradient() -> None:
    # the surface rises 4 DOF across the field: left in focus at dz = 0, right blurred
    width_um = 128 * OBJ.pixel_size_um
    tilt = 4 * OBJ.dof_um / width_um
    x_centre = width_um / 2

    def thirds(img: np.ndarray) -> tuple[float, float]:
        return _sharpness(img[:, :40]), _sharpness(img[:, -40:])

    left, right = thirds(render_field(FakeSpecimen(tilt=tilt), OBJ, 0.0, x_centre, 0.0, (64, 128)))
    assert left > 5 * right
    # the opposite tilt, focused on the right edge, mirrors the gradient
    spec = FakeSpecimen(tilt=-tilt)
    left2, right2 = thirds(render_field(spec, OBJ, -4 * OBJ.dof_um, x_centre, 0.0, (64, 128)))
    assert right2 > 5 * left2
    # continuity: the column-wise sharpness has no band seams (no jump > 3x neighbours)
    img = render_field(FakeSpecimen(tilt=tilt), OBJ, 0.0, x_centre, 0.0, (64, 128))
    grad = np.abs(np.diff(img, axis=1)).mean(axis=0)
    smooth = ndimage.median_filter(grad, size=9)
    assert np.all(grad[5:-5] < 3 * smooth[5:-5])


def test_tilted_matches_flat_where_the_surface_crosses() -> None:
    # a small tilt: the centre column sits at surface 0 -> like a flat render there
    spec_t = FakeSpecimen(tilt=0.02)
    spec_f = FakeSpecimen()
    dz = 3.0
    tilted = render_field(spec_t, OBJ, dz, 0.0, 0.0, (32, 64))
    flat = render_field(spec_f, OBJ, dz, 0.0, 0.0, (32, 64))
    centre = slice(30, 34)
    scale = float(np.abs(flat).max())
    assert np.max(np.abs(tilted[:, centre] - flat[:, centre])) < 0.05 * scale


def test_render_field_coordinates_and_margin() -> None:
    spec = FakeSpecimen()
    a = render_field(spec, OBJ, 2.0, 0.0, 0.0, (40, 60))
    b = render_field(spec, OBJ, 2.0, 10 * OBJ.pixel_size_um, 0.0, (40, 60))
    # shifted by 10 px to the right: the overlap agrees (real margin, no edge effects)
    np.testing.assert_allclose(a[:, 10:], b[:, :-10], atol=1e-5)
    x0, y0, shape, px = spec.calls[0]
    m = psf_radius_px(OBJ, 2.0)
    assert shape == (40 + 2 * m, 60 + 2 * m)
    assert px == OBJ.pixel_size_um
    assert x0 == pytest.approx(-30 * px - m * px)
    assert y0 == pytest.approx(-20 * px - m * px)


def test_output_shape_and_dtype() -> None:
    for kind in ("fluorescence", "phase"):
        img = render_field(FakeSpecimen(kind), "40X", 1.0, 3.0, 4.0, (48, 64))
        assert img.shape == (48, 64) and img.dtype == np.float32
        assert np.all(np.isfinite(img)) and np.all(img >= 0)


def test_brightfield_background_and_contrast_inversion() -> None:
    obj = get_objective("40X")
    blank = FakePatch("phase", [FakeLayer(0.0, np.zeros((64, 64), dtype=np.float32))])
    np.testing.assert_allclose(render_expected(blank, obj, 1.3), 1.0, atol=1e-5)
    spec = FakeSpecimen("phase")
    dz = 0.5 * obj.dof_um
    focus = render_field(spec, obj, 0.0, 0.0, 0.0, (96, 96)) - 1
    plus = render_field(spec, obj, dz, 0.0, 0.0, (96, 96)) - 1
    minus = render_field(spec, obj, -dz, 0.0, 0.0, (96, 96)) - 1
    assert plus.std() > 5 * focus.std()
    assert minus.std() > 5 * focus.std()
    assert np.corrcoef(plus.ravel(), minus.ravel())[0, 1] < -0.7
    assert abs(plus.mean()) < 0.05  # background stays at 1


def test_brightfield_tilted_surface_runs_and_varies() -> None:
    obj = get_objective("40X")
    spec = FakeSpecimen("phase", tilt=0.1)
    img = render_field(spec, obj, 0.0, 0.0, 0.0, (32, 96))
    assert img.shape == (32, 96)
    # contrast near the in-focus centre is weaker than at the defocused edges
    assert img[:, 40:56].std() < img[:, :16].std()


@pytest.mark.parametrize(
    "patch, margin",
    [
        (FakePatch("fluorescence", []), 0),
        (FakePatch("bogus", [FakeLayer(0.0, np.zeros((8, 8)))]), 0),
        (FakePatch("fluorescence", [FakeLayer(0.0, np.zeros((8,)))]), 0),
        (
            FakePatch(
                "fluorescence", [FakeLayer(0.0, np.zeros((8, 8))), FakeLayer(1, np.zeros((8, 9)))]
            ),
            0,
        ),
        (FakePatch("fluorescence", [FakeLayer(0.0, np.full((8, 8), np.nan))]), 0),
        (FakePatch("fluorescence", [FakeLayer(0.0, np.zeros((8, 8)))], np.zeros((8, 7))), 0),
        (FakePatch("fluorescence", [FakeLayer(0.0, np.zeros((8, 8)))]), 4),
        (FakePatch("fluorescence", [FakeLayer(0.0, np.zeros((8, 8)))]), -1),
        (FakePatch("fluorescence", [FakeLayer(float("nan"), np.zeros((8, 8)))]), 0),
    ],
)
def test_bad_patches_rejected(patch: FakePatch, margin: int) -> None:
    with pytest.raises(InvalidInputError):
        render_expected(patch, OBJ, 1.0, margin_px=margin)


@pytest.mark.parametrize("shape", [(0, 10), (10,), (10, -2), (2.5, 3), "ab"])
def test_bad_field_shapes_rejected(shape: object) -> None:
    with pytest.raises(InvalidInputError):
        render_field(FakeSpecimen(), OBJ, 1.0, 0.0, 0.0, shape)  # type: ignore[arg-type]


def test_bad_scalars_rejected() -> None:
    with pytest.raises(InvalidInputError):
        render_field(FakeSpecimen(), OBJ, float("nan"), 0.0, 0.0, (8, 8))
    with pytest.raises(InvalidInputError):
        render_field(FakeSpecimen(), OBJ, 1.0, float("inf"), 0.0, (8, 8))


def test_benchmark_reports_medians() -> None:
    out = benchmark_render(sizes=(32,), repeats=1)
    assert set(out) == {"32x32", "32x32 new dz"}
    assert all(v > 0 for v in out.values())


def test_real_specimens_render_when_available() -> None:
    specimens = pytest.importorskip("simulators.specimens")
    for name in ("nuclei", "phase"):
        spec = specimens.make_specimen(name, seed=3)
        sharp = render_field(spec, OBJ, 0.0, 40.0, 20.0, (96, 96))
        blurred = render_field(spec, OBJ, 3 * OBJ.dof_um, 40.0, 20.0, (96, 96))
        assert sharp.shape == blurred.shape == (96, 96)
        assert sharp.dtype == np.float32
        if spec.kind == "fluorescence":
            assert _sharpness(blurred) < _sharpness(sharp)
        else:  # brightfield: phase contrast appears out of focus
            assert blurred.std() > sharp.std()
