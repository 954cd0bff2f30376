"""Session bookkeeping: a session started without an objective scores with the optics
its calibration was made with (the models are told the optics, so b depends on them)."""

from __future__ import annotations

from typing import Any

from autofocus.curve import BlurCurve
from autofocus.optics import get_objective
from autofocus.service.sessions import SessionManager, _calibration_objective

CURVE = BlurCurve(baseline_px=62.0, amplitude_px=60.0, gamma_um=30.0, alpha=0.6)


class _Source:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def list(self) -> list[dict[str, Any]]:
        return [{"id": "c"}]

    def get(self, calibration_id: str) -> dict[str, Any]:
        return {"id": calibration_id, **self.doc}

    def curve(self, calibration_id: str) -> BlurCurve:
        return CURVE


def _opened_objective(doc: dict[str, Any], objective=None):
    mgr = SessionManager(_Source(doc))
    mgr.open("c", 0.0, (-100.0, 100.0), objective, {})
    (session,) = mgr._sessions.values()
    return session.objective


def test_a_session_without_an_objective_takes_its_calibrations() -> None:
    obj = get_objective("40X")
    assert _opened_objective({"objective": obj.model_dump(mode="json")}) == obj
    # an objective given by the client wins
    ten = get_objective("10X")
    assert _opened_objective({"objective": obj.model_dump(mode="json")}, ten) == ten
    # a calibration that records none (curves only), or an unreadable one: none
    assert _opened_objective({}) is None
    assert _calibration_objective({"objective": {"name": "x", "na": 9}}) is None
