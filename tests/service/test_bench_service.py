"""The service benchmark end to end (opt-in: it runs a server and client processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_service_short_run(tiny_weights_dir: Path, tmp_path: Path) -> None:
    from autofocus.service.bench import run_service_benchmark

    out = tmp_path / "service.json"
    r = run_service_benchmark(
        out, duration_s=5, clients=4, malformed=100, repeats=5, weights_dir=tiny_weights_dir
    )
    assert json.loads(out.read_text())["benchmark"] == "service"
    assert r["concurrency"]["errors"] == 0 and r["concurrency"]["lost_replies"] == 0
    assert r["concurrency"]["requests_ok"] > 0
    assert r["malformed"]["error_replies"] == 100
    assert r["malformed"]["health_after"] == "ok"
    assert r["shutdown_exit_code"] == 0
