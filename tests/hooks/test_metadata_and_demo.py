"""Metadata keys round trip, and ``autofocus demo`` end to end with the oracle scorer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hook_fixtures import FrameTruth, OracleScorer, oracle_curve

from autofocus.errors import InvalidInputError
from autofocus.optics import get_objective
from autofocus.score import FocusScore
from hooks.demo import DemoOptions, default_drift_spec, flag_precision_recall, run_demo
from hooks.metadata import FOCUS_KEYS, flags_from_metadata, read_focus_flags, score_to_metadata


def _score(
    verdict: str = "out_of_focus",
    blur: float = 7.5,
    dz: float | None = 4.0,
    reason: str | None = None,
) -> FocusScore:
    p = np.zeros(11)
    p[3] = 1.0
    return FocusScore(
        probabilities=p,
        expected_level=3.2,
        predicted_level=3,
        certainty_aggregate=0.8,
        certainty_mean=0.7,
        certainty_max=0.9,
        certainty_weighted=0.75,
        in_focus_probability=0.1,
        blur_px=blur,
        blur_spread_px=0.5,
        astigmatism_px=0.1,
        textured_fraction=0.9,
        verdict=verdict,
        abs_dz_um=dz,
        abs_dz_um_from_level=dz,
        model_version="m1",  # type: ignore[arg-type]
        undetermined_reason=reason,  # type: ignore[arg-type]
    )


def test_score_to_metadata_round_trip_and_json_safe() -> None:
    md = score_to_metadata(_score(), score_ms=3.21)
    assert set(md) <= set(FOCUS_KEYS)
    json.dumps(md, allow_nan=False)
    flags = flags_from_metadata({**md, "Axes": {"time": 2}})
    assert flags is not None and flags.out_of_focus and flags.axes == {"time": 2}
    assert flags.level == pytest.approx(3.2) and flags.abs_dz_um == pytest.approx(4.0)
    assert flags.level_class == 3 and flags.scorer_version == "m1"
    # a determined frame has no reason; unknown values are left out, never NaN
    assert "FocusUndeterminedReason" not in md and flags.undetermined_reason is None
    md = score_to_metadata(_score("undetermined", blur=math.nan, dz=None, reason="no_texture"))
    assert "FocusBlurPx" not in md and "FocusAbsDzUm" not in md
    assert md["FocusUndeterminedReason"] == "no_texture" and set(md) <= set(FOCUS_KEYS)
    json.dumps(md, allow_nan=False)
    back = flags_from_metadata(md)
    assert back is not None and back.undetermined_reason == "no_texture"
    # the hook's own DOF verdict overrides the score's: no reason then
    assert "FocusUndeterminedReason" not in score_to_metadata(
        _score("undetermined", blur=math.nan, dz=None, reason="no_texture"), verdict="in_focus"
    )
    assert flags_from_metadata({"Axes": {}}) is None
    with pytest.raises(InvalidInputError):
        flags_from_metadata({"FocusVerdict": "blurry"})
    with pytest.raises(InvalidInputError):
        score_to_metadata(_score(), verdict="maybe")
    with pytest.raises(InvalidInputError):
        read_focus_flags("/nonexistent/dataset")


def test_flag_precision_recall_counts() -> None:
    p, r, c = flag_precision_recall(
        ["out_of_focus", "in_focus", "out_of_focus", "in_focus", "undetermined"],
        [5.0, 0.1, 0.2, 4.0, 9.0],
        1.0,
    )
    assert (p, r) == (0.5, 0.5) and c == {"tp": 1, "fp": 1, "fn": 1, "tn": 1, "undetermined": 1}
    assert flag_precision_recall([], [], 1.0)[:2] == (None, None)


def test_default_drift_is_in_depths_of_field() -> None:
    from simulators.drift import make_drift

    dof = get_objective("20X").dof_um
    d = make_drift(default_drift_spec(dof, 60.0, 30))
    before, after = d.offset_um(14 * 60.0), d.offset_um(15 * 60.0)
    assert after - before == pytest.approx(3.1 * dof, abs=0.6 * dof)  # the jump + creep
    assert abs(d.offset_um(29 * 60.0)) > 4 * dof


@pytest.mark.parametrize("autofocus", [True, False])
def test_demo_end_to_end_with_the_oracle(
    tmp_path: Path, truth: FrameTruth, autofocus: bool
) -> None:
    obj = get_objective("20X")
    scorer = OracleScorer(truth, oracle_curve(obj))
    opts = DemoOptions(
        output=tmp_path / "demo",
        time_points=6,
        positions=2,
        frame_px=64,
        calibration_dir=tmp_path / "cal",
        autofocus=autofocus,
        live=False,
    )
    res = run_demo(opts, scorer=scorer)
    assert res.errors == []
    assert len(res.rows) == 12 and res.frames == 36
    assert Path(res.plot_path).stat().st_size > 1000
    report = json.loads(Path(res.json_path).read_text())
    assert report["demo"]["frames"] == 36
    flags = read_focus_flags(res.dataset_path)
    assert len(flags) == 36
    assert res.flag_precision == 1.0 and res.flag_recall == 1.0  # oracle verdicts
    if autofocus:
        assert res.calibrated_now and Path(res.calibration_path).is_file()
        assert res.in_focus_time_points == 1.0 > res.in_focus_time_points_no_af
        assert res.n_autofocus == 12 and res.mean_images_per_autofocus <= 8
        assert all(abs(r.error_um) < obj.dof_um / 4 for r in res.rows)
        # the second run finds the stored calibration
        again = run_demo(
            DemoOptions(**{**opts.__dict__, "output": tmp_path / "again", "time_points": 1}),
            scorer=scorer,
        )
        assert not again.calibrated_now
    else:
        assert res.n_autofocus == 0 and res.calibration_path is None
        assert res.in_focus_time_points < 0.5
        assert [r.error_um for r in res.rows] == pytest.approx(
            [r.error_no_af_um for r in res.rows], abs=0.05
        )


def test_cli_demo_help_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    from autofocus.cli import main

    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--no-autofocus" in out and "--time-points" in out
    assert main(["demo", "--z-slices", "2", "--output", "/tmp/x-never-used"]) == 2
