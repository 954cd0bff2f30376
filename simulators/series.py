"""Through-focus series: a specimen rendered at a list of defocus values with camera noise.

Used by ``autofocus simulate``, the evaluation protocols and tests.  The camera noise
is drawn from one seeded generator, so a series is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from autofocus.errors import InvalidInputError
from autofocus.optics import Objective
from simulators.camera import CameraModel
from simulators.psf import Aberrations
from simulators.render import render_field
from simulators.specimens import Specimen

__all__ = ["ThroughFocusSeries", "render_series"]


@dataclass(frozen=True)
class ThroughFocusSeries:
    """A rendered stack: ``frames[i]`` was taken at defocus ``dz_um[i]``."""

    frames: np.ndarray  # (N, H, W) camera ADU
    dz_um: np.ndarray  # (N,)
    objective: Objective
    specimen_name: str


def render_series(
    specimen: Specimen,
    objective: Objective,
    dz_um: Sequence[float] | np.ndarray,
    *,
    shape: tuple[int, int] = (512, 512),
    camera: CameraModel | None = None,
    seed: int = 0,
    x_um: float = 0.0,
    y_um: float = 0.0,
    aberrations: Aberrations | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ThroughFocusSeries:
    """Render ``specimen`` at each defocus in ``dz_um`` and add camera noise."""
    dz = np.asarray(dz_um, dtype=float).ravel()
    if dz.size == 0 or not np.all(np.isfinite(dz)):
        raise InvalidInputError("dz_um must be a non-empty list of finite defocus values")
    if len(shape) != 2 or min(shape) < 8:
        raise InvalidInputError(f"shape must be (H, W) with both >= 8 px, got {shape}")
    cam = camera or CameraModel()
    rng = np.random.default_rng(seed)
    ab = aberrations or Aberrations()
    frames = []
    for i, d in enumerate(dz):
        signal = render_field(specimen, objective, float(d), x_um, y_um, shape, ab)
        frames.append(cam.expose(signal, rng))
        if progress is not None:
            progress(i + 1, dz.size)
    return ThroughFocusSeries(np.stack(frames), dz, objective, specimen.name)
