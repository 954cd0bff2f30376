"""Pycro-Manager hooks: live autofocus in timelapses and out-of-focus flagging.

Add them to an existing acquisition (Java backend with Micro-Manager running, or the
headless Python backend)::

    af = AutofocusHook(scorer, calibration)                 # microscope: pycromanager.Core()
    flag = FlaggingHook(scorer, objective, autofocus=af)
    with Acquisition(directory, name, **acquisition_hooks(af, flag)) as acq:
        acq.acquire(events)
    af.check(); flag.check()                                # raise what went wrong, if anything
    print(af.summary(), flag.summary())

How the autofocus hook works (engine order: pre-hardware hooks -> XY, channel,
exposure -> Z -> post-hardware hooks -> snap):

* ``pre_hardware`` (engine thread) applies the focus known for the event's position:
  an event with ``"z"`` gets ``z + offset[position]`` (events carry *absolute* z =
  the position's reference z + the relative step, so a relative z-stack stays centred
  on the found focus: Pycro-Manager issue #352); an event without ``"z"`` gets
  ``"z" = focus[position]`` once that position has been focused (so that several XY
  positions each return to their own focus).  A Z move made here would be
  overwritten by the engine, so this hook only edits the event.
* ``post_hardware`` (engine thread, stage and channel already set) runs the search at
  the events chosen by ``every`` (the first event of each time point of each position,
  of each new XY position, once per position, or only on request) plus any position
  the flagging hook asked to refocus, updates that position's offset and puts the
  stage where the current event wants it (re-centred).
* ``offset[p] = focus[p] - reference_z[p]``; ``reference_z_um`` is the z the events
  use for a position's focal plane: 0 for ``multi_d_acquisition_events(z_start=-a,
  z_end=a)``, the position's z with ``xyz_positions`` (:func:`z_centres_um` computes
  it from the event list).

Event shapes handled (both backends): a dict, or a *list* of dicts (a merged hardware
sequence: the first event decides the autofocus, every event is corrected); events
with and without ``"z"``; numpy scalars anywhere (converted to Python numbers in the
events returned).  Returned events never carry ``min_start_time`` (the engine has
already waited for it before the hooks run; re-emitting it makes the Java engine
truncate it to whole seconds), and the hooks never add ``"tags"`` (which kills the
Python backend's event thread).

Failures follow ``on_failure`` (see :mod:`hooks.runtime`): nothing is swallowed even
on the Python backend, where a hook exception ends the acquisition silently; every
failure is logged, kept in ``summary().errors`` and re-raised by ``check()``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autofocus.errors import AutofocusError, InvalidInputError
from autofocus.optics import Objective
from autofocus.score import Scorer
from hooks.metadata import AUTOFOCUS_OFFSET_UM, flags_from_metadata
from hooks.runtime import (
    AutofocusRecord,
    AutofocusSummary,
    FailurePolicy,
    FlagSummary,
    FocusController,
    FrameFlagger,
    check_policy,
)

__all__ = [
    "AutofocusHook",
    "FlaggingHook",
    "Trigger",
    "acquisition_hooks",
    "as_event_list",
    "event_position_key",
    "event_time_index",
    "metadata_position_key",
    "normalise_event",
    "to_builtin",
    "z_centres_um",
]

logger = logging.getLogger(__name__)

Trigger = Literal["time_point", "position", "first", "never"]
_TRIGGERS = ("time_point", "position", "first", "never")
_ALL = object()  # refocus request for every position


# ------------------------------------------------------------------ event helpers
def to_builtin(value: Any) -> Any:
    """Deep copy with numpy scalars/arrays turned into Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {to_builtin(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    return value


def normalise_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-Python copy of one acquisition event (dict), numpy values converted."""
    if not isinstance(event, Mapping):
        raise InvalidInputError(f"an acquisition event must be a dict, got {type(event)!r}")
    out = to_builtin(event)
    if "z" in out:
        z = out["z"]
        if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z):
            raise InvalidInputError(f"event z must be a finite number, got {z!r}")
        out["z"] = float(z)
    return out


def as_event_list(event_or_events: Any) -> tuple[list[dict[str, Any]], bool]:
    """``([normalised events], was_a_list)`` for a hook argument (dict or list of dicts).

    The Java engine hands merged hardware sequences to hooks as a list (over the
    bridge as ``{"events": [...]}``, which Pycro-Manager unwraps; both are accepted).
    """
    if isinstance(event_or_events, Mapping) and "events" in event_or_events:
        event_or_events = event_or_events["events"]
    if isinstance(event_or_events, Mapping):
        return [normalise_event(event_or_events)], False
    if isinstance(event_or_events, (list, tuple)):
        if not event_or_events:
            raise InvalidInputError("an empty event list")
        return [normalise_event(e) for e in event_or_events], True
    raise InvalidInputError(
        f"expected an event dict or a list of them, got {type(event_or_events)!r}"
    )


def _key(value: Any) -> Hashable:
    value = to_builtin(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def event_position_key(event: Mapping[str, Any]) -> Hashable:
    """The XY position an event belongs to: its ``position`` axis, else ``(x, y)``, else None."""
    axes = event.get("axes") or {}
    if "position" in axes:
        return _key(axes["position"])
    if "x" in event and "y" in event:
        return ("xy", round(float(event["x"]), 3), round(float(event["y"]), 3))
    return None


def metadata_position_key(metadata: Mapping[str, Any]) -> Hashable:
    """:func:`event_position_key` for a frame's metadata (``Axes``, intended stage XY)."""
    axes = metadata.get("Axes") or {}
    if "position" in axes:
        return _key(axes["position"])
    x, y = metadata.get("XPosition_um_Intended"), metadata.get("YPosition_um_Intended")
    if x is not None and y is not None:
        return ("xy", round(float(x), 3), round(float(y), 3))
    return None


def event_time_index(event: Mapping[str, Any]) -> int | None:
    axes = event.get("axes") or {}
    t = axes.get("time")
    return None if t is None else int(to_builtin(t))


def _axes_key(event: Mapping[str, Any]) -> Hashable:
    axes = event.get("axes") or {}
    return tuple(sorted((str(k), _key(v)) for k, v in axes.items()))


def z_centres_um(events: Iterable[Mapping[str, Any]]) -> dict[Hashable, float]:
    """Per position, the middle of the z range its events span: ``(min z + max z) / 2``.

    Use it as ``reference_z_um`` when a z-stack is symmetric around each position's
    focal plane (e.g. ``multi_d_acquisition_events(xyz_positions=..., z_start=-a,
    z_end=a)``).  Accepts the nested lists ``multi_d_acquisition_events`` may return.
    """
    lo: dict[Hashable, float] = {}
    hi: dict[Hashable, float] = {}

    def walk(items: Any) -> None:
        for e in items:
            if isinstance(e, (list, tuple)):
                walk(e)
            elif isinstance(e, Mapping) and "z" in e:
                k = event_position_key(e)
                z = float(e["z"])
                lo[k] = min(lo.get(k, z), z)
                hi[k] = max(hi.get(k, z), z)

    walk(events)
    return {k: (lo[k] + hi[k]) / 2 for k in lo}


# ------------------------------------------------------------------ autofocus hook
@dataclass
class _PositionState:
    focus_z_um: float | None = None
    offset_um: float | None = None
    last_af_time: int | None = None
    visited: bool = False


class AutofocusHook:
    """Live autofocus for Pycro-Manager acquisitions (see the module docstring).

    Parameters
    ----------
    scorer
        A :class:`~autofocus.score.Scorer` (``LocalScorer`` or ``RemoteScorer``).
    calibration
        The objective's :class:`~autofocus.curve.BlurCurve` (or a stored calibration
        with ``.curve``).
    microscope
        A :class:`~autofocus.microscope.Microscope`; default
        ``CoreMicroscope(pycromanager.Core())`` created on the engine thread at the
        first autofocus (the remote core on the Java backend, the headless core on
        the Python backend).
    objective
        Given to the scorer (an Objective or a preset name such as ``"20X"``; default:
        ``microscope.objective``).
    every, every_n_time_points
        When to search: ``"time_point"`` (first event of every ``n``-th time point of
        each position; positions without a time axis: on entering them),
        ``"position"`` (whenever the XY position changes), ``"first"`` (first visit
        of each position only) or ``"never"`` (only when :meth:`request_refocus` asked).
        A position's first visit is always focused unless ``every="never"``.
    reference_z_um
        The event z of each position's focal plane: a number, a mapping from position
        key (the ``position`` axis value) to z, or ``callable(event) -> z``.
    search
        :class:`~autofocus.search.SearchConfig` (soft limits are tightened to the
        microscope's).
    on_failure
        ``"raise"``, ``"warn"`` (default) or ``"keep_last"`` (see :mod:`hooks.runtime`).
    move_without_z_plan
        Give events without ``"z"`` their position's focus (default True).
    """

    def __init__(
        self,
        scorer: Scorer,
        calibration: Any,
        *,
        microscope: Any = None,
        objective: Objective | str | None = None,
        every: Trigger = "time_point",
        every_n_time_points: int = 1,
        reference_z_um: float | Mapping[Hashable, float] | Callable[[dict], float] = 0.0,
        search: Any = None,
        on_failure: FailurePolicy = "warn",
        move_without_z_plan: bool = True,
    ) -> None:
        if every not in _TRIGGERS:
            raise InvalidInputError(f"every must be one of {_TRIGGERS}, got {every!r}")
        if isinstance(every_n_time_points, bool) or int(every_n_time_points) < 1:
            raise InvalidInputError("every_n_time_points must be an integer >= 1")
        if not (
            callable(reference_z_um)
            or isinstance(reference_z_um, Mapping)
            or (isinstance(reference_z_um, (int, float)) and math.isfinite(reference_z_um))
        ):
            raise InvalidInputError(
                "reference_z_um must be a finite number, a mapping or a callable"
            )
        self.every: Trigger = every
        self.every_n_time_points = int(every_n_time_points)
        self.reference_z_um = reference_z_um
        self.move_without_z_plan = bool(move_without_z_plan)
        self.on_failure = check_policy(on_failure)
        self.controller = FocusController(
            scorer,
            calibration,
            microscope=microscope if microscope is not None else _pycromanager_microscope,
            objective=objective,
            search=search,
            on_failure=on_failure,
            name="autofocus",
        )
        self._lock = threading.Lock()
        self._state: dict[Hashable, _PositionState] = {}
        # per (position, axes): original z / "z added" marks, pre -> post (FIFO)
        self._orig_z: dict[Hashable, list[float]] = {}
        self._added_z: dict[Hashable, int] = {}
        self._applied: dict[tuple[Hashable, int | None], float | None] = {}
        self._refocus: set[Any] = set()
        self._last_group: tuple[Hashable, int | None] | None = None
        self._prev_key: Any = _ALL

    # ---- public -------------------------------------------------------------------
    def pre_hardware(self, event: Any, event_queue: Any = None) -> Any:
        """``pre_hardware_hook_fn``: apply the known focus of the event's position."""
        if self.controller.cancelled:
            return None
        try:
            events, is_list = as_event_list(event)
            out = [self._pre_one(e) for e in events]
            return out if is_list else out[0]
        except Exception as exc:
            return self._on_error("pre_hardware", event, exc)

    def post_hardware(self, event: Any, event_queue: Any = None) -> Any:
        """``post_hardware_hook_fn``: autofocus when due, re-centre the current event."""
        if self.controller.cancelled:
            return None
        try:
            events, is_list = as_event_list(event)
            out = self._post(events)
            if self.controller.cancelled:
                return None
            return out if is_list else out[0]
        except Exception as exc:
            return self._on_error("post_hardware", event, exc)

    def request_refocus(self, position: Hashable = _ALL) -> None:
        """Search again at the next time point of ``position`` (default: every position)."""
        with self._lock:
            self._refocus.add(position)

    def cancel(self) -> None:
        """Stop a running search at its next image (stage back to its start) and skip
        every later event (the acquisition ends)."""
        self.controller.cancel()

    def focus_z_um(self, position: Hashable = None) -> float | None:
        with self._lock:
            st = self._state.get(position)
            return None if st is None else st.focus_z_um

    def offset_um(self, position: Hashable = None) -> float | None:
        with self._lock:
            st = self._state.get(position)
            return None if st is None else st.offset_um

    def applied_offset_um(self, position: Hashable, time_index: int | None) -> float | None:
        """The offset in force for ``(position, time_index)`` after its autofocus."""
        with self._lock:
            return self._applied.get((position, time_index))

    def records(self) -> tuple[AutofocusRecord, ...]:
        return self.controller.records()

    def summary(self) -> AutofocusSummary:
        """Counts, per-position focus and offsets, records and failures (thread-safe)."""
        recs = self.controller.records()
        with self._lock:
            focus = {k: s.focus_z_um for k, s in self._state.items() if s.focus_z_um is not None}
            offsets = {k: s.offset_um for k, s in self._state.items() if s.offset_um is not None}
        return AutofocusSummary.from_records(
            recs,
            focus_z_um=focus,
            offsets_um=offsets,
            errors=self.controller.errors(),
            cancelled=self.controller.cancelled,
        )

    def check(self) -> None:
        """Raise the first failure recorded during the acquisition, if any."""
        self.controller.check()

    # ---- internals ---------------------------------------------------------------------
    def _reference(self, key: Hashable, event: Mapping[str, Any]) -> float:
        ref = self.reference_z_um
        if callable(ref):
            value = ref(dict(event))
        elif isinstance(ref, Mapping):
            if key not in ref:
                raise InvalidInputError(f"reference_z_um has no entry for position {key!r}")
            value = ref[key]
        else:
            value = ref
        v = float(value)
        if not math.isfinite(v):
            raise InvalidInputError(f"reference z for position {key!r} is not finite")
        return v

    def _clamp(self, z: float) -> float:
        lo, hi = self.controller.microscope().z_limits_um
        if z < lo or z > hi:
            logger.warning("corrected z %.3f um clipped to the soft limits [%g, %g]", z, lo, hi)
        return float(min(max(z, lo), hi))

    def _pre_one(self, e: dict[str, Any]) -> dict[str, Any]:
        e.pop("min_start_time", None)
        key = event_position_key(e)
        ak = (key, _axes_key(e))
        with self._lock:
            st = self._state.get(key)
            focus = None if st is None else st.focus_z_um
            offset = None if st is None else st.offset_um
        if "z" in e:
            orig = float(e["z"])
            with self._lock:
                self._orig_z.setdefault(ak, []).append(orig)
            if offset is not None:
                e["z"] = self._clamp(orig + offset)
        elif self.move_without_z_plan and focus is not None:
            e["z"] = self._clamp(focus)
            with self._lock:
                self._added_z[ak] = self._added_z.get(ak, 0) + 1
        return e

    def _should_autofocus(self, key: Hashable, t: int | None) -> bool:
        with self._lock:
            if key in self._refocus or _ALL in self._refocus:
                self._refocus.discard(key)
                self._refocus.discard(_ALL)
                return True
            st = self._state.get(key)
            prev = self._prev_key
        if self.every == "never":
            return False
        if st is None or not st.visited:
            return True
        if self.every == "first":
            return False
        if self.every == "position" or t is None:
            return key != prev
        return t != st.last_af_time and t % self.every_n_time_points == 0

    def _post(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        first = events[0]
        key, t = event_position_key(first), event_time_index(first)
        group = (key, t)
        first_ak = (key, _axes_key(first))
        with self._lock:
            is_start = group != self._last_group
            pending = self._orig_z.get(first_ak)
            orig_first = pending[0] if pending else None
        ran = False
        if is_start and self._should_autofocus(key, t):
            self._autofocus(key, t, first, orig_first)
            ran = True
        with self._lock:
            st = self._state.setdefault(key, _PositionState())
            st.visited = True
            if is_start:
                self._prev_key = key
                self._last_group = group
            offset, focus = st.offset_um, st.focus_z_um
            self._applied.setdefault(group, offset)
        for e in events:
            e.pop("min_start_time", None)
            ak = (event_position_key(e), _axes_key(e))
            with self._lock:
                origs = self._orig_z.get(ak)
                orig = origs.pop(0) if origs else None
                if origs is not None and not origs:
                    del self._orig_z[ak]
                added = self._added_z.get(ak, 0) > 0
                if added:
                    self._added_z[ak] -= 1
                    if not self._added_z[ak]:
                        del self._added_z[ak]
            if orig is not None and offset is not None:
                e["z"] = self._clamp(orig + offset)
            elif added and focus is not None:
                e["z"] = self._clamp(focus)
        if ran and "z" in events[0]:
            # the search moved the stage: put it where this (re-centred) event wants it
            self.controller.microscope().set_z_um(events[0]["z"])
        return events

    def _autofocus(
        self, key: Hashable, t: int | None, first: dict[str, Any], orig_first: float | None
    ) -> None:
        m = self.controller.microscope()
        ref = self._reference(key, first)
        with self._lock:
            st = self._state.setdefault(key, _PositionState())
            focus, offset = st.focus_z_um, st.offset_um
        if orig_first is not None:
            z_start = ref + (offset or 0.0)
        elif focus is not None:
            z_start = focus
        else:
            z_start = m.get_z_um()
        rec = self.controller.run(z_start, position=key, time_index=t)
        with self._lock:
            st.last_af_time = t
            if rec.applied:
                st.focus_z_um = rec.z_um
                st.offset_um = rec.z_um - ref
            self._applied[(key, t)] = st.offset_um

    def _on_error(self, hook: str, event: Any, exc: Exception) -> Any:
        if getattr(exc, "_hooks_reported", False):
            raise exc  # recorded already: only "raise" lets it out of the controller
        self.controller.report_failure(hook, _describe(event), exc)  # raises under "raise"
        # warn / keep_last: carry on with the event as it came (plain Python values)
        try:
            events, is_list = as_event_list(event)
        except AutofocusError:
            return event
        for e in events:
            e.pop("min_start_time", None)
        return events if is_list else events[0]


def _describe(event: Any) -> str:
    try:
        events, _ = as_event_list(event)
        e = events[0]
        return f"position={event_position_key(e)!r} axes={e.get('axes', {})}"
    except Exception:
        return f"event {type(event).__name__}"


def _pycromanager_microscope() -> Any:
    """``CoreMicroscope(pycromanager.Core())`` (needs Pycro-Manager at run time)."""
    from pycromanager import Core

    from autofocus.microscope import CoreMicroscope

    return CoreMicroscope(Core())


# ------------------------------------------------------------------ flagging hook
class FlaggingHook:
    """``image_process_fn`` that writes a focus verdict into every frame's metadata.

    Runs on Pycro-Manager's image-processing thread (never the engine thread) and
    never moves hardware.  Keys: :mod:`hooks.metadata`.

    Parameters
    ----------
    scorer, objective
        The scorer and the objective (``FocusAbsDzUm`` and the DOF rule need it, and
        the general classifier reads the level better when told it).  Defaults to the
        linked autofocus hook's objective, when that hook was given one.
    every_n
        Score every n-th selected frame (1: all).
    channels
        Score only frames whose ``channel`` axis is one of these (None: all).
    out_of_focus_dof
        Verdict from the ``|dz|`` estimate: out of focus beyond this many DOF
        (None: the classifier's own verdict).
    on_out_of_focus
        ``callback(flags: FrameFlags)`` for every out-of-focus frame (errors in it are
        recorded under the failure policy).
    autofocus, refocus_on_flag
        Link to the :class:`AutofocusHook`: writes ``AutofocusOffsetUm`` into the
        frame and, with ``refocus_on_flag``, asks it to refocus the flagged frame's
        position at its next time point.
    max_lag_s
        Frames reaching the hook later than this after their acquisition pass
        through unscored (counted in ``summary().skipped_to_keep_up``).
    calibration
        The objective's calibration (or ``BlurCurve``): with ``out_of_focus_dof``,
        ``|dz|`` is read off its calibrated b(z), which knows the scorer's floor at
        focus.  Defaults to the linked autofocus hook's calibration.
    """

    def __init__(
        self,
        scorer: Scorer,
        objective: Objective | str | None = None,
        *,
        every_n: int = 1,
        channels: Iterable[str] | None = None,
        out_of_focus_dof: float | None = None,
        on_out_of_focus: Callable[[Any], None] | None = None,
        autofocus: AutofocusHook | None = None,
        refocus_on_flag: bool = False,
        max_lag_s: float | None = 2.0,
        calibration: Any | None = None,
        on_failure: FailurePolicy = "warn",
    ) -> None:
        if isinstance(every_n, bool) or int(every_n) < 1:
            raise InvalidInputError("every_n must be an integer >= 1")
        if refocus_on_flag and autofocus is None:
            raise InvalidInputError("refocus_on_flag needs the autofocus hook (autofocus=...)")
        if on_out_of_focus is not None and not callable(on_out_of_focus):
            raise InvalidInputError("on_out_of_focus must be callable")
        if objective is None and autofocus is not None:
            objective = autofocus.controller.objective
        self.flagger = FrameFlagger(
            scorer,
            objective,
            out_of_focus_dof=out_of_focus_dof,
            max_lag_s=max_lag_s,
            on_failure=on_failure,
            calibration=calibration
            if calibration is not None
            else (autofocus.controller.calibration if autofocus is not None else None),
        )
        self.every_n = int(every_n)
        self.channels = None if channels is None else frozenset(str(c) for c in channels)
        self.on_out_of_focus = on_out_of_focus
        self.autofocus = autofocus
        self.refocus_on_flag = bool(refocus_on_flag)
        self._lock = threading.Lock()
        self._selected = 0
        self._anchor_s: float | None = None
        self._stopped_by: Exception | None = None

    def __call__(self, image: np.ndarray, metadata: dict[str, Any]) -> tuple[np.ndarray, dict]:
        """Score the frame (when selected), add the keys, return ``(image, metadata)``.

        Every frame is returned, so Pycro-Manager saves it, whatever happens.  Under
        ``on_failure="raise"`` a failure stops the acquisition *after* the failing frame:
        the linked autofocus hook is cancelled and :meth:`pre_hardware` (wired by
        :func:`acquisition_hooks`) skips every later event; frames still arriving are
        kept unscored, and :meth:`check` raises the failure.  (Raising here instead
        would make Pycro-Manager drop the frame.)
        """
        if self._stopped_by is not None:
            return image, metadata
        try:
            self._process(image, metadata)
        except Exception as exc:
            try:
                self.flagger.report_failure(_describe_md(metadata), exc)
            except Exception as stop:  # on_failure="raise": stop after this frame
                self._stop(stop)
        return image, metadata

    def pre_hardware(self, event: Any, event_queue: Any = None) -> Any:
        """``pre_hardware_hook_fn`` guard: after a failure under ``on_failure="raise"``
        every later event is skipped (the acquisition ends); else the event as it came."""
        return None if self._stopped_by is not None else event

    @property
    def stopped(self) -> bool:
        """True once a failure under ``on_failure="raise"`` stopped the acquisition."""
        return self._stopped_by is not None

    def _stop(self, exc: Exception) -> None:
        self._stopped_by = exc
        logger.error("flagging failed (%s): the acquisition stops after this frame", exc)
        if self.autofocus is not None:
            self.autofocus.cancel()

    def summary(self) -> FlagSummary:
        return self.flagger.summary()

    def check(self) -> None:
        self.flagger.check()

    # ---- internals ---------------------------------------------------------------------
    def _acquired_at(self, metadata: Mapping[str, Any]) -> float | None:
        el = metadata.get("ElapsedTime-ms")
        if el is None:
            return None
        try:
            el_s = float(el) / 1000.0
        except (TypeError, ValueError):
            return None
        now = time.monotonic()
        with self._lock:
            anchor = now - el_s if self._anchor_s is None else min(self._anchor_s, now - el_s)
            self._anchor_s = anchor
        return anchor + el_s

    def _process(self, image: np.ndarray, metadata: dict[str, Any]) -> None:
        _, lag = self.flagger.seen(self._acquired_at(metadata))
        axes = dict(metadata.get("Axes") or {})
        key = metadata_position_key(metadata)
        if self.autofocus is not None:
            off = self.autofocus.applied_offset_um(key, _int_or_none(axes.get("time")))
            if off is not None:
                metadata[AUTOFOCUS_OFFSET_UM] = round(float(off), 4)
        if self.channels is not None and str(axes.get("channel")) not in self.channels:
            self.flagger.skip("not_selected")
            return
        with self._lock:
            i = self._selected
            self._selected += 1
        if i % self.every_n:
            self.flagger.skip("not_selected")
            return
        if self.flagger.too_late(lag):
            self.flagger.skip("keep_up")
            return
        model = self.autofocus.controller.blur_model(key) if self.autofocus is not None else None
        score, verdict, ms = self.flagger.score(image, model)
        metadata.update(self.flagger.metadata(score, verdict, ms))
        if verdict != "out_of_focus":
            return
        self.flagger.flag(axes)
        if self.refocus_on_flag and self.autofocus is not None:
            self.autofocus.request_refocus(key)
        if self.on_out_of_focus is not None:
            flags = flags_from_metadata(metadata)
            try:
                self.on_out_of_focus(flags)
            except Exception as exc:
                self.flagger.report_failure(f"on_out_of_focus callback at {axes}", exc)


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(to_builtin(v))


def _describe_md(metadata: Any) -> str:
    try:
        return f"frame axes={dict(metadata.get('Axes') or {})}"
    except Exception:
        return "frame"


def acquisition_hooks(
    autofocus: AutofocusHook | None = None, flagging: FlaggingHook | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``pycromanager.Acquisition(...)`` wiring both hooks."""
    kw: dict[str, Any] = {}
    if autofocus is not None:
        kw["pre_hardware_hook_fn"] = autofocus.pre_hardware
        kw["post_hardware_hook_fn"] = autofocus.post_hardware
    if flagging is not None:
        kw["image_process_fn"] = flagging
        if autofocus is None:  # else cancelling the autofocus hook skips the events
            kw["pre_hardware_hook_fn"] = flagging.pre_hardware
    return kw
