"""pymmcore-plus: an :class:`~pymmcore_plus.mda.MDAEngine` that autofocuses with our search
and flags every frame.

::

    engine = AutofocusEngine(core, scorer, calibration, objective=objective)
    core.mda.set_engine(engine)
    seq = useq.MDASequence(
        stage_positions=[(0, 0, 10.0), (500, 0, 12.0)],
        time_plan={"interval": 60, "loops": 100},
        z_plan={"range": 4, "step": 1},              # relative: re-centred on the focus
        autofocus_plan=useq.AxesBasedAF(axes=("t", "p")),
    )
    core.mda.run(seq)
    print(engine.summary(), engine.flag_summary())

* ``useq.AxesBasedAF`` inserts events whose action is ``HardwareAutofocus`` (at the
  z of the position's home plane when the z plan is relative).  The runner moves
  XY, Z (plus the position's correction so far) and the channel; this engine then
  runs the search from there instead of ``core.fullFocus()`` (no autofocus device is
  needed) and adds the change ``z_found - z_before`` to the engine's per-position z
  correction, which every later event of that position gets.
* Every frame of an ``AcquireImage`` event is scored before it is handed on (so the
  ``Focus*`` keys of :mod:`hooks.metadata` reach ``frameReady`` listeners and the
  writers); ``every_n`` / ``channels`` thin the scoring.  Scoring runs on the
  engine thread: each scored frame costs the scorer's time (see the README for
  figures); use ``every_n`` or a remote scorer on a GPU when frames are large.
* Failures follow ``on_failure`` exactly as in the Pycro-Manager hooks
  (:mod:`hooks.runtime`); with ``"raise"`` the exception ends the MDA.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from pymmcore_plus.mda import MDAEngine
from useq import HardwareAutofocus, MDAEvent

from autofocus.errors import InvalidInputError
from autofocus.optics import Objective, get_objective
from autofocus.score import Scorer
from hooks.metadata import AUTOFOCUS_OFFSET_UM
from hooks.runtime import (
    AutofocusRecord,
    AutofocusSummary,
    FailurePolicy,
    FlagSummary,
    FocusController,
    FrameFlagger,
)

__all__ = ["AutofocusEngine"]

logger = logging.getLogger(__name__)


class AutofocusEngine(MDAEngine):
    """``MDAEngine`` running our autofocus for ``HardwareAutofocus`` events, plus flagging.

    Parameters
    ----------
    mmc
        The pymmcore-plus core (``CMMCorePlus`` or ``UniMMCore``).
    scorer
        Any :class:`~autofocus.score.Scorer`.
    calibration
        The objective's :class:`~autofocus.curve.BlurCurve` (or an object with ``.curve``);
        ``None`` disables autofocus (flagging only).
    objective
        Given to the scorer (for ``|dz|`` in um and the DOF rule): an Objective or a
        preset name such as ``"20X"``.
    search, on_failure, z_limits_um
        The search configuration, the failure policy and the soft limits (default: the
        focus device's ``Position`` limits).
    flag, every_n, channels, out_of_focus_dof
        Frame flagging: on/off, every n-th frame, only these channel configs, verdict
        from ``|dz| > out_of_focus_dof * DOF`` (see :class:`hooks.runtime.FrameFlagger`).
    engine_kwargs
        Passed to :class:`~pymmcore_plus.mda.MDAEngine`.
    """

    def __init__(
        self,
        mmc: Any,
        scorer: Scorer,
        calibration: Any = None,
        *,
        objective: Objective | str | None = None,
        search: Any = None,
        on_failure: FailurePolicy = "warn",
        z_limits_um: tuple[float, float] | None = None,
        flag: bool = True,
        every_n: int = 1,
        channels: Iterable[str] | None = None,
        out_of_focus_dof: float | None = None,
        **engine_kwargs: Any,
    ) -> None:
        super().__init__(mmc, **engine_kwargs)
        if isinstance(every_n, bool) or int(every_n) < 1:
            raise InvalidInputError("every_n must be an integer >= 1")
        from autofocus.microscope import CoreMicroscope, check_z_limits

        if z_limits_um is not None:  # the microscope itself is made at the first use
            z_limits_um = check_z_limits(z_limits_um)
        if objective is not None:  # a preset's name or an Objective
            objective = get_objective(objective)

        self.controller: FocusController | None = None
        if calibration is not None:
            self.controller = FocusController(
                scorer,
                calibration,
                microscope=lambda: CoreMicroscope(mmc, z_limits_um, objective=objective),
                objective=objective,
                search=search,
                on_failure=on_failure,
                name="autofocus",
            )
        self.flagger = (
            FrameFlagger(
                scorer,
                objective,
                out_of_focus_dof=out_of_focus_dof,
                max_lag_s=None,
                on_failure=on_failure,
                calibration=calibration,
            )
            if flag
            else None
        )
        self.every_n = int(every_n)
        self.channels = None if channels is None else frozenset(str(c) for c in channels)
        self._n_selected = 0

    # ---- MDAEngine -------------------------------------------------------------------
    def setup_sequence(self, sequence: Any) -> Any:
        self._n_selected = 0
        return super().setup_sequence(sequence)

    def setup_single_event(self, event: MDAEvent) -> None:
        """Move as MDAEngine does, but never outside the soft limits: an event whose z
        plus the position's autofocus correction falls outside them goes to the nearest
        limit instead (with a warning), as in the Pycro-Manager hook."""
        if self.controller is not None and event.z_pos is not None:
            p_idx = event.index.get("p", None)
            corr = float(self._z_correction.get(p_idx, 0.0))
            z = float(event.z_pos) + corr
            lo, hi = self.controller.microscope().z_limits_um
            if not lo <= z <= hi:
                clipped = min(max(z, lo), hi)
                logger.warning(
                    "corrected z %.3f um (event %s) clipped to the soft limits [%g, %g]",
                    z,
                    dict(event.index),
                    lo,
                    hi,
                )
                event = event.model_copy(update={"z_pos": clipped - corr})
        super().setup_single_event(event)

    def exec_event(self, event: MDAEvent) -> Iterable[Any]:
        if isinstance(getattr(event, "action", None), HardwareAutofocus):
            if self.controller is not None:
                self._autofocus(event)
                return ()
            return super().exec_event(event)
        return self._flagged(super().exec_event(event))

    # ---- autofocus ---------------------------------------------------------------------
    def _autofocus(self, event: MDAEvent) -> None:
        assert self.controller is not None
        p_idx = event.index.get("p", None)
        t_idx = event.index.get("t", None)
        try:
            m = self.controller.microscope()
            z_before = m.get_z_um()
        except Exception as exc:
            self.controller.report_failure("autofocus", f"p={p_idx} t={t_idx}", exc)
            return
        rec = self.controller.run(z_before, position=p_idx, time_index=t_idx)
        if rec.applied:
            # the same bookkeeping as MDAEngine's own hardware autofocus
            self._z_correction[p_idx] = self._z_correction.get(p_idx, 0.0) + (rec.z_um - z_before)

    def z_correction_um(self, position_index: int | None) -> float:
        """The accumulated z correction of a position (0 before its first autofocus)."""
        return float(self._z_correction.get(position_index, 0.0))

    # ---- flagging ----------------------------------------------------------------------
    def _selected(self, event: MDAEvent) -> bool:
        if self.channels is not None:
            ch = event.channel
            if ch is None or ch.config not in self.channels:
                return False
        i = self._n_selected
        self._n_selected += 1
        return i % self.every_n == 0

    def _flagged(self, payloads: Iterable[Any]) -> Iterator[Any]:
        for payload in payloads:
            failure: Exception | None = None
            if payload is not None and self.flagger is not None:
                try:
                    self._flag(payload)
                except Exception as exc:  # on_failure="raise"
                    failure = exc
            # the frame is handed on (to frameReady and the writers) even when scoring
            # failed under "raise"; the MDA ends with the error after it
            yield payload
            if failure is not None:
                raise failure

    def _flag(self, payload: Any) -> None:
        assert self.flagger is not None
        img, event, meta = payload
        self.flagger.seen()
        p_idx = event.index.get("p", None)
        if self.controller is not None and p_idx in self._z_correction:
            meta[AUTOFOCUS_OFFSET_UM] = round(float(self._z_correction[p_idx]), 4)
        if not self._selected(event):
            self.flagger.skip("not_selected")
            return
        try:
            score, verdict, ms = self.flagger.score(img)
        except Exception as exc:
            self.flagger.report_failure(f"frame {dict(event.index)}", exc)
            return
        meta.update(self.flagger.metadata(score, verdict, ms))
        if verdict == "out_of_focus":
            self.flagger.flag(dict(event.index))

    # ---- results -----------------------------------------------------------------------
    def records(self) -> tuple[AutofocusRecord, ...]:
        return () if self.controller is None else self.controller.records()

    def summary(self) -> AutofocusSummary:
        recs = self.records()
        return AutofocusSummary.from_records(
            recs,
            focus_z_um={},
            offsets_um={k: float(v) for k, v in self._z_correction.items()},
            errors=() if self.controller is None else self.controller.errors(),
            cancelled=False if self.controller is None else self.controller.cancelled,
        )

    def flag_summary(self) -> FlagSummary | None:
        return None if self.flagger is None else self.flagger.summary()

    def check(self) -> None:
        """Raise the first failure recorded during the MDA, if any."""
        if self.controller is not None:
            self.controller.check()
        if self.flagger is not None:
            self.flagger.check()
