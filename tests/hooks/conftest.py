"""Fixtures for the hook tests (helpers in ``hook_fixtures``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hook_fixtures import FrameTruth


@pytest.fixture
def truth(monkeypatch: pytest.MonkeyPatch) -> FrameTruth:
    return FrameTruth().install(monkeypatch)


@pytest.fixture
def scope() -> Iterator[Any]:
    """A 64x64 virtual microscope served to Pycro-Manager's Python backend."""
    from simulators.core import virtual_microscope

    with virtual_microscope(sensor_shape=(64, 64), objective="20X", seed=1) as core:
        yield core
