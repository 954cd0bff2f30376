"""OughtaFocus-like baselines: Brent over a range and a z-stack sweep with a peak fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autofocus.baselines import brent_focus, zstack_focus
from autofocus.errors import InvalidInputError


def _sharpness(z_true: float, width: float = 6.0, plateau: float = 0.0):
    calls: list[float] = []

    def measure(z: float) -> float:
        calls.append(z)
        return float(np.exp(-((z - z_true) ** 2) / (2 * width**2)) + plateau)

    return measure, calls


def test_brent_finds_peak_inside_range_within_tolerance() -> None:
    m, calls = _sharpness(2.3)
    r = brent_focus(m, 0.0, search_range_um=10.0, tolerance_um=0.1)
    assert abs(r.z_um - 2.3) < 0.2
    assert r.images_used == len(set(round(c, 6) for c in calls)) == len(r.trace)
    assert all(-5.0 <= z <= 5.0 for z, _ in r.trace)


def test_brent_cannot_reach_focus_outside_its_range() -> None:
    # OughtaFocus with 10 um range: focus 30 um away is out of reach; it ends at an edge
    m, _ = _sharpness(30.0)
    r = brent_focus(m, 0.0, search_range_um=10.0, tolerance_um=1.0)
    assert r.z_um == pytest.approx(5.0, abs=1.0)


def test_brent_respects_image_budget_and_limits() -> None:
    m, calls = _sharpness(3.0)
    r = brent_focus(
        m, 0.0, search_range_um=40, tolerance_um=0.01, max_images=5, z_limits_um=(-4.0, 10.0)
    )
    assert r.images_used <= 5
    assert all(-4.0 <= z <= 10.0 for z in calls)


def test_brent_more_images_more_accuracy() -> None:
    errs = []
    for n in (4, 12):
        m, _ = _sharpness(3.7)
        errs.append(
            abs(brent_focus(m, 0.0, search_range_um=30, tolerance_um=0.01, max_images=n).z_um - 3.7)
        )
    assert errs[1] < errs[0]


def test_zstack_gaussian_fit_between_slices() -> None:
    m, calls = _sharpness(1.37, width=3.0, plateau=0.2)
    r = zstack_focus(m, 0.0, search_range_um=20.0, step_um=2.0)
    assert r.images_used == 11 == len(calls)
    assert abs(r.z_um - 1.37) < 0.05
    # not simply the best slice
    assert min(abs(z - r.z_um) for z, _ in r.trace) > 0.2


def test_zstack_nonfinite_metric_is_handled() -> None:
    r = zstack_focus(lambda z: math.nan, 0.0, search_range_um=4, step_um=1)
    assert r.z_um == 0.0


@pytest.mark.parametrize("kw", [{"search_range_um": 0}, {"search_range_um": math.nan}])
def test_bad_range(kw: dict) -> None:
    with pytest.raises(InvalidInputError):
        brent_focus(lambda z: 0.0, 0.0, **kw)
