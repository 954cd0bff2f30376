"""Calibration acquisition, quality gates and the wizard on the virtual microscope."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from focus_oracle import OracleScorer

from autofocus.errors import CalibrationError, StageLimitError
from autofocus.microscope import CoreMicroscope
from autofocus.optics import get_objective
from calibration.acquire import stack_offsets_um
from calibration.quality import check_samples
from calibration.store import CalibrationSample, CalibrationStore
from calibration.wizard import calibrate, save_calibration


@pytest.fixture
def scope_vm():
    from simulators.core import create_demo_core, get_virtual_microscope, unload

    core = create_demo_core(sensor_shape=(32, 32), objective="10X", focus_z_um=5.0)
    try:
        vm = get_virtual_microscope(core)
        yield CoreMicroscope(core, objective=vm.objective), vm
    finally:
        unload(core)


def test_default_stack_from_dof() -> None:
    obj = get_objective("10X")
    off = stack_offsets_um(obj)
    assert off[0] == pytest.approx(-off[-1])
    assert np.diff(off) == pytest.approx(obj.dof_um / 2)
    assert off[-1] <= 12 * obj.dof_um + 1e-9


def test_wizard_on_simulator_writes_json_and_png(scope_vm, tmp_path: Path) -> None:
    scope, vm = scope_vm
    scope.set_z_um(8.0)
    asked: list[str] = []
    cal = calibrate(
        scope,
        OracleScorer(vm),
        vm.objective,
        microscope_name="sim",
        range_um=60,
        step_um=3,
        settle_ms=0,
        confirm=lambda q: asked.append(q) or True,
        max_move_um=50,
    )
    assert asked and "60 um" in asked[0]
    assert scope.get_z_um() == pytest.approx(8.0, abs=0.03)  # stage back at start
    assert cal.fit.focus_z_um == pytest.approx(5.0, abs=0.3)
    assert cal.fit.r2 > 0.99
    assert cal.curve.centre_um == 0.0
    assert cal.scorer.model_id == "regressor-oracle-1"
    json_path, png_path = save_calibration(cal, CalibrationStore(tmp_path))
    assert json_path.is_file() and png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert CalibrationStore(tmp_path).load(vm.objective, "sim", scorer=OracleScorer(vm)) == cal


def test_declined_confirmation_does_not_move(scope_vm) -> None:
    scope, vm = scope_vm
    with pytest.raises(CalibrationError, match="cancelled"):
        calibrate(
            scope,
            OracleScorer(vm),
            vm.objective,
            range_um=100,
            step_um=10,
            confirm=lambda q: False,
            max_move_um=50,
        )
    assert scope.get_z_um() == 0.0


def test_stack_outside_limits_refused_before_moving(scope_vm) -> None:
    scope, vm = scope_vm
    scope.set_z_um(290.0)
    with pytest.raises(StageLimitError, match="soft limits"):
        calibrate(scope, OracleScorer(vm), vm.objective, range_um=30, step_um=3)
    assert scope.get_z_um() == pytest.approx(290.0, abs=0.03)


def test_no_texture_gate(scope_vm) -> None:
    scope, vm = scope_vm
    vm.set_specimen("empty")
    with pytest.raises(CalibrationError, match="too few textured"):
        calibrate(scope, OracleScorer(vm), vm.objective, range_um=30, step_um=3)
    assert scope.get_z_um() == 0.0


def test_no_minimum_gate_suggests_extension(scope_vm) -> None:
    scope, vm = scope_vm
    scope.set_z_um(60.0)  # focus at 5: 55 um below the start
    with pytest.raises(CalibrationError, match="extend the range below"):
        calibrate(scope, OracleScorer(vm), vm.objective, range_um=30, step_um=3)


def _samples(b: np.ndarray) -> list[CalibrationSample]:
    dz = np.arange(b.size, dtype=float) - b.size // 2
    return [
        CalibrationSample(z_um=d, dz_um=d, b_px=float(v), spread_px=0.1, textured_fraction=1.0)
        for d, v in zip(dz, b, strict=True)
    ]


def test_flat_and_noisy_gates() -> None:
    x = np.arange(31) - 15.0
    with pytest.raises(CalibrationError, match="too flat"):
        check_samples(_samples(5 + 0.02 * np.abs(x)))
    rng = np.random.default_rng(0)
    with pytest.raises(CalibrationError, match="too noisy"):
        check_samples(_samples(5 + 0.3 * np.abs(x) + rng.normal(0, 2.0, x.size)))
    dz, b = check_samples(_samples(np.hypot(x, 1.0)))
    assert dz.size == 31 and math.isclose(b.min(), 1.0)
