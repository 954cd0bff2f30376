"""Scoring files to a CSV (``autofocus score``): one row per image, written atomically.

Every page of a multi-page TIFF (a z-stack, a time series) is an image: it gets its own
row (``page`` counts from 0 within the file) and, with overlays, its own PNG. A page of a
Pycro-Manager dataset also gets its acquisition axes (``axes``, JSON, from the dataset's
``NDTiff.index``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import InvalidFrameError
from autofocus.io import atomic_write_text
from autofocus.optics import N_LEVELS, Objective

__all__ = ["CSV_COLUMNS", "score_files"]

CSV_COLUMNS = [
    "file",
    "page",
    "axes",
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
"""One row per image (each page of a TIFF is one). ``axes``: the page's acquisition axes
as JSON with sorted keys (``{"position": 0, "time": 2, "z": 5}``) when the file belongs to
a Pycro-Manager dataset, else empty. ``model_version`` names the classifier
and regressor that scored it (a preset with its own classifier, ``--objective 20X``,
gets that one)."""


def score_files(
    files: Sequence[Path],
    csv_path: Path,
    *,
    objective: Objective | None = None,
    overlays: Path | None = None,
    scorer: object | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Score every page of every file; write the CSV (and overlays).

    Every file is opened and its pages counted before any is scored, so an unreadable
    file at the end of a long list fails at once. ``progress(done, total)`` counts
    images (pages). Returns the number of images scored. The CSV is written (atomically)
    only when every page is scored; overlays are written as pages are scored.
    """
    from autofocus.imageio import iter_pages, pages_axes
    from autofocus.scorer import LocalScorer

    axes = [pages_axes(f) for f in files]  # opens every file, one entry per page
    n_pages = [len(a) for a in axes]
    total = sum(n_pages)
    sc = scorer or LocalScorer()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    done = 0
    for f, n, ax in zip(files, n_pages, axes, strict=True):
        for page, frame in enumerate(iter_pages(f)):
            _score_one(sc, w, f, (page, ax[page]), frame, objective, overlays, n)
            done += 1
            if progress:
                progress(done, total)
    atomic_write_text(csv_path, buf.getvalue())
    return done


def _score_one(
    sc: Any,
    w: Any,
    f: Path,
    where: tuple[int, dict[str, Any] | None],
    frame: np.ndarray,
    objective: Objective | None,
    overlays: Path | None,
    n_pages: int,
) -> None:
    from autofocus.overlay import write_overlay

    page, axes = where
    try:
        s = sc.score(frame, objective, with_patches=overlays is not None)
    except InvalidFrameError as exc:  # name the file (and page) the frame came from
        raise InvalidFrameError(f"{f} page {page}: {exc}") from exc
    w.writerow(
        [
            str(f),
            page,
            "" if axes is None else json.dumps(axes, sort_keys=True),
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
        name = f"{f.stem}_p{page:04d}_overlay.png" if n_pages > 1 else f"{f.stem}_overlay.png"
        write_overlay(overlays / name, frame, s)
