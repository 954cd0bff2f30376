"""What the Pycro-Manager hooks and the pymmcore-plus engine share.

* :class:`FocusController`: one autofocus at a time on a :class:`Microscope` (drives a
  :class:`~autofocus.search.FocusSearch` step by step, so it can be cancelled between
  images), the failure policy, one INFO log line per autofocus and the record of every
  autofocus (:class:`AutofocusRecord`, :class:`AutofocusSummary`).
* :class:`FrameFlagger`: scores frames, turns the verdict into metadata
  (:mod:`hooks.metadata`), measures how far scoring lags behind the camera and keeps
  a running :class:`FlagSummary`.

Failure policy (``on_failure``), for a search that does not converge (including an
empty field) or raises (scorer timeout, stage error):

* ``"raise"``: the error is logged and recorded, the stage goes back to where the
  search started, and :class:`~autofocus.errors.FocusSearchError` (or the original
  :class:`~autofocus.errors.AutofocusError`) is raised: the acquisition stops;
* ``"warn"``: logged as a WARNING and recorded; the acquisition goes on with the last
  good focus (the stage goes back to where the search started);
* ``"keep_last"``: the same, logged at INFO (expected failures, e.g. empty wells).

Nothing is swallowed: every failure is in ``summary().errors``, and
``check()`` raises the first one after the acquisition.  No frame is lost to a failure:
a frame whose scoring failed is still handed on (saved, without focus keys), and under
``"raise"`` the acquisition stops after it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from autofocus.errors import AutofocusError, FocusSearchError, InvalidInputError
from autofocus.optics import Objective, get_objective
from autofocus.score import FocusScore, Scorer, measure_blur

__all__ = [
    "AutofocusRecord",
    "AutofocusSummary",
    "FailurePolicy",
    "FlagSummary",
    "FocusController",
    "FrameFlagger",
    "HookFailure",
    "check_policy",
]

logger = logging.getLogger("hooks")

FailurePolicy = Literal["raise", "warn", "keep_last"]
_POLICIES = ("raise", "warn", "keep_last")


def check_policy(policy: str) -> FailurePolicy:
    if policy not in _POLICIES:
        raise InvalidInputError(f"on_failure must be one of {_POLICIES}, got {policy!r}")
    return policy  # type: ignore[return-value]


@dataclass(frozen=True)
class HookFailure:
    """One failure inside a hook: where, what, and what the policy did."""

    hook: str
    where: str
    error_type: str
    message: str
    action: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class AutofocusRecord:
    """One autofocus: position key, time index, start and final z, images, outcome.

    ``z_um`` is where the stage was left (the found focus, or the start on failure);
    ``applied`` tells whether the result changed the position's focus.
    """

    position: Hashable
    time_index: int | None
    z_start_um: float
    z_um: float
    images_used: int
    confidence: float
    status: str
    reason: str
    elapsed_ms: float
    applied: bool
    trace: tuple[tuple[float, float], ...] = ()
    gain: float | None = None
    offset_px: float | None = None
    """How this position's blur score relates to the calibration, ``b ~ gain B + offset``
    (fitted by the search; lets the flagger judge this specimen's frames)."""

    @property
    def shift_um(self) -> float:
        return self.z_um - self.z_start_um


@dataclass(frozen=True)
class AutofocusSummary:
    """Snapshot of an autofocus hook's work so far."""

    n_autofocus: int
    n_converged: int
    n_failed: int
    images_used: int
    mean_images: float
    focus_z_um: dict[Hashable, float]
    offsets_um: dict[Hashable, float]
    records: tuple[AutofocusRecord, ...]
    errors: tuple[HookFailure, ...]
    cancelled: bool

    @classmethod
    def from_records(
        cls,
        records: tuple[AutofocusRecord, ...],
        *,
        focus_z_um: dict[Hashable, float],
        offsets_um: dict[Hashable, float],
        errors: tuple[HookFailure, ...],
        cancelled: bool,
    ) -> AutofocusSummary:
        """Counts and the mean image count derived from the records."""
        n = len(records)
        images = sum(r.images_used for r in records)
        return cls(
            n_autofocus=n,
            n_converged=sum(r.applied for r in records),
            n_failed=sum(not r.applied for r in records),
            images_used=images,
            mean_images=images / n if n else float("nan"),
            focus_z_um=focus_z_um,
            offsets_um=offsets_um,
            records=records,
            errors=errors,
            cancelled=cancelled,
        )


@dataclass(frozen=True)
class FlagSummary:
    """Snapshot of a flagging hook's work so far.

    ``busy_fraction`` = time spent scoring / time between the first and last frame
    seen (> 1 means scoring cannot keep up with the camera); ``lag_ms_max`` is the
    largest delay between a frame's acquisition and the start of its scoring.
    """

    frames_seen: int
    frames_scored: int
    skipped_not_selected: int
    skipped_to_keep_up: int
    in_focus: int
    out_of_focus: int
    undetermined: int
    flagged: tuple[dict[str, Any], ...]
    errors: tuple[HookFailure, ...]
    mean_score_ms: float
    busy_fraction: float
    lag_ms_max: float


# ------------------------------------------------------------------ autofocus
class FocusController:
    """Runs autofocus searches on a microscope and remembers their outcome.

    Parameters
    ----------
    scorer
        Any :class:`~autofocus.score.Scorer` (in-process or remote).
    calibration
        A :class:`~autofocus.curve.BlurCurve` or an object with ``.curve``.
    microscope
        A :class:`~autofocus.microscope.Microscope`, or a callable returning one
        (resolved on first use, on the thread that drives the hardware).
    objective
        Passed to the scorer; default ``microscope.objective`` when it has one.
    search
        :class:`~autofocus.search.SearchConfig`; its soft limits are tightened to the
        microscope's.
    on_failure
        See the module docstring.
    name
        Used in log lines and failure records.
    """

    def __init__(
        self,
        scorer: Scorer,
        calibration: Any,
        *,
        microscope: Any = None,
        objective: Objective | str | None = None,
        search: Any = None,
        on_failure: FailurePolicy = "warn",
        name: str = "autofocus",
    ) -> None:
        from autofocus.curve import BlurCurve
        from autofocus.search import SearchConfig

        if not callable(getattr(scorer, "score", None)):
            raise InvalidInputError(f"scorer must implement Scorer.score, got {type(scorer)!r}")
        curve = getattr(calibration, "curve", calibration)
        if not isinstance(curve, BlurCurve):
            raise InvalidInputError(
                f"calibration must be a BlurCurve or have a .curve, got {type(calibration)!r}"
            )
        if search is not None and not isinstance(search, SearchConfig):
            raise InvalidInputError(f"search must be a SearchConfig, got {type(search)!r}")
        self.scorer = scorer
        self.calibration = calibration
        self.objective = None if objective is None else get_objective(objective)
        self.search_config = search or SearchConfig()
        self.on_failure = check_policy(on_failure)
        self.name = name
        self._microscope_arg = microscope
        self._microscope: Any = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._records: list[AutofocusRecord] = []
        self._errors: list[HookFailure] = []
        self._focus_b_px: dict[Hashable, float] = {}
        """Per position: the field's b at focus from its last converged search."""

    # ---- resources -----------------------------------------------------------------
    def microscope(self) -> Any:
        if self._microscope is None:
            m = self._microscope_arg
            if m is None:
                raise InvalidInputError("no microscope given to the autofocus")
            if callable(m) and not hasattr(m, "get_z_um"):
                m = m()
            for attr in ("get_z_um", "set_z_um", "snap", "z_limits_um"):
                if not hasattr(m, attr):
                    raise InvalidInputError(f"{type(m).__name__} is not a Microscope: no {attr}")
            self._microscope = m
        return self._microscope

    def _objective(self) -> Objective | None:
        """The given objective, else the microscope's, else the calibration's (the
        models are told the optics the calibration was scored with)."""
        if self.objective is not None:
            return self.objective
        return getattr(self._microscope, "objective", None) or getattr(
            self.calibration, "objective", None
        )

    # ---- cancellation ----------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the running search at its next image; later searches do not start."""
        self._cancel.set()

    def reset_cancel(self) -> None:
        self._cancel.clear()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # ---- the search ------------------------------------------------------------------
    def run(
        self, z_start_um: float, *, position: Hashable = None, time_index: int | None = None
    ) -> AutofocusRecord:
        """One autofocus from ``z_start_um``; leaves the stage at the returned ``z_um``.

        Applies the failure policy: returns a record with ``applied=False`` under
        ``warn``/``keep_last``, raises under ``raise``.  Always logs one line.
        """
        from autofocus.search import FocusSearch

        t0 = time.perf_counter()
        m = self.microscope()
        lo, hi = (float(v) for v in m.z_limits_um)
        c_lo, c_hi = self.search_config.z_limits_um
        lo, hi = max(lo, c_lo), min(hi, c_hi)
        z0 = float(min(max(float(z_start_um), lo), hi))
        cfg = self.search_config.model_copy(update={"z_limits_um": (lo, hi)})
        with_patches = bool(cfg.per_roi)
        obj = self._objective()
        with self._lock:
            focus_b = self._focus_b_px.get(position)
        search = FocusSearch(z0, self.calibration, cfg, focus_b_px=focus_b)
        error: BaseException | None = None
        try:
            while (z := search.next_z_um()) is not None:
                if self._cancel.is_set():
                    search.abort("cancelled")
                    break
                m.set_z_um(z)
                frame = m.snap()
                search.observe(z, measure_blur(self.scorer, frame, obj, with_patches=with_patches))
        except Exception as exc:  # scorer timeout, stage error, bad frame...
            error = exc
            search.abort(f"{type(exc).__name__}: {exc}")
        res = search.result
        ok = res.status == "converged" and error is None
        target = res.z_um if ok else z0
        try:
            m.set_z_um(target)
        except Exception as exc:
            if error is None:
                error = exc
            ok = False
            logger.error("%s: could not move the stage to %.3f um: %s", self.name, target, exc)
        ms = (time.perf_counter() - t0) * 1e3
        record = AutofocusRecord(
            position=position,
            time_index=time_index,
            z_start_um=z0,
            z_um=target,
            images_used=res.images_used,
            confidence=float(res.confidence),
            status=res.status if error is None else "failed",
            reason=res.reason,
            elapsed_ms=ms,
            applied=ok,
            trace=tuple(res.trace),
            gain=res.gain,
            offset_px=res.offset_px,
        )
        with self._lock:
            self._records.append(record)
            if ok and res.focus_b_px is not None:
                self._focus_b_px[position] = res.focus_b_px
        where = f"position={position!r} t={time_index}"
        if ok:
            logger.info(
                "%s %s: z %.3f -> %.3f um (%+.3f), %d images, confidence %.2f, %.0f ms",
                self.name,
                where,
                z0,
                target,
                target - z0,
                res.images_used,
                res.confidence,
                ms,
            )
            return record
        if self._cancel.is_set() and error is None:
            logger.info("%s %s: cancelled after %d images", self.name, where, res.images_used)
            return record
        exc_out: AutofocusError
        if isinstance(error, AutofocusError):
            exc_out = error
        else:
            exc_out = FocusSearchError(f"autofocus {record.status} at {where}: {res.reason}")
            exc_out.result = res  # type: ignore[attr-defined]
            if error is not None:
                exc_out.__cause__ = error
        self.report_failure("autofocus", where, exc_out)
        return record

    # ---- failures --------------------------------------------------------------------
    def report_failure(self, hook: str, where: str, exc: BaseException) -> None:
        """Log and record a failure; raise it under ``on_failure="raise"``."""
        report_failure(self.name, hook, where, exc, self.on_failure, self._errors, self._lock)

    def records(self) -> tuple[AutofocusRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def errors(self) -> tuple[HookFailure, ...]:
        with self._lock:
            return tuple(self._errors)

    def check(self) -> None:
        """Raise the first recorded failure (call after the acquisition)."""
        errs = self.errors()
        if errs:
            first = errs[0]
            if isinstance(first.exception, Exception):
                raise first.exception
            raise FocusSearchError(f"{first.where}: {first.message}")

    def blur_model(self, position: Hashable) -> tuple[float, float] | None:
        """``(gain, offset_px)`` of the latest converged autofocus at ``position``."""
        with self._lock:
            for r in reversed(self._records):
                if (
                    r.position == position
                    and r.status == "converged"
                    and r.gain is not None
                    and r.offset_px is not None
                ):
                    return float(r.gain), float(r.offset_px)
        return None


def report_failure(
    name: str,
    hook: str,
    where: str,
    exc: BaseException,
    policy: FailurePolicy,
    errors: list[HookFailure],
    lock: threading.Lock,
) -> None:
    action = {"raise": "stopped the acquisition", "warn": "continued", "keep_last": "continued"}[
        policy
    ]
    failure = HookFailure(hook, where, type(exc).__name__, str(exc), action, exc)
    with lock:
        errors.append(failure)
    expected = isinstance(exc, AutofocusError)
    msg = "%s %s failed at %s: %s: %s (%s)"
    args = (name, hook, where, type(exc).__name__, exc, action)
    if policy == "raise":
        logger.error(msg, *args, exc_info=None if expected else exc)
        try:
            exc._hooks_reported = True  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass
        raise exc
    if policy == "warn" or not expected:
        logger.warning(msg, *args, exc_info=None if expected else exc)
    else:
        logger.info(msg, *args)


# ------------------------------------------------------------------ flagging
class FrameFlagger:
    """Scores frames and writes the verdict into their metadata.

    Parameters
    ----------
    scorer, objective
        The scorer and the objective (for ``|dz|`` in um and the DOF rule).
    out_of_focus_dof
        When set (and the objective is known), the verdict comes from the estimated
        distance to focus instead of the classifier's level: ``out_of_focus`` when
        ``|dz| > out_of_focus_dof * DOF``, else ``in_focus`` (undetermined frames stay
        undetermined).  ``|dz|`` is read off the calibration curve when one is given
        (``calibration``), else it is the scorer's ``FocusAbsDzUm``.
    max_lag_s
        A frame that reaches the flagger more than this long after it was acquired is
        passed through unscored, so flagging never holds the camera back (``None``:
        score everything).
    """

    def __init__(
        self,
        scorer: Scorer,
        objective: Objective | str | None = None,
        *,
        out_of_focus_dof: float | None = None,
        max_lag_s: float | None = 2.0,
        on_failure: FailurePolicy = "warn",
        name: str = "flagging",
        calibration: Any | None = None,
    ) -> None:
        if not callable(getattr(scorer, "score", None)):
            raise InvalidInputError(f"scorer must implement Scorer.score, got {type(scorer)!r}")
        if out_of_focus_dof is not None and not (
            math.isfinite(out_of_focus_dof) and out_of_focus_dof > 0
        ):
            raise InvalidInputError("out_of_focus_dof must be > 0")
        if max_lag_s is not None and not (max_lag_s >= 0):
            raise InvalidInputError("max_lag_s must be >= 0 or None")
        if out_of_focus_dof is not None and objective is None:
            raise InvalidInputError("out_of_focus_dof needs the objective (for its DOF)")
        self.scorer = scorer
        self.objective = None if objective is None else get_objective(objective)
        self.out_of_focus_dof = out_of_focus_dof
        curve = getattr(calibration, "curve", calibration)
        if curve is not None and not callable(getattr(curve, "abs_dz_um", None)):
            raise InvalidInputError(f"calibration must be a BlurCurve or have .curve: {curve!r}")
        self.curve = curve
        self.max_lag_s = max_lag_s
        self.on_failure = check_policy(on_failure)
        self.name = name
        self._lock = threading.Lock()
        self._errors: list[HookFailure] = []
        self._flagged: list[dict[str, Any]] = []
        self._counts = {"seen": 0, "scored": 0, "not_selected": 0, "keep_up": 0}
        self._verdicts = {"in_focus": 0, "out_of_focus": 0, "undetermined": 0}
        self._score_s = 0.0
        self._first_seen: float | None = None
        self._last_seen: float | None = None
        self._lag_max_s = 0.0

    def seen(self, acquired_at: float | None = None) -> tuple[float, float]:
        """Count a frame; returns (now, lag_s) with ``acquired_at`` a monotonic time."""
        now = time.monotonic()
        lag = 0.0 if acquired_at is None else max(0.0, now - acquired_at)
        with self._lock:
            self._counts["seen"] += 1
            if self._first_seen is None:
                self._first_seen = now
            self._last_seen = now
            self._lag_max_s = max(self._lag_max_s, lag)
        return now, lag

    def skip(self, reason: Literal["not_selected", "keep_up"]) -> None:
        with self._lock:
            self._counts[reason] += 1

    def too_late(self, lag_s: float) -> bool:
        return self.max_lag_s is not None and lag_s > self.max_lag_s

    def score(
        self, image: np.ndarray, blur_model: tuple[float, float] | None = None
    ) -> tuple[FocusScore, str, float]:
        """Score one frame: (score, verdict after the DOF rule, milliseconds).

        ``blur_model`` (``gain, offset_px`` from this position's last autofocus) maps the
        frame's blur score onto the calibration, ``(b - offset) / gain``, before |dz|
        is read off the calibrated curve: specimens differ in their blur score at focus.
        """
        t0 = time.perf_counter()
        frame = np.asarray(image)
        if frame.ndim == 3 and frame.shape[-1] in (3, 4):  # RGB(A): score the luminance
            frame = frame[..., :3].mean(axis=-1)
        s = self.scorer.score(frame, self.objective)
        verdict = s.verdict
        if (
            self.out_of_focus_dof is not None
            and self.objective is not None
            and verdict != "undetermined"
            and s.abs_dz_um is not None
            and math.isfinite(s.abs_dz_um)
        ):
            limit = self.out_of_focus_dof * self.objective.dof_um
            dz = s.abs_dz_um
            if self.curve is not None and math.isfinite(s.blur_px):
                b = s.blur_px
                if blur_model is not None and blur_model[0] > 0:
                    b = (b - blur_model[1]) / blur_model[0]
                dz = self.curve.abs_dz_um(b)  # this objective's calibrated b(z)
            verdict = "out_of_focus" if dz > limit else "in_focus"
        dt = time.perf_counter() - t0
        with self._lock:
            self._score_s += dt
            self._counts["scored"] += 1
            self._verdicts[verdict] += 1
        return s, verdict, dt * 1e3

    def metadata(self, score: FocusScore, verdict: str, score_ms: float) -> dict[str, Any]:
        from hooks.metadata import score_to_metadata

        return score_to_metadata(score, verdict=verdict, score_ms=score_ms)

    def flag(self, axes: dict[str, Any]) -> None:
        with self._lock:
            self._flagged.append(dict(axes))

    def report_failure(self, where: str, exc: BaseException) -> None:
        report_failure(self.name, "flagging", where, exc, self.on_failure, self._errors, self._lock)

    def errors(self) -> tuple[HookFailure, ...]:
        with self._lock:
            return tuple(self._errors)

    def summary(self) -> FlagSummary:
        with self._lock:
            span = (
                0.0
                if self._first_seen is None or self._last_seen is None
                else self._last_seen - self._first_seen
            )
            n = self._counts["scored"]
            return FlagSummary(
                frames_seen=self._counts["seen"],
                frames_scored=n,
                skipped_not_selected=self._counts["not_selected"],
                skipped_to_keep_up=self._counts["keep_up"],
                in_focus=self._verdicts["in_focus"],
                out_of_focus=self._verdicts["out_of_focus"],
                undetermined=self._verdicts["undetermined"],
                flagged=tuple(dict(a) for a in self._flagged),
                errors=tuple(self._errors),
                mean_score_ms=self._score_s / n * 1e3 if n else float("nan"),
                busy_fraction=self._score_s / span if span > 0 else float("nan"),
                lag_ms_max=self._lag_max_s * 1e3,
            )

    def check(self) -> None:
        errs = self.errors()
        if errs and isinstance(errs[0].exception, Exception):
            raise errs[0].exception


def safe_call(fn: Callable[..., Any], *args: Any) -> BaseException | None:
    """Call a user callback; return its exception instead of raising."""
    try:
        fn(*args)
    except Exception as exc:
        return exc
    return None
