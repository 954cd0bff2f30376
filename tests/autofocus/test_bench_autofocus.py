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
    assert "| search |" in (tmp_path / "autofocus.md").read_text()
    assert (tmp_path / "autofocus_images.png").read_bytes()[:4] == b"\x89PNG"
