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

from autofocus.errors import InvalidFrameError, InvalidInputError
from autofocus.io import atomic_write_text
from autofocus.optics import N_LEVELS, Objective

__all__ = ["CSV_COLUMNS", "overlay_names", "score_files"]

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
    "undetermined_reason",
    "blur_px",
    "textured_fraction",
    "abs_dz_um",
    *[f"p{k}" for k in range(N_LEVELS)],
    "model_version",
]
"""One row per image (each page of a TIFF is one). ``axes``: the page's acquisition axes
as JSON with sorted keys (``{"position": 0, "time": 2, "z": 5}``) when the file belongs to
a Pycro-Manager dataset, else empty. ``undetermined_reason``: why an undetermined image
got no verdict (:data:`autofocus.score.UndeterminedReason`), else empty.
``model_version`` names the classifier and regressor that scored it (a preset with its
own classifier, ``--objective 20X``, gets that one)."""


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

    inputs = {_same_file_key(f) for f in files}
    if _same_file_key(csv_path) in inputs:
        raise InvalidInputError(f"the CSV {csv_path} is one of the images to score")
    axes = [pages_axes(f) for f in files]  # opens every file, one entry per page
    n_pages = [len(a) for a in axes]
    names = overlay_names(files, n_pages)
    if overlays is not None:
        clash = [f for f in names.values() if _same_file_key(overlays / f) in inputs]
        if clash:
            raise InvalidInputError(f"the overlay {overlays / clash[0]} would replace an input")
    total = sum(n_pages)
    sc = scorer or LocalScorer()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    done = 0
    for k, (f, ax) in enumerate(zip(files, axes, strict=True)):
        for page, frame in enumerate(iter_pages(f)):
            out = None if overlays is None else overlays / names[(k, page)]
            _score_one(sc, w, f, (page, ax[page]), frame, objective, out)
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
    overlay: Path | None,
) -> None:
    from autofocus.overlay import write_overlay

    page, axes = where
    try:
        s = sc.score(frame, objective, with_patches=overlay is not None)
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
            s.undetermined_reason or "",
            "" if s.blur_px != s.blur_px else f"{s.blur_px:.3f}",
            f"{s.textured_fraction:.3f}",
            "" if s.abs_dz_um is None else f"{s.abs_dz_um:.3f}",
            *[f"{p:.5f}" for p in s.probabilities],
            s.model_version,
        ]
    )
    if overlay is not None:
        write_overlay(overlay, frame, s)


def overlay_names(files: Sequence[Path], n_pages: Sequence[int]) -> dict[tuple[int, int], str]:
    """``(file index, page) -> overlay file name``, distinct for every image.

    ``<stem>_overlay.png`` (``<stem>_p0003_overlay.png`` for a page of a stack); files
    whose stems clash (``x.png`` and ``x.tif``, or ``a/x.png`` and ``b/x.png``) add
    their suffix, then their position in the list (``x_png_2``).
    """

    def stem(k: int, level: int) -> str:
        f = files[k]
        if level == 0:
            return f.stem
        if level == 1:
            return f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        return f"{f.stem}_{f.suffix.lstrip('.').lower()}_{k}"

    levels = [0] * len(files)
    for level in (1, 2):
        seen: dict[str, list[int]] = {}
        for k in range(len(files)):
            seen.setdefault(stem(k, levels[k]).lower(), []).append(k)
        for ks in seen.values():
            if len(ks) > 1:
                for k in ks:
                    levels[k] = level
    out = {}
    for k, n in enumerate(n_pages):
        for page in range(n):
            tail = f"_p{page:04d}_overlay.png" if n > 1 else "_overlay.png"
            out[(k, page)] = stem(k, levels[k]) + tail
    if len({v.lower() for v in out.values()}) < len(out):  # e.g. a file named x_png_0.png
        out = {kp: f"{kp[0]:05d}_{v}" for kp, v in out.items()}
    return out


def _same_file_key(p: Path) -> str:
    return str(Path(p).expanduser().resolve())
