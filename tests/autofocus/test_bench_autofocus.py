"""Smoke test of the autofocus benchmark plumbing (tiny run, stand-in scorer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from focus_oracle import make_score

from autofocus import bench_autofocus
from autofocus.curve import BlurCurve


class _GradientScorer:
    """b from the frame's mean gradient contrast (a stand-in; not physically scaled)."""

    model_version = "classifier-x+regressor-x"

    def score(self, frame, objective=None, *, with_patches=False):
        f = frame.astype(float)
        g = np.abs(np.diff(f, axis=1)).mean() / max(f.mean(), 1e-9)
        return make_score(float(40.0 / (1.0 + 200.0 * g)), np.full((2, 2), 40.0 / (1 + 200 * g)))


def test_bench_runs_and_writes_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class _Cal:
        curve = BlurCurve(baseline_px=40, amplitude_px=35, gamma_um=15, alpha=0.8)

        class fit:  # mimics Calibration.fit
            fwhm_um = 30.0
            r2 = 0.99
            residual_rms_px = 0.3

    monkeypatch.setattr(bench_autofocus, "_calibrate", lambda obj, scorer, size: _Cal())
    settings = bench_autofocus.BenchSettings(
        objectives=("40X",), specimens=("beads",), trials=1, size=128, budgets=(3,)
    )
    payload = bench_autofocus.run_autofocus_benchmark(tmp_path, settings, scorer=_GradientScorer())
    summ = payload["summary"]
    for m in ("search", "brent-mm", "brent-wide", "zstack", "search@3", "brent@3"):
        assert summ[m]["n"] == 1
        assert summ[m]["images_mean"] >= 1
    assert summ["search@3"]["images_mean"] == 3
    assert summ["zstack"]["images_mean"] == 21  # +/- 10 DOF in 1-DOF steps
    data = json.loads((tmp_path / "autofocus.json").read_text())
    assert len(data["rows"]) == 6
    assert all(r["has_structure"] for r in data["rows"])
    for r in data["rows"]:
        if r["method"].startswith("search"):
            assert r["sharpest_b_px"] is None or r["sharpest_b_px"] > 0
    assert "| search |" in (tmp_path / "autofocus.md").read_text()
    assert (tmp_path / "autofocus_images.png").read_bytes()[:4] == b"\x89PNG"


def test_structure_snr_separates_empty_fields_from_specimens() -> None:
    from autofocus.optics import get_objective
    from simulators.camera import CameraModel
    from simulators.specimens import make_specimen

    obj, cam = get_objective("40X"), CameraModel()
    blank = bench_autofocus.structure_snr(make_specimen("empty"), obj, 0.0, 0.0, 128, cam)
    beads = bench_autofocus.structure_snr(make_specimen("beads", seed=1), obj, 0.0, 0.0, 128, cam)
    assert blank < bench_autofocus.STRUCTURE_SNR_MIN < beads


def _row(method: str, err_um: float, moved_um: float, structured: bool) -> dict:
    return {
        "objective": "o",
        "method": method,
        "error_um": err_um,
        "moved_um": moved_um,
        "images": 4,
        "compute_s": 0.01,
        "offset_dof": 1.0,
        "has_structure": structured,
    }


def test_summary_leaves_empty_fields_out_and_counts_them() -> None:
    rows = [
        _row("search", 0.1, 5.0, True),
        _row("search", 3.0, 9.0, True),  # a real failure (DOF 1, so 3 um > DOF/4)
        _row("search", 7.0, 0.0, False),  # empty: undetermined, stage kept
        _row("search", 7.0, 2.0, False),  # empty: moved
    ]
    s = bench_autofocus._summary(rows, {"o": 1.0})["search"]
    assert s["n"] == 2 and s["n_empty"] == 2
    assert s["success"] == 0.5
    assert s["success_all"] == 0.25
    assert s["empty_kept_start"] == 0.5
    assert s["mean_err_um"] == pytest.approx(1.55)
    note = bench_autofocus._empty_note({"search": s})
    assert "2 trial(s) had no structure" in note and "25.0%" in note


def test_an_empty_field_counts_as_a_failure_in_success_all_even_when_close() -> None:
    # the start happened to be within DOF/4 of focus and the search kept it
    rows = [_row("search", 0.1, 5.0, True), _row("search", 0.1, 0.0, False)]
    s = bench_autofocus._summary(rows, {"o": 1.0})["search"]
    assert s["success"] == 1.0 and s["success_all"] == 0.5


def test_a_small_object_in_a_large_field_counts_as_structure() -> None:
    lam = np.full((512, 512), 1000.0)
    lam[10:25, 10:25] += 3 * np.sqrt(1000.0)  # 225 px at 3x shot noise
    whole = float(lam.std() / np.sqrt(lam.mean()))
    assert whole < bench_autofocus.STRUCTURE_SNR_MIN  # diluted over the whole field
    assert bench_autofocus._block_snr(lam, 64) > bench_autofocus.STRUCTURE_SNR_MIN
    assert bench_autofocus._block_snr(np.full((100, 100), 5.0), 64) == 0.0
    assert bench_autofocus._block_snr(np.zeros((40, 40)), 64) == 0.0


def test_summary_of_only_empty_fields_has_no_error_figures() -> None:
    s = bench_autofocus._summary([_row("search", 7.0, 0.0, False)], {"o": 1.0})["search"]
    assert s["n"] == 0 and s["n_empty"] == 1 and s["empty_kept_start"] == 1.0
    assert s["success_all"] == 0.0
    images = bench_autofocus._table_rows({"search": s})[0][1]
    assert np.isnan(images)  # no structured trial: no figure, not a made-up number
