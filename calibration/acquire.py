"""Acquire and score a calibration z-stack through the :class:`~autofocus.microscope.Microscope`
protocol.

Default stack (from the objective's depth of field ``DOF``): offsets ``dz`` from
``-range`` to ``+range`` around the start position in steps of ``step``, with
``range = DEFAULT_RANGE_DOF * DOF`` and ``step = DOF / DEFAULT_STEPS_PER_DOF``; both
can be overridden.  Each slice: move (the microscope waits and settles; an extra
``settle_ms`` can be given here), snap, score with the blur regressor (the scorer's
``blur_px`` is already the median over textured patches and ``blur_spread_px`` their
median absolute deviation).  Frames are scored as they come, never kept.  The stage
returns to its start position afterwards, also after an error.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np

from autofocus.errors import InvalidInputError, StageLimitError
from autofocus.microscope import Microscope
from autofocus.optics import Objective
from calibration.store import CalibrationSample

__all__ = ["DEFAULT_RANGE_DOF", "DEFAULT_STEPS_PER_DOF", "acquire_samples", "stack_offsets_um"]

logger = logging.getLogger(__name__)

DEFAULT_RANGE_DOF = 12.0
"""Default half-range of the calibration stack, in depths of field."""
DEFAULT_STEPS_PER_DOF = 2.0
"""Default number of slices per depth of field."""


def stack_offsets_um(
    objective: Objective, range_um: float | None = None, step_um: float | None = None
) -> np.ndarray:
    """Symmetric offsets ``-range..+range`` (um) with spacing ``step`` (see module doc)."""
    r = DEFAULT_RANGE_DOF * objective.dof_um if range_um is None else float(range_um)
    s = objective.dof_um / DEFAULT_STEPS_PER_DOF if step_um is None else float(step_um)
    if not (math.isfinite(r) and r > 0):
        raise InvalidInputError(f"range_um must be > 0, got {range_um!r}")
    if not (math.isfinite(s) and 0 < s <= r):
        raise InvalidInputError(f"step_um must be in (0, range], got {step_um!r}")
    n = math.floor(r / s + 1e-9)
    if 2 * n + 1 > 2001:
        raise InvalidInputError(f"{2 * n + 1} slices is too many; use a larger step")
    return np.arange(-n, n + 1, dtype=np.float64) * s


def acquire_samples(
    microscope: Microscope,
    scorer: object,
    objective: Objective,
    offsets_um: np.ndarray,
    *,
    settle_ms: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[float, list[CalibrationSample]]:
    """Image and score every offset around the current z; returns ``(z_start, samples)``.

    Refuses (StageLimitError, before any move) a stack that leaves the soft limits.
    """
    z0 = microscope.get_z_um()
    lo, hi = microscope.z_limits_um
    zs = z0 + np.asarray(offsets_um, dtype=np.float64)
    if zs.min() < lo or zs.max() > hi:
        raise StageLimitError(
            f"the stack {zs.min():g}..{zs.max():g} um leaves the soft limits [{lo:g}, {hi:g}] "
            "um; reduce --range-um or move closer to focus"
        )
    samples: list[CalibrationSample] = []
    try:
        for i, z in enumerate(zs):
            microscope.set_z_um(float(z))
            if settle_ms > 0:
                time.sleep(settle_ms / 1000.0)
            frame = microscope.snap()
            s = scorer.score(frame, objective)  # type: ignore[attr-defined]
            b = float(s.blur_px)
            ok = s.determined and math.isfinite(b)
            samples.append(
                CalibrationSample(
                    z_um=float(z),
                    dz_um=float(z - z0),
                    b_px=b if ok else None,
                    spread_px=float(s.blur_spread_px) if ok else None,
                    textured_fraction=float(s.textured_fraction),
                )
            )
            if progress is not None:
                progress(i + 1, zs.size)
    finally:
        try:
            microscope.set_z_um(z0)
        except Exception as exc:
            logger.error("could not return the stage to %.3f um: %s", z0, exc)
    return z0, samples
