"""Tests for simulators.drift: values, determinism, query-order independence, parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autofocus.errors import InvalidInputError
from simulators.drift import (
    CompositeDrift,
    DriftModel,
    JumpDrift,
    LinearDrift,
    NoDrift,
    RandomWalkDrift,
    make_drift,
)


def test_zero_at_start_for_every_model() -> None:
    models = [
        NoDrift(),
        LinearDrift(0.3),
        RandomWalkDrift(0.5, seed=4),
        JumpDrift([1.0, 2.0], [3.0, -1.0]),
        CompositeDrift([LinearDrift(1.0), RandomWalkDrift(0.1, seed=1)]),
    ]
    for m in models:
        assert isinstance(m, DriftModel)
        assert m.offset_um(0.0) == 0.0


def test_linear_and_jump_values() -> None:
    assert LinearDrift(0.05).offset_um(20.0) == pytest.approx(1.0)
    assert LinearDrift(-0.2).offset_um(5.0) == pytest.approx(-1.0)
    j = JumpDrift([30.0, 10.0], [2.0, -0.5])  # unsorted on purpose
    assert j.offset_um(9.999) == 0.0
    assert j.offset_um(10.0) == pytest.approx(-0.5)  # the step applies at its time
    assert j.offset_um(29.0) == pytest.approx(-0.5)
    assert j.offset_um(30.0) == pytest.approx(1.5)
    assert j.offset_um(1e6) == pytest.approx(1.5)


def test_composite_is_the_sum() -> None:
    parts = [LinearDrift(0.1), JumpDrift([5.0], [2.0]), RandomWalkDrift(0.3, seed=2)]
    c = CompositeDrift(parts)
    for t in (0.0, 3.3, 5.0, 17.25, 400.0):
        assert c.offset_um(t) == pytest.approx(sum(p.offset_um(t) for p in parts))


def test_random_walk_deterministic_and_order_independent() -> None:
    times = np.linspace(0, 5000, 301)
    a = RandomWalkDrift(0.2, seed=11)
    forward = [a.offset_um(t) for t in times]
    b = RandomWalkDrift(0.2, seed=11)
    backward = [b.offset_um(t) for t in times[::-1]][::-1]
    assert forward == backward
    c = RandomWalkDrift(0.2, seed=12)
    assert [c.offset_um(t) for t in times] != forward
    # repeated queries agree with themselves
    assert a.offset_um(1234.5) == a.offset_um(1234.5)


def test_random_walk_interpolates_linearly_between_grid_points() -> None:
    w = RandomWalkDrift(1.0, seed=3, dt_s=2.0)
    y0, y1 = w.offset_um(10.0), w.offset_um(12.0)
    assert w.offset_um(10.5) == pytest.approx(y0 + 0.25 * (y1 - y0))


def test_random_walk_variance_grows_like_sigma_squared_t() -> None:
    sigma, t = 0.3, 400.0
    vals = np.array([RandomWalkDrift(sigma, seed=s).offset_um(t) for s in range(400)])
    expected_sd = sigma * math.sqrt(t)
    assert abs(vals.mean()) < 4 * expected_sd / math.sqrt(vals.size)
    assert vals.std() == pytest.approx(expected_sd, rel=0.15)


def test_random_walk_spans_many_blocks() -> None:
    w = RandomWalkDrift(0.1, seed=0)
    far = w.offset_um(5000.0)  # > 4 blocks of 1024 steps
    assert math.isfinite(far) and far != 0.0
    assert RandomWalkDrift(0.1, seed=0).offset_um(5000.0) == far


def test_bad_times_and_parameters() -> None:
    with pytest.raises(InvalidInputError):
        LinearDrift(0.1).offset_um(-1.0)
    with pytest.raises(InvalidInputError):
        NoDrift().offset_um(float("nan"))
    with pytest.raises(InvalidInputError):
        LinearDrift(float("inf"))
    with pytest.raises(InvalidInputError):
        RandomWalkDrift(-0.1)
    with pytest.raises(InvalidInputError):
        RandomWalkDrift(0.1, dt_s=0)
    with pytest.raises(InvalidInputError):
        RandomWalkDrift(0.1, seed=-3)
    with pytest.raises(InvalidInputError):
        JumpDrift([0.0], [1.0])  # would break offset(0) == 0
    with pytest.raises(InvalidInputError):
        JumpDrift([1.0, 2.0], [1.0])


def test_make_drift_text_spec() -> None:
    d = make_drift("linear:0.05,walk:0.02,jump:30@12.5", seed=5)
    assert isinstance(d, CompositeDrift)
    walk = RandomWalkDrift(0.02, seed=5)
    for t in (0.0, 12.0, 12.5, 100.0):
        expected = 0.05 * t + walk.offset_um(t) + (30.0 if t >= 12.5 else 0.0)
        assert d.offset_um(t) == pytest.approx(expected)
    assert isinstance(make_drift("linear:0.1"), LinearDrift)
    assert isinstance(make_drift("none"), NoDrift)
    assert isinstance(make_drift(""), NoDrift)
    assert isinstance(make_drift(None), NoDrift)
    assert make_drift(" Linear : -0.5 ").offset_um(2.0) == pytest.approx(-1.0)
    lin = LinearDrift(1.0)
    assert make_drift(lin) is lin


def test_make_drift_dict_spec() -> None:
    d = make_drift({"linear": 0.1, "jumps": [{"size_um": -2.0, "time_s": 3.0}]})
    assert d.offset_um(2.0) == pytest.approx(0.2)
    assert d.offset_um(4.0) == pytest.approx(0.4 - 2.0)
    w = make_drift({"walk": 0.5, "seed": 9, "walk_dt_s": 0.5})
    assert w.offset_um(7.0) == RandomWalkDrift(0.5, seed=9, dt_s=0.5).offset_um(7.0)


@pytest.mark.parametrize(
    "spec",
    [
        "linear",
        "linear:",
        "linear:abc",
        "wobble:0.1",
        "jump:30",
        "jump:30@-1",
        "jump:x@1",
        "linear:0.1,,walk:0.1",
        "walk:-1",
        "linear:nan",
        {"linaer": 0.1},
        {"jumps": [{"size_um": 1.0}]},
        {"jumps": "1@2"},
        42,
    ],
)
def test_make_drift_rejects_bad_specs(spec: object) -> None:
    with pytest.raises(InvalidInputError):
        make_drift(spec)  # type: ignore[arg-type]
