"""Real Pycro-Manager Python-backend acquisitions with the hooks on the virtual microscope.

The scorer is the oracle of ``hook_fixtures`` (truth + calibration curve), so what is
tested is the hook logic: offsets, re-centring, metadata, policies, teardown.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hook_fixtures import FrameTruth, OracleScorer, oracle_curve

from autofocus.errors import AutofocusTimeoutError, FocusSearchError
from hooks.metadata import read_focus_flags
from hooks.pycromanager import (
    AutofocusHook,
    FlaggingHook,
    acquisition_hooks,
    z_centres_um,
)
from simulators.core import get_virtual_microscope, virtual_microscope


def _acquire(events: Any, directory: Path | None = None, **hooks: Any) -> Any:
    from pycromanager import Acquisition

    with Acquisition(
        directory=None if directory is None else str(directory),
        name="run",
        show_display=False,
        **hooks,
    ) as acq:
        acq.acquire(events)
    return acq.get_dataset()


def _recorder(vm: Any, interval_s: float = 60.0) -> tuple[Any, Any, dict]:
    """A pre-hook that sets the simulated clock per time point and a post-camera hook
    that records the truth of every frame by its axes."""
    truth: dict[tuple, dict] = {}

    def clock(event: Any) -> None:
        first = event[0] if isinstance(event, list) else event
        t = first.get("axes", {}).get("time")
        if t is not None and t * interval_s > vm.time_s():
            vm.set_time(t * interval_s)

    def post_camera(event: Any) -> Any:
        for e in event if isinstance(event, list) else [event]:
            axes = e.get("axes", {})
            truth[tuple(sorted(axes.items()))] = dict(vm.last_frame_info)
        return event

    return clock, post_camera, truth


def _chain(clock: Any, hook: Any) -> Any:
    def pre(event: Any) -> Any:
        clock(event)
        return hook(event)

    return pre


def test_timelapse_with_drift_stays_in_focus_and_stacks_are_recentred(
    tmp_path: Path, truth: FrameTruth, caplog: pytest.LogCaptureFixture
) -> None:
    from pycromanager import multi_d_acquisition_events

    caplog.set_level(logging.INFO, logger="hooks")
    drift = "linear:0.01,walk:0.01,jump:6@150"  # um/s; a 6 um jump before t = 3
    with virtual_microscope(
        sensor_shape=(64, 64), objective="20X", drift=drift, focus_z_um=3.0, seed=2
    ) as core:
        vm = get_virtual_microscope(core)
        curve = oracle_curve(vm.objective)
        scorer = OracleScorer(truth, curve)
        af = AutofocusHook(scorer, curve, objective=vm.objective)
        flag = FlaggingHook(scorer, vm.objective, autofocus=af)
        clock, post_camera, seen = _recorder(vm)
        hooks = acquisition_hooks(af, flag)
        hooks["pre_hardware_hook_fn"] = _chain(clock, hooks["pre_hardware_hook_fn"])
        events = multi_d_acquisition_events(num_time_points=6, z_start=-2, z_end=2, z_step=2)
        ds = _acquire(events, tmp_path, post_camera_hook_fn=post_camera, **hooks)
        path = Path(ds.path)
        ds.close()
        dof = vm.objective.dof_um
        drift_total = vm.true_focus_um(t_s=300) - vm.true_focus_um(t_s=0)
    assert abs(drift_total) > 3 * dof / 4  # the drift alone would leave the DOF/4 band
    summary = af.summary()
    assert summary.n_autofocus == 6 and summary.n_failed == 0 and summary.errors == ()
    for t in range(6):
        frames = [seen[(("time", t), ("z", z))] for z in range(3)]
        # the centre slice is in focus, the stack is centred on it (steps of 2 um)
        assert abs(frames[1]["dz_um"]) < dof / 4, (t, frames)
        z = [f["z_um"] for f in frames]
        assert z[0] == pytest.approx(z[1] - 2.0, abs=1e-6)
        assert z[2] == pytest.approx(z[1] + 2.0, abs=1e-6)
    # one INFO line per autofocus, naming the time point
    lines = [
        r.getMessage() for r in caplog.records if r.name == "hooks" and "-> " in r.getMessage()
    ]
    assert len(lines) == 6 and all("images" in line and "confidence" in line for line in lines)
    # flags in the saved metadata, readable from the folder
    flags = read_focus_flags(path)
    assert len(flags) == 18
    assert {f.verdict for f in flags} == {"in_focus"}  # +/-2 um is within the 20X DOF
    assert all(f.scorer_version == "oracle-test" and f.abs_dz_um is not None for f in flags)
    assert all(f.autofocus_offset_um is not None for f in flags)
    fs = flag.summary()
    assert fs.frames_scored == 18 and fs.out_of_focus == 0 and fs.errors == ()


def test_per_position_offsets_are_independent(truth: FrameTruth) -> None:
    from pycromanager import multi_d_acquisition_events

    tilt = 0.01  # um of focus per um of x: 300 um apart -> 3 um apart in focus
    xyz = [[0.0, 0.0, 1.0], [300.0, 0.0, -1.0]]
    with virtual_microscope(
        sensor_shape=(64, 64), objective="20X", focus_tilt_um_per_um=(tilt, 0.0)
    ) as core:
        vm = get_virtual_microscope(core)
        curve = oracle_curve(vm.objective)
        events = multi_d_acquisition_events(
            num_time_points=2, xyz_positions=xyz, z_start=-1, z_end=1, z_step=1
        )
        af = AutofocusHook(OracleScorer(truth, curve), curve, reference_z_um=z_centres_um(events))
        clock, post_camera, seen = _recorder(vm)
        hooks = acquisition_hooks(af)
        hooks["pre_hardware_hook_fn"] = _chain(clock, hooks["pre_hardware_hook_fn"])
        _acquire(events, post_camera_hook_fn=post_camera, **hooks)
    s = af.summary()
    assert s.focus_z_um[0] == pytest.approx(0.0, abs=0.2)
    assert s.focus_z_um[1] == pytest.approx(3.0, abs=0.2)
    # offsets relative to each position's own nominal z
    assert s.offsets_um[0] == pytest.approx(-1.0, abs=0.2)
    assert s.offsets_um[1] == pytest.approx(4.0, abs=0.2)
    for t in range(2):
        for p in range(2):
            centre = seen[(("position", p), ("time", t), ("z", 1))]
            assert abs(centre["dz_um"]) < 0.3


def test_list_events_of_a_merged_sequence_are_handled(truth: FrameTruth) -> None:
    """A timelapse without z or XY and no interval is merged into a camera sequence:
    the hooks receive lists; the events get the focus added as "z"."""
    from pycromanager import multi_d_acquisition_events

    with virtual_microscope(sensor_shape=(64, 64), objective="20X", focus_z_um=4.0) as core:
        vm = get_virtual_microscope(core)
        curve = oracle_curve(vm.objective)
        af = AutofocusHook(OracleScorer(truth, curve), curve)
        shapes: list[str] = []
        pre = af.pre_hardware

        def spy(event: Any) -> Any:
            shapes.append(type(event).__name__)
            return pre(event)

        ds = _acquire(
            multi_d_acquisition_events(num_time_points=4),
            pre_hardware_hook_fn=spy,
            post_hardware_hook_fn=af.post_hardware,
        )
        frames = [np.asarray(ds.read_image(time=t)) for t in range(4)]
        assert abs(vm.dz_um()) < 0.3
    assert "list" in shapes
    assert af.summary().n_autofocus >= 1 and af.summary().errors == ()
    assert all(f.shape == (64, 64) for f in frames)


def test_failing_scorer_is_reported_not_swallowed(truth: FrameTruth) -> None:
    from pycromanager import multi_d_acquisition_events

    events = multi_d_acquisition_events(num_time_points=3, z_start=-1, z_end=1, z_step=1)
    with virtual_microscope(sensor_shape=(64, 64), objective="20X", focus_z_um=2.0) as core:
        vm = get_virtual_microscope(core)
        curve = oracle_curve(vm.objective)
        # "warn": the acquisition completes, the failure is recorded and logged
        bad = OracleScorer(
            truth, curve, fail_after=4, error=AutofocusTimeoutError("scorer timeout")
        )
        af = AutofocusHook(bad, curve, on_failure="warn")
        ds = _acquire(events, **acquisition_hooks(af))
        assert len(ds.get_image_coordinates_list()) == 9
        s = af.summary()
        assert s.n_failed >= 1 and s.errors and s.errors[0].error_type == "AutofocusTimeoutError"
        lo, hi = vm.z_limits_um
        assert lo <= vm.z_um <= hi
        with pytest.raises(AutofocusTimeoutError):
            af.check()
        # "raise": the acquisition stops early, the error is kept and re-raised
        bad = OracleScorer(truth, curve, fail_after=4)
        af = AutofocusHook(bad, curve, on_failure="raise")
        ds = _acquire(events, **acquisition_hooks(af))
        assert len(ds.get_image_coordinates_list()) < 9
        assert af.summary().errors
        with pytest.raises(FocusSearchError):
            af.check()
        assert lo <= vm.z_um <= hi


@pytest.mark.parametrize("with_autofocus", [False, True])
def test_a_flagging_failure_under_raise_keeps_the_frame_and_stops_after_it(
    truth: FrameTruth, with_autofocus: bool
) -> None:
    """Raising from the image processor would make Pycro-Manager drop the frame: the
    failing frame is saved, unscored, and no later event is acquired."""
    from pycromanager import multi_d_acquisition_events

    # an interval, so that the time points are not merged into one camera sequence, and
    # the failing frame is processed long before the next time point is due
    events = multi_d_acquisition_events(num_time_points=4, time_interval_s=0.2)
    with virtual_microscope(sensor_shape=(64, 64), objective="20X", focus_z_um=0.0) as core:
        curve = oracle_curve(get_virtual_microscope(core).objective)
        af = (
            AutofocusHook(OracleScorer(truth, curve), curve, every="never")
            if with_autofocus
            else None
        )
        bad = OracleScorer(truth, curve, fail_after=1, error=AutofocusTimeoutError("timed out"))
        flag = FlaggingHook(bad, on_failure="raise", autofocus=af)
        seen: list[dict] = []

        def post_camera(event: Any) -> Any:
            seen.extend(event if isinstance(event, list) else [event])
            return event

        ds = _acquire(events, post_camera_hook_fn=post_camera, **acquisition_hooks(af, flag))
        saved = sorted(c["time"] for c in ds.get_image_coordinates_list())
    assert flag.stopped and len(seen) == 2  # the failing (2nd) frame, then nothing
    assert saved == [0, 1]  # both kept
    assert [f.axes.get("time") for f in read_focus_flags(ds)] == [0]  # frame 1 unscored
    with pytest.raises(AutofocusTimeoutError):
        flag.check()


def test_empty_field_is_undetermined_and_never_moves(truth: FrameTruth) -> None:
    from pycromanager import multi_d_acquisition_events

    with virtual_microscope(sensor_shape=(64, 64), specimen="empty", objective="20X") as core:
        vm = get_virtual_microscope(core)
        vm.set_z_um(5.0)
        curve = oracle_curve(vm.objective)
        af = AutofocusHook(OracleScorer(truth, curve), curve, on_failure="keep_last")
        flag = FlaggingHook(OracleScorer(truth, curve))
        _acquire(multi_d_acquisition_events(num_time_points=2), **acquisition_hooks(af, flag))
        assert vm.z_um == pytest.approx(5.0)
    s = af.summary()
    assert s.n_converged == 0 and all(r.status == "undetermined" for r in s.records)
    assert s.focus_z_um == {}
    assert flag.summary().undetermined == 2


def test_flag_requests_refocus_and_calls_back(truth: FrameTruth) -> None:
    from pycromanager import multi_d_acquisition_events

    with virtual_microscope(sensor_shape=(64, 64), objective="20X", focus_z_um=12.0) as core:
        vm = get_virtual_microscope(core)
        curve = oracle_curve(vm.objective)
        scorer = OracleScorer(truth, curve)
        af = AutofocusHook(scorer, curve, every="never")
        called: list[Any] = []
        flag = FlaggingHook(
            scorer, vm.objective, autofocus=af, refocus_on_flag=True, on_out_of_focus=called.append
        )
        events = multi_d_acquisition_events(num_time_points=4)
        for e in events:  # distinct start times: no merged sequences, one image per event
            e["min_start_time"] = 0.02 * e["axes"]["time"]
        _acquire(events, **acquisition_hooks(af, flag))
    s = af.summary()
    assert called and called[0].out_of_focus
    assert 1 <= s.n_autofocus <= 2  # asked by the flag, then in focus
    assert s.focus_z_um[None] == pytest.approx(12.0, abs=0.3)
    assert flag.summary().flagged  # the frames before the refocus


def test_flagging_every_nth_frame_and_channel_subset(truth: FrameTruth) -> None:
    from pycromanager import multi_d_acquisition_events

    with virtual_microscope(sensor_shape=(64, 64), objective="20X") as core:
        vm = get_virtual_microscope(core)
        curve = oracle_curve(vm.objective)
        flag = FlaggingHook(
            OracleScorer(truth, curve), every_n=2, channels=["DAPI"], max_lag_s=None
        )
        ds = _acquire(
            multi_d_acquisition_events(
                num_time_points=4, channel_group="Channel", channels=["DAPI", "FITC"]
            ),
            image_process_fn=flag,
        )
        scored = {
            (a["time"], a["channel"]): ds.read_metadata(**a).get("FocusVerdict")
            for a in ds.get_image_coordinates_list()
        }
    s = flag.summary()
    assert s.frames_seen == 8 and s.frames_scored == 2
    assert {k for k, v in scored.items() if v is not None} == {(0, "DAPI"), (2, "DAPI")}


def test_cancel_mid_autofocus_stops_and_keeps_the_stage_in_limits(truth: FrameTruth) -> None:
    from pycromanager import multi_d_acquisition_events

    with virtual_microscope(sensor_shape=(64, 64), objective="20X", focus_z_um=3.0) as core:
        vm = get_virtual_microscope(core)
        curve = oracle_curve(vm.objective)
        scorer = OracleScorer(truth, curve)
        af = AutofocusHook(scorer, curve)
        original = scorer.score

        def score_then_cancel(*a: Any, **k: Any) -> Any:
            if scorer.calls == 1:
                af.cancel()  # e.g. the user pressed stop during the first search
            return original(*a, **k)

        scorer.score = score_then_cancel  # type: ignore[method-assign]
        ds = _acquire(
            multi_d_acquisition_events(num_time_points=3, z_start=-1, z_end=1, z_step=1),
            **acquisition_hooks(af),
        )
        assert len(ds.get_image_coordinates_list()) == 0
        assert vm.z_um == pytest.approx(-1.0)  # back where the search started
    s = af.summary()
    assert s.cancelled and s.n_converged == 0 and s.errors == ()


def test_repeated_start_and_teardown(truth: FrameTruth) -> None:
    from mmpycorex import is_pymmcore_active
    from pycromanager import multi_d_acquisition_events
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    for i in range(3):
        with virtual_microscope(sensor_shape=(64, 64), objective="20X", focus_z_um=i) as core:
            vm = get_virtual_microscope(core)
            curve = oracle_curve(vm.objective)
            af = AutofocusHook(OracleScorer(truth, curve), curve)
            for _ in range(2):
                _acquire(
                    multi_d_acquisition_events(num_time_points=2, z_start=0, z_end=1, z_step=1),
                    **acquisition_hooks(af),
                )
            assert af.focus_z_um() == pytest.approx(i, abs=0.3)
        assert Engine.get_instance() is None and not is_pymmcore_active()


def test_objective_names_are_resolved_when_the_hooks_are_made(truth: FrameTruth) -> None:
    from autofocus.errors import UnknownNameError
    from autofocus.optics import get_objective

    curve = oracle_curve(get_objective("20X"))
    scorer = OracleScorer(truth, curve)
    assert AutofocusHook(scorer, curve, objective="20x").controller.objective == get_objective(
        "20X"
    )
    assert FlaggingHook(scorer, "20X").flagger.objective == get_objective("20X")
    with pytest.raises(UnknownNameError):
        AutofocusHook(scorer, curve, objective="999X")
    with pytest.raises(UnknownNameError):
        FlaggingHook(scorer, "999X")


def test_flagging_hook_takes_the_linked_autofocus_hooks_objective() -> None:
    """The general classifier reads the level better when told the objective, so a
    flagging hook linked to an autofocus hook uses that hook's objective unless it is
    given its own."""
    from autofocus.optics import get_objective

    obj = get_objective("20X")
    curve = oracle_curve(obj)
    scorer = OracleScorer(FrameTruth(), curve)
    af = AutofocusHook(scorer, curve, objective=obj, every="never")
    assert FlaggingHook(scorer, autofocus=af).flagger.objective == obj
    assert FlaggingHook(scorer, "40X", autofocus=af).flagger.objective == get_objective("40X")
    no_objective = AutofocusHook(scorer, curve, every="never")
    assert FlaggingHook(scorer, autofocus=no_objective).flagger.objective is None
