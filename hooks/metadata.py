"""Focus metadata written into every flagged frame, and how to read it back.

Keys (flat, Micro-Manager style, so they survive the Java and Python backends and
NDTiff storage; values are plain JSON numbers and strings):

============================  =====================================================
key                           value
============================  =====================================================
``FocusVerdict``              ``"in_focus"``, ``"out_of_focus"`` or ``"undetermined"``
                              (empty background: no verdict)
``FocusUndeterminedReason``   why an undetermined frame got no verdict:
                              ``"no_signal"``, ``"blank_field"``, ``"no_texture"``
                              or ``"low_certainty"`` (undetermined frames only)
``FocusLevel``                expected defocus level ``sum_k k p_k`` (0 = in focus,
                              10 = ~30 px of blur), float
``FocusLevelClass``           predicted level (median of the distribution), int
``FocusCertainty``            certainty of the image distribution,
                              ``1 - H(p) / log(11)``, in [0, 1]
``FocusInFocusProbability``   ``P(level <= in-focus max level)``
``FocusBlurPx``               blur score b: median regressed geometric blur
                              diameter over textured patches, pixels
``FocusAbsDzUm``              estimated distance to focus ``|dz|`` in micrometres
                              (from b and the objective)
``FocusTexturedFraction``     share of patches with texture
``FocusScorerVersion``        identifies the models behind the score
``FocusScoreMs``              time spent scoring this frame, milliseconds
``AutofocusOffsetUm``         focus offset the autofocus hook had applied to this
                              frame's position when it was acquired (when linked)
============================  =====================================================

A key whose value is unknown (``FocusBlurPx`` and ``FocusAbsDzUm`` of an undetermined
frame, ``FocusAbsDzUm`` without an objective) is left out rather than written as NaN
(JSON readers on the Java side reject NaN).  Frames that were not scored (every Nth
frame, a channel subset, or skipped to keep up with the camera) carry no ``Focus*``
keys at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autofocus.errors import InvalidInputError
from autofocus.score import FocusScore

__all__ = [
    "AUTOFOCUS_OFFSET_UM",
    "FOCUS_ABS_DZ_UM",
    "FOCUS_BLUR_PX",
    "FOCUS_CERTAINTY",
    "FOCUS_IN_FOCUS_PROBABILITY",
    "FOCUS_KEYS",
    "FOCUS_LEVEL",
    "FOCUS_LEVEL_CLASS",
    "FOCUS_SCORER_VERSION",
    "FOCUS_SCORE_MS",
    "FOCUS_TEXTURED_FRACTION",
    "FOCUS_UNDETERMINED_REASON",
    "FOCUS_VERDICT",
    "FrameFlags",
    "flags_from_metadata",
    "iter_focus_flags",
    "read_focus_flags",
    "score_to_metadata",
]

FOCUS_VERDICT = "FocusVerdict"
FOCUS_UNDETERMINED_REASON = "FocusUndeterminedReason"
FOCUS_LEVEL = "FocusLevel"
FOCUS_LEVEL_CLASS = "FocusLevelClass"
FOCUS_CERTAINTY = "FocusCertainty"
FOCUS_IN_FOCUS_PROBABILITY = "FocusInFocusProbability"
FOCUS_BLUR_PX = "FocusBlurPx"
FOCUS_ABS_DZ_UM = "FocusAbsDzUm"
FOCUS_TEXTURED_FRACTION = "FocusTexturedFraction"
FOCUS_SCORER_VERSION = "FocusScorerVersion"
FOCUS_SCORE_MS = "FocusScoreMs"
AUTOFOCUS_OFFSET_UM = "AutofocusOffsetUm"

FOCUS_KEYS: tuple[str, ...] = (
    FOCUS_VERDICT,
    FOCUS_UNDETERMINED_REASON,
    FOCUS_LEVEL,
    FOCUS_LEVEL_CLASS,
    FOCUS_CERTAINTY,
    FOCUS_IN_FOCUS_PROBABILITY,
    FOCUS_BLUR_PX,
    FOCUS_ABS_DZ_UM,
    FOCUS_TEXTURED_FRACTION,
    FOCUS_SCORER_VERSION,
    FOCUS_SCORE_MS,
)
"""Every key :func:`score_to_metadata` may write."""

_VERDICTS = ("in_focus", "out_of_focus", "undetermined")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def score_to_metadata(
    score: FocusScore, *, verdict: str | None = None, score_ms: float | None = None
) -> dict[str, Any]:
    """The metadata entries for one scored frame (plain ``float``/``int``/``str``).

    ``verdict`` overrides the score's own verdict (the flagging hook's DOF rule).
    """
    v = score.verdict if verdict is None else verdict
    if v not in _VERDICTS:
        raise InvalidInputError(f"verdict must be one of {_VERDICTS}, got {v!r}")
    md: dict[str, Any] = {
        FOCUS_VERDICT: v,
        FOCUS_LEVEL: round(float(score.expected_level), 4),
        FOCUS_LEVEL_CLASS: int(score.predicted_level),
        FOCUS_CERTAINTY: round(float(score.certainty_aggregate), 4),
        FOCUS_IN_FOCUS_PROBABILITY: round(float(score.in_focus_probability), 4),
        FOCUS_TEXTURED_FRACTION: round(float(score.textured_fraction), 4),
        FOCUS_SCORER_VERSION: str(score.model_version),
    }
    if v == "undetermined" and score.undetermined_reason is not None:
        md[FOCUS_UNDETERMINED_REASON] = str(score.undetermined_reason)
    if (b := _num(score.blur_px)) is not None and v != "undetermined":
        md[FOCUS_BLUR_PX] = round(b, 4)
    if (dz := _num(score.abs_dz_um)) is not None and v != "undetermined":
        md[FOCUS_ABS_DZ_UM] = round(dz, 4)
    if score_ms is not None:
        md[FOCUS_SCORE_MS] = round(float(score_ms), 3)
    return md


@dataclass(frozen=True)
class FrameFlags:
    """The focus flags of one saved frame (``None`` where a key is absent)."""

    axes: dict[str, Any]
    verdict: str
    level: float | None
    level_class: int | None
    certainty: float | None
    in_focus_probability: float | None
    blur_px: float | None
    abs_dz_um: float | None
    scorer_version: str | None
    autofocus_offset_um: float | None
    undetermined_reason: str | None = None

    @property
    def out_of_focus(self) -> bool:
        return self.verdict == "out_of_focus"


def flags_from_metadata(metadata: Mapping[str, Any]) -> FrameFlags | None:
    """Parse the ``Focus*`` keys of one frame's metadata; ``None`` when not scored."""
    verdict = metadata.get(FOCUS_VERDICT)
    if verdict is None:
        return None
    if verdict not in _VERDICTS:
        raise InvalidInputError(f"unknown {FOCUS_VERDICT} {verdict!r} in frame metadata")

    def f(key: str) -> float | None:
        return _num(metadata[key]) if metadata.get(key) is not None else None

    lc = metadata.get(FOCUS_LEVEL_CLASS)
    axes = metadata.get("Axes") or {}
    return FrameFlags(
        axes=dict(axes) if isinstance(axes, Mapping) else {},
        verdict=str(verdict),
        level=f(FOCUS_LEVEL),
        level_class=None if lc is None else int(lc),
        certainty=f(FOCUS_CERTAINTY),
        in_focus_probability=f(FOCUS_IN_FOCUS_PROBABILITY),
        blur_px=f(FOCUS_BLUR_PX),
        abs_dz_um=f(FOCUS_ABS_DZ_UM),
        scorer_version=(
            None
            if metadata.get(FOCUS_SCORER_VERSION) is None
            else str(metadata[FOCUS_SCORER_VERSION])
        ),
        autofocus_offset_um=f(AUTOFOCUS_OFFSET_UM),
        undetermined_reason=(
            None
            if metadata.get(FOCUS_UNDETERMINED_REASON) is None
            else str(metadata[FOCUS_UNDETERMINED_REASON])
        ),
    )


def _open_dataset(dataset: Any) -> tuple[Any, bool]:
    if isinstance(dataset, (str, Path)):
        path = Path(dataset)
        if not path.is_dir():
            raise InvalidInputError(f"no dataset folder at {path}")
        try:
            from ndstorage import Dataset
        except ImportError as exc:  # pragma: no cover - ndstorage ships with pycromanager
            raise InvalidInputError("reading NDTiff datasets needs the ndstorage package") from exc
        try:
            return Dataset(str(path)), True
        except Exception as exc:  # ndstorage raises bare Exception for a missing index
            raise InvalidInputError(f"{path} is not an NDTiff dataset: {exc}") from exc
    if not callable(getattr(dataset, "read_metadata", None)):
        raise InvalidInputError(
            f"expected a dataset folder or an ndstorage dataset, got {type(dataset)!r}"
        )
    return dataset, False


def iter_focus_flags(dataset: Any) -> Iterator[tuple[dict[str, Any], FrameFlags | None]]:
    """``(axes, flags or None)`` for every frame of a saved dataset.

    ``dataset`` is a folder written by Pycro-Manager (NDTiff) or an open ndstorage
    dataset (e.g. ``acq.get_dataset()``).
    """
    ds, opened = _open_dataset(dataset)
    try:
        for axes in ds.get_image_coordinates_list():
            md = ds.read_metadata(**axes)
            yield dict(axes), flags_from_metadata(md)
    finally:
        if opened:
            ds.close()


def read_focus_flags(dataset: Any) -> list[FrameFlags]:
    """Flags of every scored frame of a saved dataset (unscored frames are skipped).

    Example::

        flags = read_focus_flags("/data/run_1")
        bad = [f.axes for f in flags if f.out_of_focus]
    """
    out = []
    for axes, flags in iter_focus_flags(dataset):
        if flags is not None:
            out.append(flags if flags.axes else _with_axes(flags, axes))
    return out


def _with_axes(flags: FrameFlags, axes: dict[str, Any]) -> FrameFlags:
    from dataclasses import replace

    return replace(flags, axes=dict(axes))
