"""Event normalisation and the Java-backend event shapes, driven without an engine."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hook_fixtures import OracleScorer, oracle_curve

from autofocus.errors import InvalidInputError
from hooks.pycromanager import (
    AutofocusHook,
    as_event_list,
    event_position_key,
    event_time_index,
    metadata_position_key,
    normalise_event,
    z_centres_um,
)


def test_normalise_event_converts_numpy_and_copies() -> None:
    ev = {
        "axes": {"time": np.int64(2), "position": np.int64(1), "z": np.int32(0)},
        "x": np.float64(10.0),
        "y": np.int64(5),
        "z": np.int64(9),
        "min_start_time": np.float64(1.5),
        "config_group": ["Channel", "DAPI"],
    }
    out = normalise_event(ev)
    assert out is not ev and out["axes"] is not ev["axes"]
    assert type(out["z"]) is float and out["z"] == 9.0
    assert type(out["axes"]["time"]) is int and type(out["x"]) is float
    json.dumps(out)  # plain Python all the way down
    assert event_position_key(ev) == 1 and event_time_index(ev) == 2


def test_as_event_list_shapes_and_bad_input() -> None:
    e = {"axes": {"time": 0}, "z": 1.0}
    assert as_event_list(e) == ([e], False)
    events, is_list = as_event_list([e, e])
    assert is_list and len(events) == 2 and events[0] is not e
    events, is_list = as_event_list({"events": [e]})  # the Java bridge's sequence wrapper
    assert is_list and events == [e]
    for bad in (None, 3, "event", [], {"z": float("nan")}, {"z": "high"}):
        with pytest.raises(InvalidInputError):
            as_event_list(bad)


def test_position_keys_agree_between_events_and_metadata() -> None:
    ev = {"axes": {"time": 0}, "x": 12.0, "y": -3.0}
    md = {"Axes": {"time": 0}, "XPosition_um_Intended": 12.0, "YPosition_um_Intended": -3.0}
    assert event_position_key(ev) == metadata_position_key(md) == ("xy", 12.0, -3.0)
    assert event_position_key({"axes": {"position": "A1"}}) == "A1"
    assert event_position_key({"axes": {}}) is None


def test_z_centres_from_nested_event_lists() -> None:
    from pycromanager import multi_d_acquisition_events

    events = multi_d_acquisition_events(
        xyz_positions=[[0, 0, 10.0], [100, 0, -4.0]], z_start=-2, z_end=2, z_step=1
    )
    assert z_centres_um(events) == {0: pytest.approx(10.0), 1: pytest.approx(-4.0)}
    assert z_centres_um(
        [[{"axes": {"position": "B"}, "z": 1.0}, {"axes": {"position": "B"}, "z": 3.0}]]
    ) == {"B": 2.0}


class _JavaLikeEngine:
    """Mimics the Java engine's order with 2-argument hooks: pre -> XY/Z -> post -> snap."""

    def __init__(self, core: Any, hook: AutofocusHook) -> None:
        self.core = core
        self.hook = hook
        self.queue: list[Any] = []

    def run(self, event: Any) -> Any:
        ev = self.hook.pre_hardware(event, self.queue)
        assert ev is not None
        first = ev[0] if isinstance(ev, list) else ev
        if "x" in first:
            self.core.setXYPosition(first["x"], first["y"])
        if "z" in first:
            self.core.setPosition("Z", first["z"])
        ev = self.hook.post_hardware(ev, self.queue)
        assert ev is not None
        self.core.snapImage()
        self.core.getImage()
        return ev


def test_java_shaped_events_dict_list_numpy_min_start_time(demo_core, truth) -> None:
    from autofocus.microscope import CoreMicroscope
    from simulators.core import get_virtual_microscope

    vm = get_virtual_microscope(demo_core)
    with vm.lock:
        vm.focus_z_um = 7.0
    curve = oracle_curve(vm.objective)
    hook = AutofocusHook(
        OracleScorer(truth, curve),
        curve,
        microscope=CoreMicroscope(demo_core, objective=vm.objective),
        objective=vm.objective,
    )
    engine = _JavaLikeEngine(demo_core, hook)
    # a z-stack slice with numpy values and a fractional min_start_time
    ev = {
        "axes": {"time": np.int64(0), "position": np.int64(0), "z": np.int64(0)},
        "x": np.float64(0.0),
        "y": np.float64(0.0),
        "z": np.float64(-2.0),
        "min_start_time": np.float64(2.5),
    }
    out = engine.run(ev)
    assert "min_start_time" not in out and "tags" not in out
    json.dumps(out)
    assert out["z"] == pytest.approx(7.0 - 2.0, abs=0.3)  # re-centred on the found focus
    assert hook.offset_um(0) == pytest.approx(7.0, abs=0.3)
    # the centre slice of the same stack: no new search, offset applied by the pre hook
    out = engine.run({**ev, "axes": {"time": 0, "position": 0, "z": 1}, "z": 0.0})
    assert out["z"] == pytest.approx(hook.offset_um(0))
    assert abs(vm.dz_um()) < 0.3
    # a merged sequence (list) without z at the next time point: focus applied to all
    seq = [{"axes": {"time": 1, "position": 0}, "x": 0.0, "y": 0.0, "min_start_time": 60.25}] * 2
    out = engine.run(seq)
    assert isinstance(out, list) and len(out) == 2
    assert all(
        "min_start_time" not in e and e["z"] == pytest.approx(hook.focus_z_um(0)) for e in out
    )
    assert hook.summary().n_autofocus == 2 and hook.summary().errors == ()
