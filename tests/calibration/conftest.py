"""Fixtures for calibration tests (the oracle scorer lives in tests/autofocus)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "autofocus"))
