"""The Microscope protocol adapter over pymmcore-plus (camelCase) and Pycro-Manager cores."""

from __future__ import annotations

import numpy as np
import pytest

from autofocus.errors import HardwareError, InvalidInputError, StageLimitError
from autofocus.microscope import CoreMicroscope, Microscope


def test_demo_core_adapter(demo_core) -> None:
    scope = CoreMicroscope(demo_core)
    assert isinstance(scope, Microscope)
    assert scope.z_limits_um == (-300.0, 300.0)  # from the Position property limits
    scope.set_z_um(12.5)
    assert scope.get_z_um() == pytest.approx(12.5, abs=0.03)
    img = scope.snap()
    assert img.shape == (128, 128) and img.dtype == np.uint16
    with pytest.raises(StageLimitError):
        scope.set_z_um(400.0)
    assert scope.get_z_um() == pytest.approx(12.5, abs=0.03)  # refused before moving


def test_explicit_limits_are_tighter(demo_core) -> None:
    scope = CoreMicroscope(demo_core, z_limits_um=(-10, 10))
    with pytest.raises(StageLimitError):
        scope.set_z_um(20.0)


class _JavaLikeCore:
    """Pycro-Manager Java-backend style: snake_case, flat signed 16-bit buffers."""

    def __init__(self, h: int = 3, w: int = 5, drift_um: float = 0.0, refuse: bool = False):
        self.h, self.w, self.z, self.drift, self.refuse = h, w, 0.0, drift_um, refuse

    def get_focus_device(self) -> str:
        return "Z"

    def has_property_limits(self, dev: str, prop: str) -> bool:
        return False

    def get_position(self, dev: str) -> float:
        return self.z

    def set_position(self, dev: str, z: float) -> None:
        if self.refuse:
            raise RuntimeError("device busy")
        self.z = z + self.drift

    def wait_for_device(self, dev: str) -> None:
        pass

    def snap_image(self) -> None:
        pass

    def get_image(self) -> np.ndarray:
        vals = np.arange(self.h * self.w, dtype=np.uint16) + 40000  # > 32767
        return vals.view(np.int16)  # what a Java short[] arrives as

    def get_image_height(self) -> int:
        return self.h

    def get_image_width(self) -> int:
        return self.w


def test_snake_case_core_unsigned_and_non_square() -> None:
    scope = CoreMicroscope(_JavaLikeCore(), z_limits_um=(-50, 50))
    img = scope.snap()
    assert img.shape == (3, 5)  # (height, width), not sheared
    assert img.dtype == np.uint16
    assert img[0, 0] == 40000 and img[2, 4] == 40014  # not negative
    assert img[1, 0] == 40005  # row-major: second row starts at index w


def test_default_window_without_limits() -> None:
    scope = CoreMicroscope(_JavaLikeCore())
    lo, hi = scope.z_limits_um
    assert lo < 0 < hi


def test_stage_reporting_another_position_is_a_hardware_error() -> None:
    scope = CoreMicroscope(_JavaLikeCore(drift_um=2.0), z_limits_um=(-50, 50))
    with pytest.raises(HardwareError, match="reports"):
        scope.set_z_um(5.0)


def test_stage_refusing_is_a_hardware_error() -> None:
    scope = CoreMicroscope(_JavaLikeCore(refuse=True), z_limits_um=(-50, 50))
    with pytest.raises(HardwareError, match="refused"):
        scope.set_z_um(5.0)


def test_not_a_core() -> None:
    with pytest.raises(InvalidInputError):
        CoreMicroscope(object())


def test_autofocus_on_failure_leaves_stage_inside_limits(demo_core) -> None:
    from focus_oracle import make_score

    from autofocus.curve import BlurCurve
    from autofocus.microscope import autofocus_on
    from autofocus.search import SearchConfig

    class EmptyScorer:
        def score(self, frame, objective=None, *, with_patches=False):
            return make_score(float("nan"))

    curve = BlurCurve(baseline_px=40, amplitude_px=38, gamma_um=20, alpha=0.7)
    scope = CoreMicroscope(demo_core, z_limits_um=(-20, 20))
    scope.set_z_um(3.0)
    res = autofocus_on(scope, EmptyScorer(), curve, SearchConfig(on_failure="warn"))
    assert res.status == "undetermined"
    assert scope.get_z_um() == pytest.approx(3.0, abs=0.03)  # no move


def test_autofocus_on_scores_with_the_calibrations_objective_when_none_is_given(
    demo_core,
) -> None:
    """The models are told the optics, so a search must score with those its
    calibration was made with: when neither the caller nor the microscope names an
    objective, the calibration's is used."""
    from types import SimpleNamespace

    from focus_oracle import make_score

    from autofocus.curve import BlurCurve
    from autofocus.microscope import autofocus_on
    from autofocus.optics import get_objective
    from autofocus.search import SearchConfig

    seen: list = []

    class Recording:
        def score(self, frame, objective=None, *, with_patches=False):
            seen.append(objective)
            return make_score(float("nan"))

    curve = BlurCurve(baseline_px=40, amplitude_px=38, gamma_um=20, alpha=0.7)
    cal = SimpleNamespace(curve=curve, objective=get_objective("40X"))
    scope = CoreMicroscope(demo_core, z_limits_um=(-20, 20))
    scope.objective = None  # a microscope that does not know its objective
    autofocus_on(scope, Recording(), cal, SearchConfig(on_failure="warn"))
    assert seen and all(o == get_objective("40X") for o in seen)
