"""Fixtures for the service tests: real servers on free loopback ports (background
threads), a deterministic "oracle" scorer and tiny random model weights."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_fixtures import CURVE, OracleScorer

from autofocus.service.server import FocusServer, ServiceConfig
from autofocus.service.sessions import InMemoryCalibrations


def _tiny_weights_writer() -> Callable[[Path], Path]:
    path = Path(__file__).resolve().parents[1] / "autofocus" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_autofocus_test_conftest", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_tiny_weights


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_weights_writer()(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def tiny_scorer(tiny_weights_dir: Path) -> Any:
    from autofocus.scorer import LocalScorer

    return LocalScorer(weights_dir=str(tiny_weights_dir))


@pytest.fixture
def start_server() -> Iterator[Callable[..., FocusServer]]:
    """``start_server(scorer=..., **config)`` -> a started FocusServer (stopped after)."""
    servers: list[FocusServer] = []

    def start(
        scorer: Any = None,
        *,
        clock: Callable[[], float] | None = None,
        calibrations: Any = "default",
        **config: Any,
    ) -> FocusServer:
        config.setdefault("bind", "tcp://127.0.0.1:0")
        kw: dict[str, Any] = {}
        if clock is not None:
            kw["clock"] = clock
        srv = FocusServer(
            ServiceConfig(**config),
            scorer=scorer if scorer is not None else OracleScorer(),
            calibrations=InMemoryCalibrations({"test-cal": CURVE})
            if calibrations == "default"
            else calibrations,
            **kw,
        )
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()
