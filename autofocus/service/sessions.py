"""Server-side step-wise autofocus sessions.

A session wraps one ``FocusSearch`` (the same state machine that ``find_focus`` drives
in-process): ``open`` asks it for the first z, each ``step`` feeds it the score of the
image taken at the stage's actual z and asks for the next z (``None`` = finished).

Rules (the opposite of the reference implementation's defects):

* sessions are keyed by a random id and independent of each other;
* a session expires ``ttl_s`` seconds after its last use (checked on every access and by
  :meth:`SessionManager.expire`);
* any error during a step closes the session (no half-updated state survives); the
  client starts a new one;
* a finished or cancelled session is closed; its id is remembered for a while so a late
  step gets ``session_expired`` / ``unknown_session`` with a clear message.

The calibration lookup and the search construction are injected (:class:`CalibrationSource`,
``SearchFactory``) so the manager can be tested without files.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from autofocus.curve import BlurCurve
from autofocus.errors import ProtocolError
from autofocus.optics import Objective
from autofocus.score import FocusScore

__all__ = [
    "CalibrationSource",
    "FolderCalibrations",
    "InMemoryCalibrations",
    "SearchLike",
    "Session",
    "SessionManager",
    "default_search_factory",
]


class SearchLike(Protocol):
    """What a session needs from ``autofocus.search.FocusSearch``."""

    def next_z_um(self) -> float | None: ...

    def observe(self, z_um: float, score: float | FocusScore) -> None: ...

    @property
    def result(self) -> Any: ...


SearchFactory = Callable[
    [BlurCurve, float, "tuple[float, float] | None", dict[str, Any]], SearchLike
]
"""``(calibration curve, z_start_um, z_limits_um, options) -> a fresh search``."""


class CalibrationSource(Protocol):
    """Calibrations the server can use: summaries, full JSON documents and curves."""

    def list(self) -> list[dict[str, Any]]:
        """One JSON-able summary per calibration (each with an ``id``)."""
        ...

    def get(self, calibration_id: str) -> dict[str, Any]:
        """The full calibration as JSON-able data; ``UnknownNameError`` when absent."""
        ...

    def curve(self, calibration_id: str) -> BlurCurve:
        """The centred blur curve of a calibration; ``UnknownNameError`` when absent."""
        ...


class InMemoryCalibrations:
    """A :class:`CalibrationSource` over a dict of curves (tests, demos)."""

    def __init__(self, curves: dict[str, BlurCurve]) -> None:
        self._curves = dict(curves)

    def list(self) -> list[dict[str, Any]]:
        return [{"id": k, "fwhm_um": c.fwhm_um} for k, c in sorted(self._curves.items())]

    def get(self, calibration_id: str) -> dict[str, Any]:
        return {"id": calibration_id, "curve": self.curve(calibration_id).model_dump()}

    def curve(self, calibration_id: str) -> BlurCurve:
        from autofocus.errors import UnknownNameError

        try:
            return self._curves[calibration_id]
        except KeyError:
            raise UnknownNameError(
                f"unknown calibration {calibration_id!r}; known: {', '.join(self._curves) or '-'}"
            ) from None


_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


class FolderCalibrations:
    """A :class:`CalibrationSource` over a calibration store folder (``calibration.store``).

    A calibration's id is its file name without ``.json`` (``<microscope>__<objective>``);
    ids are checked against ``[A-Za-z0-9._-]`` so a request can never name a path outside
    the folder.  With ``scorer`` given, a calibration made with a different blur model is
    refused (its blur scores would not be comparable).
    """

    def __init__(self, root: str | Path, scorer: Any = None) -> None:
        self.root = Path(root)
        self.scorer = scorer

    def _load(self, calibration_id: str) -> Any:
        from autofocus.errors import UnknownNameError
        from calibration.store import load_calibration_file

        path = self.root / f"{calibration_id}.json"
        if not _ID.match(calibration_id) or not path.is_file():
            raise UnknownNameError(f"no calibration {calibration_id!r} in {self.root}")
        return load_calibration_file(path)

    def list(self) -> list[dict[str, Any]]:
        from autofocus.errors import CalibrationError
        from calibration.store import load_calibration_file

        out: list[dict[str, Any]] = []
        for p in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            try:
                cal = load_calibration_file(p)
            except CalibrationError as exc:
                out.append({"id": p.stem, "error": str(exc)[:300]})
                continue
            out.append(
                {
                    "id": p.stem,
                    "microscope": cal.microscope,
                    "objective": cal.objective.name,
                    "fwhm_um": cal.curve.fwhm_um,
                    "scorer_model_id": cal.scorer.model_id,
                    "created_utc": cal.created_utc.isoformat(),
                }
            )
        return out

    def get(self, calibration_id: str) -> dict[str, Any]:
        return {"id": calibration_id, **self._load(calibration_id).model_dump(mode="json")}

    def curve(self, calibration_id: str) -> BlurCurve:
        cal = self._load(calibration_id)
        if self.scorer is not None:
            cal.check_compatible(cal.objective, self.scorer)
        return cal.curve


def _calibration_objective(doc: dict[str, Any]) -> Objective | None:
    """The objective a calibration document records (None when it records none)."""
    raw = doc.get("objective")
    if not isinstance(raw, dict):
        return None
    from pydantic import ValidationError

    try:
        return Objective.model_validate(raw)
    except ValidationError:
        return None


def default_search_factory(
    curve: BlurCurve,
    z_start_um: float,
    z_limits_um: tuple[float, float] | None,
    options: dict[str, Any],
) -> SearchLike:
    """A ``FocusSearch`` configured from the request's ``options`` (``SearchConfig`` fields)."""
    from autofocus.search import FocusSearch, SearchConfig

    cfg_fields = dict(options)
    if z_limits_um is not None:
        cfg_fields["z_limits_um"] = tuple(z_limits_um)
    try:
        config = SearchConfig(**cfg_fields)
    except Exception as exc:  # pydantic ValidationError or TypeError for unknown fields
        raise ProtocolError(f"invalid search options: {exc}", "invalid_request") from None
    return FocusSearch(z_start_um, curve, config)


@dataclass
class Session:
    """One autofocus in progress."""

    id: str
    calibration_id: str
    search: SearchLike
    objective: Objective | None
    last_used_s: float
    next_z_um: float | None
    images_used: int = 0
    busy: bool = False
    with_patches: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


class SessionManager:
    """Thread-safe table of sessions with expiry (``clock`` is injectable for tests)."""

    def __init__(
        self,
        calibrations: CalibrationSource | None,
        *,
        ttl_s: float = 300.0,
        max_sessions: int = 256,
        search_factory: SearchFactory = default_search_factory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calibrations = calibrations
        self.ttl_s = float(ttl_s)
        self.max_sessions = int(max_sessions)
        self._factory = search_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._closed: OrderedDict[str, str] = OrderedDict()  # id -> why

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    # ---- lifecycle ----
    def open(
        self,
        calibration_id: str,
        z_start_um: float,
        z_limits_um: tuple[float, float] | None,
        objective: Objective | None,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        """Create a session and return its first reply (``move`` to the first z)."""
        if self.calibrations is None:
            raise ProtocolError(
                "this server has no calibrations (start it with --calibrations DIR)",
                "unknown_name",
            )
        curve = self.calibrations.curve(calibration_id)
        if objective is None:  # score with the optics the calibration was made with
            objective = _calibration_objective(self.calibrations.get(calibration_id))
        search = self._factory(curve, float(z_start_um), z_limits_um, dict(options))
        self.expire()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise ProtocolError(
                    f"{len(self._sessions)} sessions are open (the maximum); cancel finished "
                    "ones or retry later",
                    "busy",
                )
            sid = secrets.token_hex(12)
            s = Session(sid, calibration_id, search, objective, self._clock(), None)
            # per-ROI matching needs the patch grid of every image
            s.with_patches = bool(getattr(getattr(search, "config", None), "per_roi", False))
            self._sessions[sid] = s
        try:
            s.next_z_um = search.next_z_um()
        except Exception:
            self._close(sid, "failed when starting")
            raise
        if s.next_z_um is None:  # a search that needs no image (degenerate limits)
            return self._finish(s)
        return self._move_reply(s)

    def begin_step(self, session_id: str) -> Session:
        """Claim a session for one step (the image is scored between begin and finish)."""
        with self._lock:
            s = self._lookup(session_id)
            if s.busy:
                raise ProtocolError(
                    f"session {session_id} is already processing a step; wait for its reply",
                    "session_busy",
                )
            s.busy = True
            s.last_used_s = self._clock()
            return s

    def finish_step(self, s: Session, z_um: float, score: FocusScore) -> dict[str, Any]:
        """Feed the score to the search; returns a ``move`` or ``done`` reply."""
        try:
            with self._lock:
                if s.id not in self._sessions:  # cancelled while the image was scored
                    raise ProtocolError(
                        f"session {s.id} was {self._closed.get(s.id, 'closed')}",
                        "unknown_session",
                    )
            s.search.observe(float(z_um), score)
            s.images_used += 1
            s.next_z_um = s.search.next_z_um()
        except Exception:
            self.abort(s, "closed after an error")
            raise
        with self._lock:
            s.busy = False
            s.last_used_s = self._clock()
        if s.next_z_um is None:
            return self._finish(s)
        return self._move_reply(s)

    def release(self, s: Session) -> None:
        """Give a claimed session back untouched (its step was never processed)."""
        with self._lock:
            s.busy = False

    def abort(self, s: Session, why: str) -> None:
        """Close a session after an error in its step (errors never leave state behind)."""
        self._close(s.id, why)

    def cancel(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._lookup(session_id)
        self._close(s.id, "cancelled")
        return {"session_id": s.id, "cancelled": True, "images_used": s.images_used}

    def expire(self) -> int:
        """Close every idle session older than ``ttl_s``; returns how many."""
        now = self._clock()
        with self._lock:
            old = [
                k
                for k, s in self._sessions.items()
                if not s.busy and now - s.last_used_s > self.ttl_s
            ]
        for k in old:
            self._close(k, "expired")
        return len(old)

    # ---- internals ----
    def _lookup(self, session_id: str) -> Session:
        """Find an open session (lock held); expired ones are closed here."""
        s = self._sessions.get(session_id)
        if s is not None and not s.busy and self._clock() - s.last_used_s > self.ttl_s:
            self._close_locked(session_id, "expired")
            s = None
        if s is None:
            why = self._closed.get(session_id)
            if why == "expired":
                raise ProtocolError(
                    f"session {session_id} expired after {self.ttl_s:g} s without a step; "
                    "start a new one",
                    "session_expired",
                )
            raise ProtocolError(
                f"session {session_id} is {why}" if why else f"no session {session_id!r}",
                "unknown_session",
            )
        return s

    def _close(self, session_id: str, why: str) -> None:
        with self._lock:
            self._close_locked(session_id, why)

    def _close_locked(self, session_id: str, why: str) -> None:
        if self._sessions.pop(session_id, None) is not None:
            self._closed[session_id] = why
            while len(self._closed) > 4096:
                self._closed.popitem(last=False)

    def _move_reply(self, s: Session) -> dict[str, Any]:
        return {
            "session_id": s.id,
            "action": "move",
            "z_um": s.next_z_um,
            "images_used": s.images_used,
            "expires_in_s": self.ttl_s,
        }

    def _finish(self, s: Session) -> dict[str, Any]:
        r = s.search.result
        self._close(s.id, "finished")
        return {
            "session_id": s.id,
            "action": "done",
            "z_um": _policy_z(r, getattr(getattr(s.search, "config", None), "on_failure", "warn")),
            "images_used": int(r.images_used),
            "status": str(r.status),
            "confidence": float(r.confidence),
            "reason": str(getattr(r, "reason", "") or ""),
            "trace": [[float(z), float(b)] for z, b in r.trace],
        }


def _policy_z(result: Any, on_failure: str) -> float:
    """Where the stage should go, with ``find_focus``'s failure policy: the estimate when
    converged; the start when undetermined, failed with a hardware error, or under
    ``keep_last``/``raise`` (a remote client raises on the non-converged status itself);
    else (``warn``) the best-effort estimate."""
    if result.status == "converged":
        return float(result.z_um)
    if on_failure in ("keep_last", "raise") or result.status == "undetermined":
        return float(result.z_start_um)
    return float(result.z_um)
