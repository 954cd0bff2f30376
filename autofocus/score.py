"""The per-frame result (:class:`FocusScore`) and the :class:`Scorer` protocol.

No torch here: hooks, the service client and calibration files depend on this module
only, and the remote scorer returns the same types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from autofocus.errors import InvalidInputError
from autofocus.optics import Objective

__all__ = [
    "BLUR_UNDETERMINED_REASONS",
    "UNDETERMINED_REASONS",
    "BlurScore",
    "FocusScore",
    "PatchGrid",
    "Scorer",
    "UndeterminedReason",
    "Verdict",
    "measure_blur",
]

Verdict = Literal["in_focus", "out_of_focus", "undetermined"]

UndeterminedReason = Literal["no_signal", "blank_field", "no_texture", "low_certainty"]
"""Why a frame got no verdict (the first that applies, in this order):

* ``no_signal``: the frame is constant (all zero, uniform, or saturated everywhere);
* ``blank_field``: illumination and noise only (:func:`autofocus.blank.is_blank_field`:
  an empty field, vignetted or ramped light, a dark frame with hot pixels);
* ``no_texture``: the regressor finds texture in no patch (a specimen too faint or too
  far out of focus to show above the noise, or background only);
* ``low_certainty``: textured patches, but the classifier is so unsure of every one that
  their summed weight is negligible (``LocalScorer(min_weight=...)``; b is still given).
"""

UNDETERMINED_REASONS: tuple[str, ...] = get_args(UndeterminedReason)
BLUR_UNDETERMINED_REASONS: tuple[str, ...] = ("no_signal", "blank_field", "no_texture")
"""The reasons a :class:`BlurScore` can have (``low_certainty`` is the classifier's)."""


@dataclass(frozen=True)
class PatchGrid:
    """Per-patch results on a tile grid: patch ``(i, j)`` starts at ``(ys[i], xs[j])``.

    ``values`` maps a name (``level``, ``certainty``, ``texture``, ``blur_px``...) to an
    ``(ny, nx)`` array.
    """

    ys: np.ndarray
    xs: np.ndarray
    size: int
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ys": self.ys.tolist(),
            "xs": self.xs.tolist(),
            "size": self.size,
            "values": {k: np.asarray(v).tolist() for k, v in self.values.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PatchGrid:
        return cls(
            np.asarray(d["ys"], dtype=np.int64),
            np.asarray(d["xs"], dtype=np.int64),
            int(d["size"]),
            {k: np.asarray(v, dtype=np.float64) for k, v in d["values"].items()},
        )


@dataclass(frozen=True)
class FocusScore:
    """Focus quality of one frame.

    * ``probabilities``: the image's distribution over the 11 defocus levels (the
      certainty- and texture-weighted mean of the patch distributions);
    * ``expected_level`` (sum k p_k) and ``predicted_level`` (the median level,
      :func:`autofocus.models.median_level`); both mean nothing when the verdict is
      undetermined (a blank frame has a uniform distribution: level 5);
    * certainties (Yang et al.): ``certainty_aggregate`` (of ``probabilities``),
      ``certainty_mean``, ``certainty_max`` and ``certainty_weighted`` (sum c^2 / sum c)
      over textured patches;
    * ``in_focus_probability``: P(level <= in-focus max level);
    * ``blur_px`` (the blur score b): median over textured patches of the regressed
      geometric blur diameter in pixels, with ``blur_spread_px`` its median absolute
      deviation; NaN when undetermined;
    * ``textured_fraction``: share of regressor patches with texture;
    * ``verdict``: in_focus / out_of_focus / undetermined, and for an undetermined frame
      ``undetermined_reason`` (:data:`UndeterminedReason`; None otherwise);
    * ``abs_dz_um`` (from b) and ``abs_dz_um_from_level`` (from the expected level): the
      distance to focus in micrometres when the objective is known, else None.
    """

    probabilities: np.ndarray
    expected_level: float
    predicted_level: int
    certainty_aggregate: float
    certainty_mean: float
    certainty_max: float
    certainty_weighted: float
    in_focus_probability: float
    blur_px: float
    blur_spread_px: float
    astigmatism_px: float
    textured_fraction: float
    verdict: Verdict
    abs_dz_um: float | None
    abs_dz_um_from_level: float | None
    model_version: str
    undetermined_reason: UndeterminedReason | None = None
    classifier_patches: PatchGrid | None = None
    regressor_patches: PatchGrid | None = None
    contrast_signature: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Low-pass contrast of the frame (:mod:`autofocus.contrast`), attached by
    :func:`measure_blur` for the search; not sent over the wire."""

    def __post_init__(self) -> None:
        _check_reason(
            self.undetermined_reason,
            self.verdict == "undetermined",
            "verdict",
            UNDETERMINED_REASONS,
        )

    @property
    def determined(self) -> bool:
        return self.verdict != "undetermined"

    def to_dict(self, with_patches: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k == "contrast_signature":
                continue
            if k.endswith("_patches"):
                if with_patches and v is not None:
                    d[k] = v.to_dict()
                continue
            if k == "undetermined_reason" and v is None:
                continue  # sent only with a reason: determined replies stay as they were
            if isinstance(v, np.ndarray):
                d[k] = v.tolist()
            elif isinstance(v, float) and not np.isfinite(v):
                d[k] = None
            else:
                d[k] = v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FocusScore:
        """The inverse of :meth:`to_dict`.  Tolerant of other versions: keys this class
        does not know (fields a newer server added) are ignored, and a reason it does
        not know reads as None."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("undetermined_reason") not in UNDETERMINED_REASONS:
            kw["undetermined_reason"] = None
        kw["probabilities"] = np.asarray(kw["probabilities"], dtype=np.float64)
        for k in ("blur_px", "blur_spread_px", "astigmatism_px"):
            kw[k] = float("nan") if kw.get(k) is None else float(kw[k])
        for k in ("classifier_patches", "regressor_patches"):
            kw[k] = PatchGrid.from_dict(kw[k]) if kw.get(k) else None
        return cls(**kw)


@dataclass(frozen=True)
class BlurScore:
    """The blur regressor's part of a :class:`FocusScore`, for the autofocus search.

    The search needs only ``b`` and the per-patch blur and texture, not the defocus
    classifier, which is about 80 % of the scoring time; ``LocalScorer.blur_score``
    skips it.  ``determined`` is False when no patch is textured (``blur_px`` NaN).
    """

    blur_px: float
    blur_spread_px: float
    textured_fraction: float
    model_version: str
    undetermined_reason: UndeterminedReason | None = None
    """Why ``blur_px`` is NaN (``no_signal``, ``blank_field`` or ``no_texture``)."""
    regressor_patches: PatchGrid | None = None
    contrast_signature: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_reason(
            self.undetermined_reason,
            not np.isfinite(self.blur_px),
            "blur_px",
            BLUR_UNDETERMINED_REASONS,
        )

    @property
    def determined(self) -> bool:
        return bool(np.isfinite(self.blur_px))


def _check_reason(
    reason: str | None, undetermined: bool, what: str, allowed: tuple[str, ...]
) -> None:
    """A reason is one of ``allowed``, and only on an undetermined score."""
    if reason is None:
        return
    if reason not in allowed:
        raise InvalidInputError(
            f"undetermined_reason must be one of {allowed} or None, got {reason!r}"
        )
    if not undetermined:
        raise InvalidInputError(
            f"undetermined_reason {reason!r} given for a determined score ({what})"
        )


def measure_blur(
    scorer: Any, frame: np.ndarray, objective: Objective | None, *, with_patches: bool
) -> FocusScore | BlurScore:
    """The scorer's ``blur_score`` when it has one (cheaper), else its full ``score``,
    with the frame's contrast signature attached (the search's phase-object cue)."""
    from dataclasses import replace

    from autofocus.contrast import contrast_signature

    fn = getattr(scorer, "blur_score", None)
    if fn is not None:
        s = fn(frame, objective, with_patches=with_patches)
    else:
        s = scorer.score(frame, objective, with_patches=with_patches)
    return replace(s, contrast_signature=contrast_signature(frame))


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores frames: the in-process ``LocalScorer`` or a ``RemoteScorer``."""

    def score(
        self,
        frame: np.ndarray,
        objective: Objective | str | None = None,
        *,
        with_patches: bool = False,
    ) -> FocusScore:
        """Score one 2-D frame (any size >= one 84x84 patch)."""
        ...

    def score_batch(
        self, frames: Sequence[np.ndarray], objective: Objective | str | None = None
    ) -> list[FocusScore]:
        """Score several frames at once (same objective)."""
        ...

    @property
    def model_version(self) -> str:
        """Identifies the models (names, versions, checksums) behind the scores."""
        ...
