"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def demo_core() -> Iterator[Any]:
    """A loaded demo-config virtual microscope core (128x128 sensor, seed 0), unloaded after."""
    from simulators.core import create_demo_core, unload

    core = create_demo_core(sensor_shape=(128, 128), seed=0)
    try:
        yield core
    finally:
        unload(core)
