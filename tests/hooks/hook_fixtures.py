"""Helpers for the hook tests: an oracle scorer that reads the simulator's ground truth.

The oracle makes the hook logic (offsets per position, re-centred stacks, metadata,
policies) testable deterministically, independently of trained weights: its blur
score follows the calibration curve exactly at the true defocus of the frame, plus
seeded noise.  End-to-end tests with the shipped models live in ``test_end_to_end.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from autofocus.curve import BlurCurve
from autofocus.optics import Objective
from autofocus.score import FocusScore


def oracle_curve(objective: Objective) -> BlurCurve:
    """A blur curve as wide as the objective's DOF (FWHM ~ 2 DOF)."""
    return BlurCurve(baseline_px=30.0, amplitude_px=28.0, gamma_um=objective.dof_um, alpha=1.0)


def _digest(frame: np.ndarray) -> bytes:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=12).digest()


class FrameTruth:
    """Records the true defocus of every frame any virtual microscope renders."""

    def __init__(self) -> None:
        self.by_digest: dict[bytes, tuple[float, str]] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FrameTruth:
        from simulators.virtual import VirtualMicroscope

        original = VirtualMicroscope.snap
        truth = self

        def snap(vm: VirtualMicroscope) -> np.ndarray:
            frame = original(vm)
            truth.by_digest[_digest(frame)] = (float(vm.last_frame_info["dz_um"]), vm.specimen_name)
            return frame

        monkeypatch.setattr(VirtualMicroscope, "snap", snap)
        return self

    def of(self, frame: np.ndarray) -> tuple[float, str]:
        key = _digest(np.asarray(frame, dtype=np.uint16))
        if key not in self.by_digest:
            raise KeyError("frame not rendered by a virtual microscope")
        return self.by_digest[key]


class OracleScorer:
    """Scorer protocol over the simulator's truth for each frame (see :class:`FrameTruth`).

    ``blur_px = curve(dz) + offset_px + N(0, noise_px)``; verdict in focus when ``|dz| <= DOF``;
    ``abs_dz_um = |dz|``; undetermined on the ``empty`` specimen.  ``fail_after`` makes
    the n-th call onwards raise ``error`` (scorer failures, timeouts).
    """

    def __init__(
        self,
        truth: FrameTruth,
        curve: BlurCurve,
        *,
        noise_px: float = 0.05,
        seed: int = 0,
        fail_after: int | None = None,
        error: Exception | None = None,
        delay_s: float = 0.0,
        offset_px: float = 0.0,
    ) -> None:
        self.truth = truth
        self.offset_px = offset_px
        self.curve = curve
        self.noise_px = noise_px
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.fail_after = fail_after
        self.error = error
        self.delay_s = delay_s
        self.dz_seen: list[float] = []

    @property
    def model_version(self) -> str:
        return "oracle-test"

    def score(
        self, frame: np.ndarray, objective: Objective | None = None, *, with_patches: bool = False
    ) -> FocusScore:
        import time

        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise self.error or RuntimeError("oracle scorer failure")
        if self.delay_s:
            time.sleep(self.delay_s)
        dz, specimen = self.truth.of(frame)
        self.dz_seen.append(dz)
        obj = objective or Objective(name="20X", magnification=20, na=0.5, camera_pixel_size_um=10)
        empty = specimen == "empty"
        b = float(self.curve(dz) + self.offset_px + self.rng.normal(0, self.noise_px))
        level = float(np.clip(obj.dz_to_level(dz), 0, 10))
        probs = np.zeros(11)
        probs[round(level)] = 1.0
        if empty:
            verdict = "undetermined"
        else:
            verdict = "in_focus" if abs(dz) <= obj.dof_um else "out_of_focus"
        return FocusScore(
            probabilities=probs,
            expected_level=level,
            predicted_level=round(level),
            certainty_aggregate=0.9,
            certainty_mean=0.9,
            certainty_max=0.95,
            certainty_weighted=0.9,
            in_focus_probability=1.0 if verdict == "in_focus" else 0.0,
            blur_px=float("nan") if empty else b,
            blur_spread_px=0.1,
            astigmatism_px=0.0,
            textured_fraction=0.0 if empty else 1.0,
            verdict=verdict,  # type: ignore[arg-type]
            abs_dz_um=None if empty else abs(dz),
            abs_dz_um_from_level=None if empty else abs(dz),
            model_version=self.model_version,
        )

    def score_batch(
        self, frames: Sequence[np.ndarray], objective: Objective | None = None
    ) -> list[FocusScore]:
        return [self.score(f, objective) for f in frames]
