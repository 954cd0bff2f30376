"""Test helpers for the service tests: a deterministic "oracle" scorer whose blur score
follows a known curve of the z encoded in the frame, and a settable clock."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from autofocus.curve import BlurCurve
from autofocus.optics import N_LEVELS, Objective
from autofocus.score import FocusScore

Z_FOCUS_UM = 1003.7
CURVE = BlurCurve(baseline_px=20.0, amplitude_px=18.0, gamma_um=4.0, alpha=1.5, residual_sd_px=0.2)


def frame_at(z_um: float, shape: tuple[int, int] = (96, 96)) -> np.ndarray:
    """A synthetic float64 frame whose pixels encode the stage z (the oracle reads it)."""
    return np.full(shape, z_um, dtype=np.float64)


class OracleScorer:
    """A deterministic Scorer: ``blur_px = CURVE(z - focus_um)`` with z read from the frame
    (see :func:`frame_at`); frames whose mean is NaN-free but negative are 'empty'."""

    model_version = "oracle-1"

    def __init__(self, focus_um: float = Z_FOCUS_UM, delay_s: float = 0.0) -> None:
        self.focus_um = focus_um
        self.delay_s = delay_s
        self.calls = 0
        self.batch_sizes: list[int] = []

    def score(
        self, frame: np.ndarray, objective: Objective | None = None, *, with_patches: bool = False
    ) -> FocusScore:
        return self.score_batch([frame], objective)[0]

    def score_batch(
        self, frames: Sequence[np.ndarray], objective: Objective | None = None
    ) -> list[FocusScore]:
        import time

        from autofocus.frames import as_frame

        self.calls += 1
        self.batch_sizes.append(len(frames))
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for f in frames:
            z = float(as_frame(f, min_shape=(8, 8)).mean())
            b = float(CURVE(z - self.focus_um))
            p = np.full(N_LEVELS, 1.0 / N_LEVELS)
            out.append(
                FocusScore(
                    probabilities=p,
                    expected_level=5.0,
                    predicted_level=5,
                    certainty_aggregate=0.0,
                    certainty_mean=0.0,
                    certainty_max=0.0,
                    certainty_weighted=0.0,
                    in_focus_probability=0.3,
                    blur_px=b if z >= 0 else math.nan,
                    blur_spread_px=0.0,
                    astigmatism_px=0.0,
                    textured_fraction=1.0 if z >= 0 else 0.0,
                    verdict="out_of_focus" if z >= 0 else "undetermined",
                    abs_dz_um=None,
                    abs_dz_um_from_level=None,
                    model_version=self.model_version,
                )
            )
        return out


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t
