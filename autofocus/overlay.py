"""Annotated overlays for ``autofocus score --overlays``: each classifier patch gets a
border whose hue encodes the predicted level (level 0 green ... level 10 red/magenta)
and whose lightness encodes certainty (dark = uncertain), as in Yang et al.'s tool.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from autofocus.io import atomic_path
from autofocus.optics import N_LEVELS
from autofocus.score import FocusScore

__all__ = ["render_overlay", "write_overlay"]


def _level_rgb(level: float, certainty: float) -> np.ndarray:
    hue = (1 / 3) * (1 - min(max(level, 0), N_LEVELS - 1) / (N_LEVELS - 1))  # green -> red
    light = 0.15 + 0.45 * float(np.clip(certainty, 0, 1))
    return np.array(colorsys.hls_to_rgb(hue, light, 1.0))


def render_overlay(frame: np.ndarray, score: FocusScore, border_px: int = 2) -> np.ndarray:
    """RGB uint8 image: the frame (1-99.8 percentile stretch) with coloured patch borders."""
    if score.classifier_patches is None:
        raise ValueError("score the frame with with_patches=True to draw an overlay")
    img = np.asarray(frame, dtype=np.float32)
    lo, hi = np.percentile(img, [1, 99.8])
    grey = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    g = score.classifier_patches
    lv, ce = g.values["level"], g.values["certainty"]
    b = border_px
    for i, y in enumerate(g.ys):
        for j, x in enumerate(g.xs):
            c = _level_rgb(float(lv[i, j]), float(ce[i, j]))
            s = g.size
            rgb[y : y + b, x : x + s] = c
            rgb[y + s - b : y + s, x : x + s] = c
            rgb[y : y + s, x : x + b] = c
            rgb[y : y + s, x + s - b : x + s] = c
    return (rgb * 255).round().astype(np.uint8)


def write_overlay(path: str | Path, frame: np.ndarray, score: FocusScore) -> Path:
    import imagecodecs

    target = Path(path)
    rgb = render_overlay(frame, score)
    with atomic_path(target) as tmp:
        tmp.write_bytes(imagecodecs.png_encode(rgb))
    return target
