"""Every specimen gets blurrier away from the focal plane, through the full renderer."""

import numpy as np
import pytest

from autofocus.metrics import tenengrad, variance_of_laplacian
from autofocus.optics import get_objective
from simulators.camera import CameraModel
from simulators.render import render_field
from simulators.specimens import SPECIMEN_NAMES, make_specimen

FLUORESCENT = [n for n in SPECIMEN_NAMES if n not in ("empty", "phase")]


@pytest.mark.parametrize("name", FLUORESCENT)
@pytest.mark.parametrize("objective", ["10X", "40X"])
def test_sharpness_falls_monotonically_away_from_focus(name: str, objective: str) -> None:
    obj = get_objective(objective)
    spec = make_specimen(name, seed=4)
    # find a field of view with structure (sparse specimens have empty regions)
    x_um = next(
        x
        for x in np.arange(0.0, 2000.0, 37.0)
        if render_field(spec, obj, 0.0, x, 0.0, (128, 128)).std() > 1e-3
    )
    for sign in (+1, -1):
        dz = sign * np.array([0.0, 0.5, 1.0, 2.0, 4.0]) * obj.dof_um
        sharp = [
            variance_of_laplacian(render_field(spec, obj, d, x_um, 0.0, (128, 128))) for d in dz
        ]
        assert np.all(np.diff(sharp) < 0), (name, objective, sign, sharp)


def test_noisy_frames_also_get_blurrier() -> None:
    obj = get_objective("20X")
    cam = CameraModel()
    rng = np.random.default_rng(0)
    spec = make_specimen("nuclei", seed=2)
    t = [
        tenengrad(cam.expose(render_field(spec, obj, d, 0, 0, (256, 256)), rng))
        for d in np.array([0, 1, 3, 6]) * obj.dof_um
    ]
    assert np.all(np.diff(t) < 0), t


def test_phase_object_contrast_inverts_through_focus() -> None:
    obj = get_objective("20X")
    spec = make_specimen("phase", seed=1)
    at = lambda d: render_field(spec, obj, d, 0.0, 0.0, (128, 128))  # noqa: E731
    above, focus, below = at(2 * obj.dof_um), at(0.0), at(-2 * obj.dof_um)
    assert focus.std() < 0.5 * min(above.std(), below.std())
    corr = np.corrcoef((above - above.mean()).ravel(), (below - below.mean()).ravel())[0, 1]
    assert corr < -0.3


def test_empty_field_is_flat() -> None:
    obj = get_objective("10X")
    img = render_field(make_specimen("empty"), obj, 3.0, 0.0, 0.0, (64, 64))
    assert float(np.ptp(img)) == 0.0
