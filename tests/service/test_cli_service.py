"""``autofocus serve`` as a subprocess (SIGTERM, calibration folder) and ``autofocus ping``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import CURVE

from autofocus.cli import main
from autofocus.errors import RemoteError, ServiceError
from autofocus.optics import get_objective
from autofocus.service.client import ServiceClient


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_calibration(folder: Path, model_id: str, objective: str) -> Path:
    from calibration.store import (
        Calibration,
        CalibrationSample,
        CalibrationStore,
        FitReport,
        ScorerIdentity,
        now_utc,
    )

    cal = Calibration(
        objective=get_objective(objective),
        curve=CURVE,
        fit=FitReport(
            centre_um=0.0,
            focus_z_um=1000.0,
            fwhm_um=CURVE.fwhm_um,
            amplitude_px=CURVE.amplitude_px,
            baseline_px=CURVE.baseline_px,
            r2=0.99,
            residual_rms_px=0.2,
            residuals_px=[0.1, -0.1],
        ),
        samples=[CalibrationSample(z_um=1000.0, dz_um=0.0, b_px=2.0, textured_fraction=1.0)],
        scorer=ScorerIdentity(model_id=model_id),
        created_utc=now_utc(),
    )
    return CalibrationStore(folder).save(cal)


def _wait(address: str, proc: subprocess.Popen[bytes]) -> ServiceClient:
    client = ServiceClient(address, timeout_s=1.0)
    for _ in range(120):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            client.health()
            return client
        except ServiceError:
            time.sleep(0.25)
    pytest.fail("server did not start")


def test_serve_subprocess_calibrations_ping_and_sigterm(
    tiny_weights_dir: Path, tiny_scorer: Any, tmp_path: Path, capsys: Any
) -> None:
    cals = tmp_path / "cals"
    regressor_id = tiny_scorer.regressor_card.model_id
    _write_calibration(cals, regressor_id, "10X")
    _write_calibration(cals, "some-other-regressor", "20X")
    address = f"tcp://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "autofocus.cli", "serve", "--bind", address,
         "--weights-dir", str(tiny_weights_dir), "--calibrations", str(cals)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        client = _wait(address, proc)
        assert main(["ping", address]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["version"]["model_version"] == tiny_scorer.model_version
        listed = {c["id"]: c for c in client.calibrations()}
        assert set(listed) == {"default__10X", "default__20X"}
        assert listed["default__10X"]["fwhm_um"] == pytest.approx(CURVE.fwhm_um)
        got = client.calibration("default__10X")
        assert got["curve"]["gamma_um"] == CURVE.gamma_um and got["objective"]["name"] == "10X"
        start = {"cmd": "autofocus.start", "z_start_um": 1000.0, "z_limits_um": [900, 1100]}
        res = client.request({**start, "calibration_id": "default__10X"})
        assert res["action"] == "move" and 900 <= res["z_um"] <= 1100
        for cid, code in (
            ("default__20X", "calibration_error"),  # made with another blur model
            ("../cals/default__10X", "unknown_name"),  # never a path outside the folder
        ):
            with pytest.raises(RemoteError) as ei:
                client.request({**start, "calibration_id": cid})
            assert ei.value.code == code
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        err = proc.stderr.read().decode() if proc.stderr else ""
    assert rc == 0, err
    assert "received SIGTERM" in err and "service stopped" in err
    assert "requests" in err and "p99" in err  # the INFO summary is written at shutdown


def test_ping_reports_a_missing_server() -> None:
    assert main(["ping", f"tcp://127.0.0.1:{_free_port()}", "--timeout-s", "0.2"]) == 2
