"""Test helpers: a ground-truth blur score ("oracle") and FocusScore builders.

The oracle stands in for the trained regressor where a test needs a physically shaped
b(z) without the weights: ``b = sat tanh(hypot(d_geo, d0) / sat)`` with ``d_geo =
2 |dz| tan(theta) / pixel`` (V-shaped, rounded at focus, saturating far away).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autofocus.score import FocusScore, PatchGrid


def oracle_b(dz_um: Any, px_per_um: float, sat_px: float = 60.0, d0_px: float = 2.0) -> Any:
    v = np.hypot(np.abs(np.asarray(dz_um, dtype=float)) * px_per_um, d0_px)
    return sat_px * np.tanh(v / sat_px)


def make_score(b: float, roi_b: np.ndarray | None = None, *, texture: float = 1.0) -> FocusScore:
    """A FocusScore carrying blur ``b`` (NaN -> undetermined) and optional per-patch b."""
    det = math.isfinite(b)
    grid = None
    if roi_b is not None:
        roi = np.asarray(roi_b, dtype=float)
        grid = PatchGrid(
            np.arange(roi.shape[0]) * 128,
            np.arange(roi.shape[1]) * 128,
            128,
            {"blur_px": roi, "texture": np.where(np.isfinite(roi), texture, 0.0)},
        )
    return FocusScore(
        probabilities=np.full(11, 1 / 11),
        expected_level=5.0,
        predicted_level=5,
        certainty_aggregate=0.5,
        certainty_mean=0.5,
        certainty_max=0.5,
        certainty_weighted=0.5,
        in_focus_probability=0.1,
        blur_px=b if det else math.nan,
        blur_spread_px=0.1 if det else math.nan,
        astigmatism_px=0.0,
        textured_fraction=1.0 if det else 0.0,
        verdict="out_of_focus" if det else "undetermined",
        abs_dz_um=None,
        abs_dz_um_from_level=None,
        model_version="oracle-1",
        regressor_patches=grid,
    )


class OracleScorer:
    """Scores frames of a virtual microscope from its ground-truth defocus (tests only).

    ``b`` from :func:`oracle_b` at ``vm.dz_um()`` plus Gaussian noise; undetermined
    when the frame is flat (an empty specimen).
    """

    model_version = "classifier-oracle+regressor-oracle-1"

    def __init__(self, vm: Any, noise_px: float = 0.2, seed: int = 0) -> None:
        self.vm = vm
        self.noise_px = noise_px
        self.rng = np.random.default_rng(seed)

    def score(self, frame: np.ndarray, objective: Any = None, *, with_patches: bool = False):
        obj = self.vm.objective
        if float(np.std(frame)) < 1e-6 or self.vm.specimen_name == "empty":
            return make_score(math.nan)
        k = 2 * math.tan(obj.half_angle_rad) / obj.pixel_size_um
        b = float(oracle_b(self.vm.dz_um(), k)) + self.rng.normal(0, self.noise_px)
        roi = None
        if with_patches:
            roi = b + self.rng.normal(0, self.noise_px, (2, 2))
        return make_score(b, roi)

    def score_batch(self, frames: Any, objective: Any = None) -> list:
        return [self.score(f, objective) for f in frames]
