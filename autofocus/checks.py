"""Small argument checks shared by every entry point (raise the project's typed errors)."""

from __future__ import annotations

import math
from typing import Any

from autofocus.errors import InvalidInputError

__all__ = ["bounded_int", "finite_float"]


def finite_float(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """``float(value)`` if it is a finite number (optionally > 0 or >= 0), else
    :class:`InvalidInputError` naming ``name``.  Booleans are refused."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(v):
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise InvalidInputError(f"{name} must be >= 0, got {value!r}")
    return v


def bounded_int(value: Any, name: str, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an integer in ``[lo, hi]`` (``hi`` None: no upper bound), else
    :class:`InvalidInputError` naming ``name``.  Booleans and floats are refused."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise InvalidInputError(f"{name} must be {bound}, got {value!r}")
    return int(value)
