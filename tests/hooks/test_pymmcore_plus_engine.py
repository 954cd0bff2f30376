"""pymmcore-plus MDAs with :class:`hooks.pymmcore_plus.AutofocusEngine` (virtual microscope)."""

from __future__ import annotations

from typing import Any

import pytest
import useq
from hook_fixtures import FrameTruth, OracleScorer, oracle_curve

from autofocus.errors import FocusSearchError, InvalidInputError
from hooks.metadata import flags_from_metadata
from hooks.pymmcore_plus import AutofocusEngine
from simulators.core import create_demo_core, get_virtual_microscope, unload


@pytest.fixture
def drifting_core() -> Any:
    core = create_demo_core(
        sensor_shape=(64, 64),
        objective="20X",
        focus_z_um=4.0,
        drift="linear:0.02",
        focus_tilt_um_per_um=(0.01, 0.0),
        seconds_per_frame=2.0,
    )
    try:
        yield core
    finally:
        unload(core)


def _run(core: Any, engine: AutofocusEngine, seq: useq.MDASequence) -> list[tuple]:
    vm = get_virtual_microscope(core)
    frames: list[tuple] = []

    def on_frame(img: Any, event: useq.MDAEvent, meta: dict) -> None:
        frames.append((dict(event.index), dict(vm.last_frame_info), dict(meta)))

    core.mda.set_engine(engine)
    core.mda.events.frameReady.connect(on_frame)
    try:
        core.mda.run(seq)
    finally:
        core.mda.events.frameReady.disconnect(on_frame)
    return frames


def test_axes_based_af_recentres_stacks_per_position(drifting_core, truth: FrameTruth) -> None:
    vm = get_virtual_microscope(drifting_core)
    curve = oracle_curve(vm.objective)
    engine = AutofocusEngine(
        drifting_core, OracleScorer(truth, curve), curve, objective=vm.objective
    )
    seq = useq.MDASequence(
        stage_positions=[(0.0, 0.0, 0.0), (300.0, 0.0, 0.0)],
        time_plan={"interval": 0, "loops": 3},
        z_plan={"range": 4, "step": 2},
        autofocus_plan=useq.AxesBasedAF(axes=("t", "p")),
    )
    frames = _run(drifting_core, engine, seq)
    assert len(frames) == 18
    for index, info, meta in frames:
        rel = (index["z"] - 1) * 2.0
        assert info["dz_um"] == pytest.approx(rel, abs=0.3)  # stack centred on the focus
        flags = flags_from_metadata(meta)
        assert flags is not None and flags.verdict == "in_focus"
        assert abs(meta["AutofocusOffsetUm"]) < 20  # the correction in force for the frame
    s = engine.summary()
    assert s.n_autofocus == 6 and s.n_failed == 0
    # independent corrections: the positions' focus differs by the slide tilt (3 um) plus
    # the linear drift (0.04 um per 2 s frame) over the frames between the two autofocus
    # runs (position 0's 3-slice stack and position 1's autofocus images, <= 8)
    diff = engine.z_correction_um(1) - engine.z_correction_um(0)
    assert 3.0 - 0.15 <= diff <= 3.0 + 0.04 * (3 + 8) + 0.15
    assert engine.flag_summary().frames_scored == 18


def test_failure_policy_raise_ends_the_mda(drifting_core, truth: FrameTruth) -> None:
    vm = get_virtual_microscope(drifting_core)
    curve = oracle_curve(vm.objective)
    engine = AutofocusEngine(
        drifting_core,
        OracleScorer(truth, curve, fail_after=1),
        curve,
        on_failure="raise",
        flag=False,
    )
    seq = useq.MDASequence(
        time_plan={"interval": 0, "loops": 3}, autofocus_plan=useq.AxesBasedAF(axes=("t",))
    )
    with pytest.raises(FocusSearchError):  # the MDA ends with the error
        _run(drifting_core, engine, seq)
    assert engine.summary().errors
    with pytest.raises(FocusSearchError):
        engine.check()
    lo, hi = vm.z_limits_um
    assert lo <= vm.z_um <= hi


def test_flagging_only_engine_marks_out_of_focus_frames(drifting_core, truth: FrameTruth) -> None:
    vm = get_virtual_microscope(drifting_core)
    curve = oracle_curve(vm.objective)
    engine = AutofocusEngine(
        drifting_core, OracleScorer(truth, curve), None, objective=vm.objective
    )
    seq = useq.MDASequence(z_plan={"top": 8.0, "bottom": 0.0, "step": 4.0})
    frames = _run(drifting_core, engine, seq)
    verdicts = [(round(info["dz_um"]), meta["FocusVerdict"]) for _, info, meta in frames]
    assert [v for _, v in verdicts] == [
        "out_of_focus" if abs(dz) > vm.objective.dof_um else "in_focus" for dz, _ in verdicts
    ]
    assert {v for _, v in verdicts} == {"in_focus", "out_of_focus"}


def test_tracking_reuses_each_positions_focus_blur(drifting_core, truth: FrameTruth) -> None:
    """A specimen 8 px blurrier at focus than the calibration: the first autofocus at a
    position cannot know it starts near focus; later ones get its focus b from the last
    search there and bracket with the flank pair (z -/+ d after the first image)."""
    from autofocus.search import FocusSearch, SearchConfig

    vm = get_virtual_microscope(drifting_core)
    curve = oracle_curve(vm.objective)
    scorer = OracleScorer(truth, curve, offset_px=8.0)
    engine = AutofocusEngine(drifting_core, scorer, curve, objective=vm.objective)
    seq = useq.MDASequence(
        stage_positions=[(0.0, 0.0, 0.0), (300.0, 0.0, 0.0)],
        time_plan={"interval": 0, "loops": 4},
        autofocus_plan=useq.AxesBasedAF(axes=("t", "p")),
    )
    frames = _run(drifting_core, engine, seq)
    for _, info, _ in frames:
        assert abs(info["dz_um"]) < 0.3
    recs = engine.records()
    assert len(recs) == 8 and all(r.status == "converged" for r in recs)
    first = {r.position: r for r in reversed(recs)}
    later = [r for r in recs if r is not first[r.position]]
    d = FocusSearch(0.0, curve, SearchConfig()).flank_um
    for r in first.values():
        assert r.images_used > 4 and abs(r.trace[1][0] - (r.z_start_um - d)) > 0.5 * d
    for r in later:
        assert r.trace[1][0] == pytest.approx(r.z_start_um - d)
        assert r.trace[2][0] == pytest.approx(r.z_start_um + d)
        assert r.images_used <= 4


def test_corrected_events_stay_inside_the_soft_limits(drifting_core, truth: FrameTruth) -> None:
    """Focus at ~4 um, a 3-slice stack of +/-4 um around it and a soft limit at 6 um: the
    top slice (about 8 um) goes to the limit, not past it."""
    vm = get_virtual_microscope(drifting_core)
    curve = oracle_curve(vm.objective)
    engine = AutofocusEngine(
        drifting_core,
        OracleScorer(truth, curve),
        curve,
        objective=vm.objective,
        z_limits_um=(-40.0, 6.0),
    )
    seq = useq.MDASequence(
        stage_positions=[(0.0, 0.0, 0.0)],
        time_plan={"interval": 0, "loops": 2},
        z_plan={"range": 8, "step": 4},
        autofocus_plan=useq.AxesBasedAF(axes=("t", "p")),
    )
    frames = _run(drifting_core, engine, seq)
    assert len(frames) == 6
    assert engine.z_correction_um(0) > 3.0  # the stack was re-centred on the focus
    zs = [info["z_um"] for _, info, _ in frames]
    assert max(zs) == pytest.approx(6.0)
    assert all(-40.0 <= z <= 6.0 for z in zs)


@pytest.mark.parametrize("limits", [(50.0, -50.0), (0.0, float("nan")), (1.0,), "ab"])
def test_bad_soft_limits_are_refused_when_the_engine_is_made(drifting_core, limits) -> None:
    curve = oracle_curve(get_virtual_microscope(drifting_core).objective)
    with pytest.raises(InvalidInputError, match="z_limits_um"):
        AutofocusEngine(drifting_core, None, curve, z_limits_um=limits)


def test_an_unknown_objective_is_refused_when_the_engine_is_made(
    drifting_core, truth: FrameTruth
) -> None:
    from autofocus.errors import UnknownNameError

    curve = oracle_curve(get_virtual_microscope(drifting_core).objective)
    scorer = OracleScorer(truth, curve)
    with pytest.raises(UnknownNameError):
        AutofocusEngine(drifting_core, scorer, curve, objective="999X")
    engine = AutofocusEngine(drifting_core, scorer, curve, objective="20x")
    assert engine.flagger is not None and engine.flagger.objective.name == "20X"


def test_a_flagging_failure_under_raise_hands_on_the_frame_then_ends(
    drifting_core, truth: FrameTruth
) -> None:
    from autofocus.errors import AutofocusTimeoutError

    curve = oracle_curve(get_virtual_microscope(drifting_core).objective)
    bad = OracleScorer(truth, curve, fail_after=1, error=AutofocusTimeoutError("timed out"))
    engine = AutofocusEngine(drifting_core, bad, None, on_failure="raise")
    seq = useq.MDASequence(time_plan={"interval": 0, "loops": 3})
    frames: list[tuple] = []
    drifting_core.mda.events.frameReady.connect(
        lambda img, event, meta: frames.append((dict(event.index), "FocusVerdict" in meta))
    )
    with pytest.raises(AutofocusTimeoutError):
        _run(drifting_core, engine, seq)
    # the failing frame reached frameReady (unscored); the third was never acquired
    assert frames == [({"t": 0}, True), ({"t": 1}, False)]
