"""Scoring files to a CSV (``autofocus score``): one row per image, written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

from autofocus.io import atomic_write_text
from autofocus.optics import N_LEVELS, Objective

__all__ = ["CSV_COLUMNS", "score_files"]

CSV_COLUMNS = [
    "file",
    "predicted_level",
    "expected_level",
    "certainty_aggregate",
    "certainty_mean",
    "certainty_max",
    "certainty_weighted",
    "in_focus_probability",
    "verdict",
    "blur_px",
    "textured_fraction",
    "abs_dz_um",
    *[f"p{k}" for k in range(N_LEVELS)],
    "model_version",
]
"""One row per image; ``model_version`` names the classifier and regressor that scored
it (a preset with its own classifier, ``--objective 20X``, gets that one)."""


def score_files(
    files: Sequence[Path],
    csv_path: Path,
    *,
    objective: Objective | None = None,
    overlays: Path | None = None,
    scorer: object | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Score every file; write the CSV (and overlays). Returns the number of images."""
    from autofocus.imageio import read_image
    from autofocus.overlay import write_overlay
    from autofocus.scorer import LocalScorer

    sc = scorer or LocalScorer()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for i, f in enumerate(files):
        frame = read_image(f)
        s = sc.score(frame, objective, with_patches=overlays is not None)  # type: ignore[attr-defined]
        w.writerow(
            [
                str(f),
                s.predicted_level,
                f"{s.expected_level:.4f}",
                f"{s.certainty_aggregate:.4f}",
                f"{s.certainty_mean:.4f}",
                f"{s.certainty_max:.4f}",
                f"{s.certainty_weighted:.4f}",
                f"{s.in_focus_probability:.4f}",
                s.verdict,
                "" if s.blur_px != s.blur_px else f"{s.blur_px:.3f}",
                f"{s.textured_fraction:.3f}",
                "" if s.abs_dz_um is None else f"{s.abs_dz_um:.3f}",
                *[f"{p:.5f}" for p in s.probabilities],
                s.model_version,
            ]
        )
        if overlays is not None:
            write_overlay(overlays / f"{f.stem}_overlay.png", frame, s)
        if progress:
            progress(i + 1)
    atomic_write_text(csv_path, buf.getvalue())
    return len(files)
