"""The few-image autofocus search: convexity test, matching, expansion, limits, policies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from focus_oracle import OracleScorer, make_score, oracle_b

from autofocus.curve import BlurCurve
from autofocus.errors import FocusSearchError, HardwareError, InvalidInputError, StageLimitError
from autofocus.search import (
    FocusSearch,
    SearchConfig,
    convexity_test,
    find_focus,
    match_curve,
)

K = 1.0  # px of blur per um (oracle slope)
CURVE = BlurCurve(baseline_px=62.0, amplitude_px=60.0, gamma_um=30.0, alpha=0.6, residual_sd_px=0.3)


def _calibrated_curve() -> BlurCurve:
    from calibration.fit import fit_blur_curve

    dz = np.arange(-90.0, 90.5, 3.0)
    return fit_blur_curve(dz, oracle_b(dz, K)).curve


@pytest.fixture(scope="module")
def curve() -> BlurCurve:
    return _calibrated_curve()


# ------------------------------------------------------------------ convexity
def test_convexity_v_shape_is_bracketed() -> None:
    r = convexity_test([-10, 0, 10], [10, 1, 9], noise_sd_px=0.3)
    assert r.bracketed
    assert r.r2_quadratic == pytest.approx(1.0)
    assert r.r2_linear < 0.1
    assert r.curvature > 0 and -10 < r.vertex_um < 10


def test_convexity_r2_is_computed_on_b() -> None:
    z = np.array([0.0, 1.0, 2.0, 3.0])
    b = np.array([5.0, 2.0, 2.5, 6.0])
    r = convexity_test(z, b, noise_sd_px=0.1)
    fit = np.polyval(np.polyfit(z, b, 1), z)
    expected = 1 - np.sum((b - fit) ** 2) / np.sum((b - b.mean()) ** 2)
    assert r.r2_linear == pytest.approx(expected)
    assert r.bracketed


@pytest.mark.parametrize(
    ("z", "b", "why"),
    [
        ([-10, 0, 10], [9, 5, 1], "end"),  # monotone: lowest at an end
        ([-10, 0, 10], [5.0, 4.9, 5.1], "noise"),  # dip within noise
        ([0, 1, 2, 3, 4], [9, 7, 5, 3, 1], "end"),
    ],
)
def test_convexity_rejects(z: list[float], b: list[float], why: str) -> None:
    r = convexity_test(z, b, noise_sd_px=0.3)
    assert not r.bracketed
    assert why in r.reason


def test_convexity_rejects_nearly_linear_with_tiny_dip() -> None:
    # interior minimum that beats the noise, but the data is essentially a line
    z = np.linspace(0, 10, 6)
    b = 10 - z + np.array([0, 0, 0, 0, -4.0, 0]) * 0 + np.array([0, 0, 0, 0, 0, 1.5])
    b[4] = b[5] - 1.4  # a dip at the second-last point
    r = convexity_test(z, b, noise_sd_px=0.1, min_r2_gain=0.2)
    assert not r.bracketed


def test_convexity_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        convexity_test([0, 1], [1, 2])
    with pytest.raises(InvalidInputError):
        convexity_test([0, 1, 2], [1, math.nan, 2])


# ------------------------------------------------------------------ matching
def test_match_recovers_shift_gain_offset() -> None:
    z = np.array([-40.0, -15.0, 0.0, 12.0, 35.0])
    b = 1.3 * CURVE(z - 4.2) + 2.5
    r = match_curve(z, b, CURVE, noise_sd_px=0.05, gain_prior_sd=100, offset_prior_frac=100)
    assert r.z_um[0] == pytest.approx(4.2, abs=0.02)
    assert r.gain[0] == pytest.approx(1.3, abs=0.01)
    assert r.offset_px[0] == pytest.approx(2.5, abs=0.1)
    assert r.rms_norm[0] < 0.1


def test_match_gain_offset_matters() -> None:
    # without the gain/offset terms a brighter specimen would bias an asymmetric bracket
    z = np.array([-50.0, -10.0, 30.0])
    b = 0.7 * CURVE(z - 6.0) + 8.0
    free = match_curve(z, b, CURVE, noise_sd_px=0.1, gain_prior_sd=100, offset_prior_frac=100)
    tight = match_curve(
        z, b, CURVE, noise_sd_px=0.1, gain_bounds=(1.0, 1.0), offset_prior_frac=1e-6
    )
    assert abs(free.z_um[0] - 6.0) < 0.1
    assert abs(tight.z_um[0] - 6.0) > 5 * abs(free.z_um[0] - 6.0)


def test_match_per_roi_columns_with_missing() -> None:
    z = np.array([-30.0, 0.0, 30.0, 10.0])
    shifts = np.array([-3.0, 0.0, 2.5])
    b = np.stack([CURVE(z - s) for s in shifts], axis=1)
    b[3, 1] = np.nan  # one ROI lost texture in one image
    r = match_curve(z, b, CURVE, noise_sd_px=0.05)
    np.testing.assert_allclose(r.z_um, shifts, atol=0.1)
    assert list(r.n_points) == [4, 3, 4]


# ------------------------------------------------------------------ find_focus (synthetic)
def _measure(z_true: float, gain: float = 1.0, offset: float = 0.0, noise: float = 0.2, seed=0):
    rng = np.random.default_rng(seed)

    def measure(z: float) -> float:
        return float(oracle_b(z - z_true, K) * gain + offset + rng.normal(0, noise))

    return measure


@pytest.mark.parametrize("start_offset", [-45.0, -20.0, -3.0, 4.0, 25.0, 48.0])
def test_find_focus_reaches_focus_from_both_sides(curve: BlurCurve, start_offset: float) -> None:
    z_true = 12.0
    cfg = SearchConfig(z_limits_um=(-500, 500))
    res = find_focus(_measure(z_true, 1.1, 0.8), z_true + start_offset, curve, cfg)
    assert res.status == "converged"
    assert abs(res.z_um - z_true) < 1.0
    assert res.images_used <= cfg.max_images
    # the final position is the matched estimate, not a sampled z
    assert res.z_um == res.z_estimate_um
    assert min(abs(z - res.z_um) for z, _ in res.trace) > 1e-6


def test_search_state_machine_protocol(curve: BlurCurve) -> None:
    s = FocusSearch(0.0, curve, SearchConfig(z_limits_um=(-200, 200)))
    m = _measure(5.0)
    first = s.next_z_um()
    assert first == 0.0  # z1 is the start
    n = 0
    while (z := s.next_z_um()) is not None:
        s.observe(z, m(z))
        n += 1
    assert s.result.images_used == n
    with pytest.raises(FocusSearchError):
        s.observe(0.0, 1.0)


def test_result_before_finish_is_an_error(curve: BlurCurve) -> None:
    s = FocusSearch(0.0, curve)
    with pytest.raises(FocusSearchError):
        _ = s.result


# ------------------------------------------------------------------ limits and expansion
def test_expansion_towards_soft_limit_never_exceeds_it(curve: BlurCurve) -> None:
    lims = (-60.0, 60.0)
    requested: list[float] = []
    m = _measure(55.0)

    def measure(z: float) -> float:
        requested.append(z)
        return m(z)

    res = find_focus(measure, -50.0, curve, SearchConfig(z_limits_um=lims, model_jump=False))
    assert all(lims[0] <= z <= lims[1] for z in requested)
    assert lims[0] <= res.z_um <= lims[1]
    assert res.status == "converged"
    assert abs(res.z_um - 55.0) < 1.5


def test_focus_beyond_soft_limit_fails_inside_limits(curve: BlurCurve) -> None:
    lims = (-50.0, 50.0)
    requested: list[float] = []
    m = _measure(140.0)

    def measure(z: float) -> float:
        requested.append(z)
        return m(z)

    res = find_focus(measure, 0.0, curve, SearchConfig(z_limits_um=lims, on_failure="warn"))
    assert res.status == "failed"
    assert "limit" in res.reason or "bracket" in res.reason
    assert all(lims[0] <= z <= lims[1] for z in requested)
    assert lims[0] <= res.z_um <= lims[1]
    assert 50.0 in requested  # the expansion went up to the limit, not beyond


def test_golden_expansion_steps_grow(curve: BlurCurve) -> None:
    cfg = SearchConfig(
        z_limits_um=(-1000, 1000), model_jump=False, max_bracket_half_width_um=5, max_images=12
    )
    s = FocusSearch(0.0, curve, cfg)
    m = _measure(-80.0)
    zs = []
    while (z := s.next_z_um()) is not None:
        s.observe(z, m(z))
        zs.append(z)
    # expansion points head downhill (towards -80) with golden-ratio growing steps
    expansion = [z for z in zs[3:] if z < -5.0]
    assert len(expansion) >= 2
    steps = -np.diff([-5.0, *expansion[:3]])
    assert np.all(steps > 0)
    assert steps[1] / steps[0] == pytest.approx(1.618, rel=0.05)
    assert abs(s.result.z_um + 80.0) < 2.0


def test_start_outside_limits_is_refused(curve: BlurCurve) -> None:
    with pytest.raises(StageLimitError):
        FocusSearch(100.0, curve, SearchConfig(z_limits_um=(-10, 10)))


# ------------------------------------------------------------------ empty fields, NaN, hardware
def test_empty_field_is_undetermined_and_does_not_move(curve: BlurCurve) -> None:
    res = find_focus(lambda z: math.nan, 3.0, curve, SearchConfig(on_failure="warn"))
    assert res.status == "undetermined"
    assert res.z_um == 3.0
    assert res.images_used == 3


def test_undetermined_focus_score_counts_as_empty(curve: BlurCurve) -> None:
    res = find_focus(lambda z: make_score(math.nan), 0.0, curve, SearchConfig())
    assert res.status == "undetermined"


def test_undetermined_raises_under_raise_policy(curve: BlurCurve) -> None:
    with pytest.raises(FocusSearchError) as info:
        find_focus(lambda z: math.nan, 0.0, curve, SearchConfig(on_failure="raise"))
    assert info.value.result.status == "undetermined"  # type: ignore[attr-defined]


def test_bad_measure_type(curve: BlurCurve) -> None:
    with pytest.raises(InvalidInputError):
        find_focus(lambda z: "sharp", 0.0, curve)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("policy", ["raise", "warn", "keep_last"])
def test_hardware_error_follows_policy(curve: BlurCurve, policy: str) -> None:
    calls = []

    def measure(z: float) -> float:
        calls.append(z)
        if len(calls) == 2:
            raise HardwareError("stage refused the move")
        return 5.0

    cfg = SearchConfig(on_failure=policy)  # type: ignore[arg-type]
    if policy == "raise":
        with pytest.raises(FocusSearchError) as info:
            find_focus(measure, 1.0, curve, cfg)
        assert isinstance(info.value.__cause__, HardwareError)
    else:
        res = find_focus(measure, 1.0, curve, cfg)
        assert res.status == "failed"
        assert res.z_um == 1.0
        assert "hardware" in res.reason


def test_keep_last_returns_start_on_failure(curve: BlurCurve) -> None:
    res = find_focus(
        _measure(400.0), 0.0, curve, SearchConfig(z_limits_um=(-50, 50), on_failure="keep_last")
    )
    assert res.status == "failed"
    assert res.z_um == 0.0


# ------------------------------------------------------------------ per ROI
def test_per_roi_median_rejects_an_outlier_region(curve: BlurCurve) -> None:
    z_true = 7.0
    rng = np.random.default_rng(1)

    def measure(z: float):
        roi = oracle_b(np.full((3, 3), z - z_true), K) + rng.normal(0, 0.2, (3, 3))
        roi[0, 0] = float(oracle_b(z - z_true - 30.0, K))  # a debris particle 30 um off
        roi[2, 2] = np.nan  # an empty corner
        return make_score(float(np.nanmedian(roi)), roi)

    res = find_focus(measure, -20.0, curve, SearchConfig(z_limits_um=(-300, 300)))
    assert res.status == "converged"
    assert res.n_rois == 8
    assert abs(res.z_um - z_true) < 1.0


# ------------------------------------------------------------------ on the simulator
def test_find_focus_on_simulator_oracle_both_sides() -> None:
    """Virtual microscope through CoreMicroscope, scored by the ground-truth oracle."""
    from autofocus.microscope import CoreMicroscope, autofocus_on
    from simulators.core import create_demo_core, get_virtual_microscope, unload

    core = create_demo_core(sensor_shape=(64, 64), seed=0, objective="10X", focus_z_um=10.0)
    try:
        vm = get_virtual_microscope(core)
        obj = vm.objective
        k = 2 * math.tan(obj.half_angle_rad) / obj.pixel_size_um
        dz = np.arange(-120.0, 120.1, obj.dof_um / 2)
        from calibration.fit import fit_blur_curve

        cal = fit_blur_curve(dz, oracle_b(dz, k)).curve
        scope = CoreMicroscope(core, objective=obj)
        scorer = OracleScorer(vm, noise_px=0.2)
        for start in (10.0 - 6 * obj.dof_um, 10.0 + 6 * obj.dof_um):
            scope.set_z_um(start)
            res = autofocus_on(scope, scorer, cal, SearchConfig())
            assert res.status == "converged"
            assert abs(scope.get_z_um() - vm.true_focus_um()) < obj.dof_um / 4
    finally:
        unload(core)


_WEIGHTS = Path(__file__).resolve().parents[2] / "autofocus" / "weights" / "regressor.pt"


@pytest.mark.skipif(not _WEIGHTS.is_file(), reason="trained weights autofocus/weights/ absent")
def test_find_focus_on_simulator_real_scorer_both_sides() -> None:
    from autofocus.microscope import CoreMicroscope, autofocus_on
    from autofocus.scorer import LocalScorer
    from calibration.wizard import calibrate
    from simulators.core import create_demo_core, get_virtual_microscope, unload

    core = create_demo_core(
        specimen="calibration_slide", sensor_shape=(256, 256), objective="10X", focus_z_um=0.0
    )
    try:
        vm = get_virtual_microscope(core)
        obj = vm.objective
        scope = CoreMicroscope(core, objective=obj)
        scorer = LocalScorer()
        cal = calibrate(scope, scorer, obj, range_um=10 * obj.dof_um, step_um=obj.dof_um / 2)
        for specimen in ("tissue", "phase"):  # fluorescence; a brightfield phase object
            vm.set_specimen(specimen, seed=3)
            for start in (-5 * obj.dof_um, 5 * obj.dof_um):
                scope.set_z_um(start)
                res = autofocus_on(scope, scorer, cal, SearchConfig())
                assert res.status == "converged", res.reason
                assert abs(scope.get_z_um() - vm.true_focus_um()) < obj.dof_um / 4
                assert ("contrast inverts" in res.reason) == (specimen == "phase")
    finally:
        unload(core)


# ------------------------------------------------------------------ symmetric flank pair
def _flank_pair(res, search: FocusSearch) -> tuple[float, float] | None:
    d = search.flank_um
    zs = [z for z, b in res.trace if math.isfinite(b)]
    left = [z for z in zs if 0.5 * d <= res.z_um - z <= 1.5 * d]
    right = [z for z in zs if 0.5 * d <= z - res.z_um <= 1.5 * d]
    pairs = [(a, c) for a in left for c in right]
    if not pairs:
        return None
    return min(pairs, key=lambda p: abs((res.z_um - p[0]) - (p[1] - res.z_um)))


@pytest.mark.parametrize("start_offset", [-70.0, -12.0, 0.0, 9.0, 55.0])
def test_pair_refinement_pins_focus_despite_gain_and_offset(
    curve: BlurCurve, start_offset: float
) -> None:
    """A specimen 30 % steeper and 1.5 px sharper than the calibration slide: the final
    estimate sits between two flank samples symmetric about it and is accurate."""
    z_true = -4.0
    cfg = SearchConfig(z_limits_um=(-500, 500))
    search = FocusSearch(z_true + start_offset, curve, cfg)
    res = find_focus(_measure(z_true, 1.3, -1.5, noise=0.1), z_true + start_offset, curve, cfg)
    assert res.status == "converged" and "symmetric flank pair" in res.reason
    assert abs(res.z_um - z_true) < 0.3
    pair = _flank_pair(res, search)
    assert pair is not None
    a, c = pair
    assert abs((res.z_um - a) - (c - res.z_um)) <= cfg.pair_symmetry_frac * search.flank_um + 0.2


def test_pair_refinement_off_is_the_plain_match(curve: BlurCurve) -> None:
    cfg = SearchConfig(z_limits_um=(-500, 500), pair_refine=False)
    res = find_focus(_measure(3.0, 1.0, 0.0, noise=0.1), 40.0, curve, cfg)
    assert res.status == "converged" and "symmetric" not in res.reason


def test_specimen_saturating_early_does_not_fool_the_side_choice(curve: BlurCurve) -> None:
    """Far from focus a dense specimen's blur score saturates well below the slide's:
    the single near sample's two mirror candidates are told apart by how fast b may rise."""
    z_true = 10.0
    rng = np.random.default_rng(3)

    def measure(z: float) -> float:
        b = float(oracle_b(z - z_true, K))
        return min(b, 22.0 + 0.1 * b) + float(rng.normal(0, 0.1))

    for start in (z_true + 60.0, z_true - 60.0):
        res = find_focus(measure, start, curve, SearchConfig(z_limits_um=(-500, 500)))
        assert res.status == "converged"
        assert abs(res.z_um - z_true) < 0.5


def test_flank_distance_follows_the_curve(curve: BlurCurve) -> None:
    s = FocusSearch(0.0, curve, SearchConfig())
    c = curve.centred()
    t = SearchConfig().trusted_blur_px
    assert t is not None
    target = c.min_px + SearchConfig().flank_rise_frac * (t - c.min_px)
    assert float(c(s.flank_um)) == pytest.approx(target, abs=0.3)


@pytest.mark.parametrize(("z_true", "start"), [(97.0, 60.0), (-98.0, -50.0), (100.5, 70.0)])
def test_pair_next_to_a_soft_limit_stays_inside_and_says_why(
    curve: BlurCurve, z_true: float, start: float
) -> None:
    """Focus within d of a soft limit: no mirror image beyond it, low confidence, a reason."""
    seen: list[float] = []
    m = _measure(z_true, 1.2, 0.5, noise=0.1)

    def measure(z: float) -> float:
        seen.append(z)
        return m(z)

    cfg = SearchConfig(z_limits_um=(-100, 100))
    res = find_focus(measure, start, curve, cfg)
    assert -100 <= min(seen) and max(seen) <= 100 and -100 <= res.z_um <= 100
    assert abs(res.z_um - z_true) < 3.0
    assert res.confidence < cfg.min_confidence
    assert "soft limit" in res.reason


# ------------------------------------------------------------------ a start near focus
def _imaged(measure):
    seen: list[float] = []

    def m(z: float) -> float:
        seen.append(z)
        return measure(z)

    return m, seen


def test_start_near_focus_is_bracketed_by_the_flank_pair(curve: BlurCurve) -> None:
    """Tracking: a start 0.3 um from focus images z1 -/+ d and finishes after 3 images."""
    cfg = SearchConfig(z_limits_um=(-500, 500))
    z_true, start = 5.0, 5.3
    d = FocusSearch(start, curve, cfg).flank_um
    m, seen = _imaged(_measure(z_true, 1.0, 0.0, noise=0.05))
    res = find_focus(m, start, curve, cfg)
    assert seen[:3] == pytest.approx([start, start - d, start + d])
    assert res.images_used == 3 and res.status == "converged"
    assert abs(res.z_um - z_true) < 0.3
    m, seen = _imaged(_measure(z_true, 1.0, 0.0, noise=0.05))
    find_focus(m, start, curve, cfg.model_copy(update={"near_start_pair": False}))
    h = FocusSearch(start, curve, cfg).half_width_um
    assert h > 1.5 * d and seen[1:3] == pytest.approx([start - h, start + h])


def test_far_start_keeps_the_wide_bracket(curve: BlurCurve) -> None:
    cfg = SearchConfig(z_limits_um=(-500, 500))
    h = FocusSearch(60.0, curve, cfg).half_width_um
    m, seen = _imaged(_measure(0.0, 1.0, 0.0, noise=0.05))
    find_focus(m, 60.0, curve, cfg)
    assert seen[1:3] == pytest.approx([60.0 - h, 60.0 + h])


def test_focus_b_from_a_previous_search_recognises_an_offset_specimen(curve: BlurCurve) -> None:
    """A specimen 8 px blurrier than the slide at focus: its first search cannot tell it
    is near focus (yet finds it: neither mirror candidate of its one trusted image is
    possible, so the curve's shape decides); handing its focus_b_px to the next search
    lets that one finish with the flank pair in three images."""
    cfg = SearchConfig(z_limits_um=(-500, 500))
    z_true = 0.0
    m, seen = _imaged(_measure(z_true, 1.0, 8.0, noise=0.05))
    first = find_focus(m, 1.0, curve, cfg)
    h = FocusSearch(1.0, curve, cfg).half_width_um
    assert seen[1:3] == pytest.approx([1.0 - h, 1.0 + h])
    assert first.status == "converged" and "symmetric flank pair" in first.reason
    assert abs(first.z_um - z_true) < 0.3
    assert first.focus_b_px == pytest.approx(float(oracle_b(0.0, K)) + 8.0, abs=0.5)
    m, seen = _imaged(_measure(z_true, 1.0, 8.0, noise=0.05, seed=1))
    again = find_focus(m, 0.3, curve, cfg, focus_b_px=first.focus_b_px)
    d = FocusSearch(0.3, curve, cfg).flank_um
    assert seen[1:3] == pytest.approx([0.3 - d, 0.3 + d])
    assert again.images_used == 3 and abs(again.z_um - z_true) < 0.3
    with pytest.raises(InvalidInputError):
        FocusSearch(0.0, curve, cfg, focus_b_px=float("nan"))


@pytest.mark.parametrize("zone_frac", [0.6, 1.0])
@pytest.mark.parametrize(
    ("z_true", "start_dz", "per_w"),
    [(0.0, -40.0, False), (3.0, 47.0, False), (-2.0, 0.3, True), (5.0, 0.8, True)],
)
def test_transparent_specimen_whose_contrast_vanishes_at_focus(
    curve: BlurCurve, zone_frac: float, z_true: float, start_dz: float, per_w: bool
) -> None:
    """A phase object in brightfield has no texture within w of focus (undetermined
    images there) and a blur score 6 px above the slide's elsewhere.  From far away the
    flank pair finds it; from inside the zone, the zone is bracketed and bisected, and
    its centre is focus."""
    cfg = SearchConfig(z_limits_um=(-500, 500))
    probe = FocusSearch(0.0, curve, cfg)
    w = zone_frac * probe.flank_um
    start = z_true + (start_dz * w if per_w else start_dz)  # per_w: inside the zone
    rng = np.random.default_rng(7)

    def measure(z: float) -> float:
        if abs(z - z_true) < w:
            return math.nan
        return float(oracle_b(z - z_true, K)) + 6.0 + float(rng.normal(0, 0.1))

    res = find_focus(measure, start, curve, cfg)
    assert res.status == "converged"
    assert abs(res.z_um - z_true) <= 0.5 * probe.precision_um
    assert res.images_used <= cfg.max_images
    if per_w:
        assert "contrast vanishes" in res.reason
        # confidence says whether bisection pinned the zone's edges before images ran out
        pinned = "not pinned" not in res.reason
        assert (res.confidence >= cfg.min_confidence) == pinned
        off = cfg.model_copy(update={"vanishing_contrast": False})
        assert "contrast vanishes" not in find_focus(measure, start, curve, off).reason


def test_blurred_out_far_images_are_not_a_vanishing_zone(curve: BlurCurve) -> None:
    """Images that lose their texture far from focus (a sparse specimen blurred into the
    background) say nothing about focus: only undetermined images near sharp ones do."""
    z_true = 5.0

    def measure(z: float) -> float:
        b = float(oracle_b(z - z_true, K))
        return math.nan if b > 45.0 else b

    res = find_focus(measure, z_true + 12.0, curve, SearchConfig(z_limits_um=(-500, 500)))
    assert res.status == "converged" and "contrast vanishes" not in res.reason
    assert abs(res.z_um - z_true) < 0.5


def test_blurry_match_with_disputing_regions_images_its_estimate(curve: BlurCurve) -> None:
    """Only blurry samples (b > trusted everywhere), and the regions' own estimates
    spread over 16 um: the search does not stop at the three-image match but images
    that estimate (where a trusted image would let the flank pair take over)."""

    def run(flag: bool):
        rng = np.random.default_rng(2)

        def measure(z: float):
            roi = oracle_b(np.array([[z], [z - 8.0], [z - 16.0]]) * np.ones((3, 3)), K) + 20.0
            roi += rng.normal(0, 0.2, (3, 3))
            return make_score(float(np.median(roi)), roi)

        cfg = SearchConfig(z_limits_um=(-300, 300), confirm_disputed=flag)
        return find_focus(measure, 3.0, curve, cfg)

    plain, checked = run(False), run(True)
    assert plain.images_used == 3 and plain.roi_spread_um > 4.0
    assert checked.images_used > 3
    assert checked.trace[3][0] == pytest.approx(plain.z_um)


@pytest.mark.parametrize("start", [-40.0, 45.0])
def test_a_jump_onto_an_image_without_texture_looks_further_on(
    curve: BlurCurve, start: float
) -> None:
    """The curve-matched jump towards focus lands inside a transparent specimen's
    textureless zone (wider than the flank pair here): the search images one flank
    distance further on instead of stalling, and then brackets the zone."""
    cfg = SearchConfig(z_limits_um=(-500, 500))
    probe = FocusSearch(0.0, curve, cfg)
    w = 1.5 * probe.flank_um

    def measure(z: float) -> float:
        return math.nan if abs(z) < w else float(oracle_b(z, K)) + 6.0

    res = find_focus(measure, start, curve, cfg)
    assert res.status == "converged"
    assert abs(res.z_um) <= 0.5 * probe.precision_um


def test_vanishing_zone_not_pinned_before_images_run_out_says_so(curve: BlurCurve) -> None:
    cfg = SearchConfig(z_limits_um=(-500, 500), max_images=5)
    w = FocusSearch(0.0, curve, cfg).flank_um

    def measure(z: float) -> float:
        return math.nan if abs(z + 2.0) < w else float(oracle_b(z + 2.0, K)) + 6.0

    res = find_focus(measure, -2.0 + 0.3 * w, curve, cfg)
    assert res.status == "converged" and "not pinned" in res.reason
    assert res.confidence < cfg.min_confidence
    assert abs(res.z_um + 2.0) < w  # still inside the zone


# ------------------------------------------------------------------ signed contrast
def _phase_measure(z_true: float, w: float, *, inverts: bool, seed: int = 0):
    """A transparent specimen: blur 6 px above the slide's, no texture within w of
    focus, and a low-pass contrast signature that is odd in z - z_true (a phase object
    in brightfield) or, with ``inverts=False``, even (what a fluorescent one shows)."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=(32, 32)).astype(np.float32)
    pattern -= pattern.mean()

    def measure(z: float):
        dz = z - z_true
        b = math.nan if abs(dz) < w else float(oracle_b(dz, K)) + 6.0 + rng.normal(0, 0.1)
        amp = dz if inverts else abs(dz)
        sig = 1e-3 * amp * pattern + rng.normal(0, 2e-3, (32, 32)).astype(np.float32)
        return replace(make_score(b), contrast_signature=sig)

    return measure


@pytest.mark.parametrize(("z_true", "start"), [(0.0, -60.0), (4.0, 50.0), (-3.0, -1.0)])
def test_phase_object_focus_from_its_contrast_inversion(
    curve: BlurCurve, z_true: float, start: float
) -> None:
    """Once two images' contrasts are anti-correlated, where their signed contrast
    changes sign places focus, much closer than the textureless zone's edges can."""
    cfg = SearchConfig(z_limits_um=(-500, 500))
    probe = FocusSearch(0.0, curve, cfg)
    w = probe.flank_um
    res = find_focus(_phase_measure(z_true, w, inverts=True), start, curve, cfg)
    assert res.status == "converged" and "contrast inverts" in res.reason, res.reason
    assert abs(res.z_um - z_true) <= 0.25 * probe.precision_um
    assert res.confidence >= cfg.min_confidence
    off = cfg.model_copy(update={"signed_contrast": False})
    plain = find_focus(_phase_measure(z_true, w, inverts=True), start, curve, off)
    assert "contrast inverts" not in plain.reason


def test_contrast_that_never_inverts_leaves_the_search_unchanged(curve: BlurCurve) -> None:
    cfg = SearchConfig(z_limits_um=(-500, 500))
    w = FocusSearch(0.0, curve, cfg).flank_um
    on = find_focus(_phase_measure(2.0, w, inverts=False), -40.0, curve, cfg)
    off_cfg = cfg.model_copy(update={"signed_contrast": False})
    off = find_focus(_phase_measure(2.0, w, inverts=False), -40.0, curve, off_cfg)
    assert "contrast inverts" not in on.reason
    assert on.trace == off.trace and on.z_um == off.z_um


def test_phase_estimate_not_refined_before_images_run_out_says_so(curve: BlurCurve) -> None:
    """Images run out right after the first anti-correlated pair: the interpolated
    sign change is reported, with confidence below min_confidence."""
    cfg = SearchConfig(z_limits_um=(-500, 500), max_images=3, min_images=3)
    w = FocusSearch(0.0, curve, cfg).flank_um
    res = find_focus(_phase_measure(1.0, w, inverts=True), -10.0, curve, cfg)
    assert res.images_used == 3
    assert "contrast inverts" in res.reason and "not pinned" in res.reason
    assert res.confidence < cfg.min_confidence
    assert abs(res.z_um - 1.0) < w


def test_unusable_or_mismatched_signatures_are_ignored(curve: BlurCurve) -> None:
    """Signatures of another shape (a changed ROI), NaN or 1-D ones never break a
    search: only the usable ones of the latest image's shape are compared."""
    from dataclasses import replace

    cfg = SearchConfig(z_limits_um=(-500, 500))
    w = FocusSearch(0.0, curve, cfg).flank_um
    good = _phase_measure(1.0, w, inverts=True)
    bad = iter([np.full((32, 32), np.nan), np.ones(5), np.ones((8, 8))])

    def measure(z: float):
        s = good(z)
        b = next(bad, None)
        return s if b is None else replace(s, contrast_signature=b)

    res = find_focus(measure, -30.0, curve, cfg)
    assert res.status == "converged"
    assert abs(res.z_um - 1.0) < 0.25 * FocusSearch(0.0, curve, cfg).precision_um


def test_noise_only_signatures_never_read_as_an_inversion(curve: BlurCurve) -> None:
    """Few blocks of pure noise correlate strongly by chance; the significance floor
    (-6 / sqrt(blocks)) keeps such pairs from being taken for opposite sides of focus."""
    from dataclasses import replace

    cfg = SearchConfig(z_limits_um=(-500, 500))
    for seed in range(8):
        rng = np.random.default_rng(seed)

        def measure(z: float, rng=rng):
            b = float(oracle_b(z - 2.0, K)) + rng.normal(0, 0.1)
            return replace(make_score(b), contrast_signature=rng.normal(size=(4, 6)))

        res = find_focus(measure, -40.0, curve, cfg)
        assert "contrast inverts" not in res.reason
        assert abs(res.z_um - 2.0) < 0.5


def _saturating_sparse(z: float) -> float:
    """Sparse beads: b saturates far from focus (slowly rising plateau, pulls the match
    outwards) and the field is empty beyond 110 um (the beads blurred into the
    background)."""
    if abs(z) > 110.0:
        return math.nan
    b = float(oracle_b(z, K))
    return min(b, 0.8 * float(oracle_b(45.0, K))) + 0.05 * b


@pytest.mark.parametrize("start", [-75.0, -60.0, 60.0, 75.0])
def test_expansion_never_overshoots_what_the_end_sample_allows(
    curve: BlurCurve, start: float
) -> None:
    """The end sample's b bounds how far focus can be (expand_reach x its calibrated
    |dz|, plus h): the jump stays inside the textured zone and the search converges."""
    requested: list[float] = []

    def measure(z: float) -> float:
        requested.append(z)
        return _saturating_sparse(z)

    res = find_focus(measure, start, curve, SearchConfig(z_limits_um=(-500, 500)))
    assert res.status == "converged"
    assert abs(res.z_um) < 0.5
    assert all(abs(z) <= 110.0 for z in requested)


def test_unbounded_expansion_jumps_into_the_empty_zone(curve: BlurCurve) -> None:
    """Control for the test above: without the bound the matched jump overshoots."""
    cfg = SearchConfig(z_limits_um=(-500, 500), expand_reach=1e6, on_failure="keep_last")
    res = find_focus(_saturating_sparse, -75.0, curve, cfg)
    assert res.status == "failed"


def _misread_far_dip(z: float) -> float:
    """A specimen (gain 1.4) whose far-defocused frames around -70 um are misread as
    sharper than their neighbours: a dip with b ~ 50 px, far above any focus."""
    return 1.4 * float(oracle_b(z, K)) - 20.0 * math.exp(-(((z + 70.0) / 10.0) ** 2))


@pytest.mark.parametrize("start", [-75.0, -70.0, -65.0])
def test_a_blurry_dip_is_not_taken_for_focus(curve: BlurCurve, start: float) -> None:
    res = find_focus(_misread_far_dip, start, curve, SearchConfig(z_limits_um=(-500, 500)))
    assert res.status == "converged"
    assert abs(res.z_um) < 0.5
    assert min(b for _, b in res.trace) < 20.0  # it imaged near focus before finishing


def test_without_the_cap_the_blurry_dip_passes_for_focus(curve: BlurCurve) -> None:
    """Control for the test above: the same dip, with the cap lifted, is 'converged'."""
    cfg = SearchConfig(z_limits_um=(-500, 500), max_focus_blur_px=None)
    res = find_focus(_misread_far_dip, -70.0, curve, cfg)
    assert res.status == "converged" and abs(res.z_um) > 40.0


@pytest.mark.parametrize("policy", ["warn", "keep_last"])
def test_a_blurry_dip_with_no_image_left_fails(curve: BlurCurve, policy: str) -> None:
    cfg = SearchConfig(z_limits_um=(-500, 500), max_images=3, on_failure=policy)
    res = find_focus(_misread_far_dip, -70.0, curve, cfg)
    assert res.status == "failed"  # not "converged" on the dip
    assert "max_focus_blur_px" in res.reason
    if policy == "keep_last":
        assert res.z_um == -70.0
    else:
        assert -500 <= res.z_um <= 500


def test_focus_blur_cap_never_falls_below_the_trusted_blur(curve: BlurCurve) -> None:
    cfg = SearchConfig(trusted_blur_px=50.0)  # a config valid before the cap existed
    assert FocusSearch(0.0, curve, cfg)._focus_blur_cap() == 50.0
    assert FocusSearch(0.0, curve, SearchConfig())._focus_blur_cap() == 40.0
    assert FocusSearch(0.0, curve, SearchConfig(max_focus_blur_px=None))._focus_blur_cap() is None


def _fading_far_beads(z: float) -> float:
    """Sparse beads seen by a regressor whose far b stops rising: beyond 75 um it falls
    slowly with the distance (the beads fade into the noise), so downhill points away
    from focus; the field is empty beyond 110 um."""
    if abs(z) > 110.0:
        return math.nan
    if abs(z) > 75.0:
        return float(oracle_b(75.0, K)) - 0.05 * (abs(z) - 75.0)
    return float(oracle_b(z, K))


@pytest.mark.parametrize("start", [-100.0, 100.0])
def test_expansion_into_an_empty_field_tries_where_the_samples_agree(
    curve: BlurCurve, start: float
) -> None:
    """Downhill leads away from focus into the empty field: the search images the
    focus the samples' calibrated distances agree on (not its mirror beyond them, next
    to the empty images) and converges, instead of failing 'expansion stalled'."""
    cfg = SearchConfig(z_limits_um=(-500, 500), max_images=12)
    res = find_focus(_fading_far_beads, start, curve, cfg)
    assert res.status == "converged", res.reason
    assert abs(res.z_um) < 0.5
    assert any(not math.isfinite(b) for _, b in res.trace)  # it did run into the void


def test_the_agreed_focus_stays_inside_the_soft_limits(curve: BlurCurve) -> None:
    """Candidates beyond the limits are dropped before the choice (not clipped onto the
    limit after it, where an image may already be)."""
    cfg = SearchConfig(z_limits_um=(-40.0, 200.0))
    search = FocusSearch(100.0, curve, cfg)
    z = np.array([60.0, 80.0, 100.0])
    b = np.array([float(oracle_b(v, K)) for v in z])
    free = search._agreed_focus(z, b)
    assert free is not None and abs(free) < 5.0  # focus at 0: inside these limits
    tight = FocusSearch(100.0, curve, cfg.model_copy(update={"z_limits_um": (30.0, 200.0)}))
    got = tight._agreed_focus(z, b)
    assert got is None or 30.0 <= got <= 200.0
