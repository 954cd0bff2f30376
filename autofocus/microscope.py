"""Hardware access for calibration and autofocus: the :class:`Microscope` protocol and the
:class:`CoreMicroscope` adapter for Micro-Manager cores.

The adapter is duck-typed and imports neither ``pymmcore_plus`` nor ``pycromanager``:

* pymmcore-plus ``CMMCorePlus`` / ``UniMMCore`` (camelCase: ``setPosition``,
  ``getPosition``, ``waitForDevice``, ``snapImage``, ``getImage``);
* Pycro-Manager ``Core`` (snake_case: ``set_position``, ``get_position``, ...), Java or
  Python backend.  The Java backend hands images over as flat arrays of *signed* Java
  types; they are reinterpreted as unsigned (16-bit values above 32767 stay positive)
  and reshaped as ``(height, width)``.

Safety: every move is checked against the soft limits *before* the stage is told to
move (:class:`~autofocus.errors.StageLimitError`); after the move the adapter waits for
the stage, sleeps ``settle_ms`` and reads the position back, raising
:class:`~autofocus.errors.HardwareError` when it differs by more than
``position_tolerance_um``.  :func:`autofocus_on` runs a search on a microscope and
always leaves the stage inside the soft limits.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from autofocus.errors import HardwareError, InvalidInputError, StageLimitError
from autofocus.optics import Objective
from autofocus.score import measure_blur

__all__ = ["CoreMicroscope", "Microscope", "autofocus_on", "check_z_limits", "make_measure"]

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_UM = 200.0
"""Half-width of the soft-limit window used when neither limits nor device limits exist."""


@runtime_checkable
class Microscope(Protocol):
    """What calibration and autofocus need from a microscope."""

    def get_z_um(self) -> float:
        """Current focus-drive position, um."""
        ...

    def set_z_um(self, z_um: float) -> None:
        """Move the focus drive and wait until it has arrived (and settled).

        Raises StageLimitError outside the soft limits (without moving) and
        HardwareError when the stage refuses or ends elsewhere.
        """
        ...

    def snap(self) -> np.ndarray:
        """Acquire one 2-D frame at the current position."""
        ...

    @property
    def z_limits_um(self) -> tuple[float, float]:
        """Soft limits ``(low, high)`` of the focus drive, um."""
        ...


class CoreMicroscope:
    """:class:`Microscope` over a pymmcore-plus or Pycro-Manager core (see module doc).

    ``z_limits_um``: soft limits; default the focus device's ``Position`` property
    limits when it has them, else ``DEFAULT_WINDOW_UM`` around the current position
    (logged as a warning).  ``focus_device``: default the core's current focus device.
    """

    def __init__(
        self,
        core: Any,
        z_limits_um: tuple[float, float] | None = None,
        settle_ms: float = 0.0,
        *,
        objective: Objective | None = None,
        focus_device: str | None = None,
        position_tolerance_um: float = 0.1,
    ) -> None:
        self._core = core
        self._camel = hasattr(core, "getPosition")
        if not self._camel and not hasattr(core, "get_position"):
            raise InvalidInputError(
                f"{type(core).__name__} is neither a pymmcore-plus nor a Pycro-Manager core"
            )
        if not (math.isfinite(settle_ms) and settle_ms >= 0):
            raise InvalidInputError(f"settle_ms must be >= 0, got {settle_ms!r}")
        if not (math.isfinite(position_tolerance_um) and position_tolerance_um > 0):
            raise InvalidInputError("position_tolerance_um must be > 0")
        self.settle_ms = float(settle_ms)
        self.position_tolerance_um = float(position_tolerance_um)
        self.objective = objective
        self.focus_device = focus_device or str(self._call("getFocusDevice"))
        if not self.focus_device:
            raise HardwareError("the core has no focus device")
        self._limits = self._resolve_limits(z_limits_um)

    # ---- name translation -----------------------------------------------------
    def _call(self, camel: str, *args: Any) -> Any:
        name = camel if self._camel else _snake(camel)
        try:
            fn = getattr(self._core, name)
        except AttributeError as exc:
            raise HardwareError(f"the core has no method {name}") from exc
        return fn(*args)

    def _resolve_limits(self, limits: tuple[float, float] | None) -> tuple[float, float]:
        if limits is not None:
            return check_z_limits(limits)
        dev = self.focus_device
        try:
            if self._call("hasPropertyLimits", dev, "Position"):
                lo = float(self._call("getPropertyLowerLimit", dev, "Position"))
                hi = float(self._call("getPropertyUpperLimit", dev, "Position"))
                if lo < hi:
                    return lo, hi
        except Exception as exc:  # not every core/device answers this
            logger.debug("no Position limits on %s: %s", dev, exc)
        z = self.get_z_um()
        logger.warning(
            "no z limits given and %s reports none: using +/- %g um around %g um",
            dev,
            DEFAULT_WINDOW_UM,
            z,
        )
        return z - DEFAULT_WINDOW_UM, z + DEFAULT_WINDOW_UM

    # ---- protocol ----------------------------------------------------------------
    @property
    def z_limits_um(self) -> tuple[float, float]:
        return self._limits

    def get_z_um(self) -> float:
        try:
            z = float(self._call("getPosition", self.focus_device))
        except HardwareError:
            raise
        except Exception as exc:
            raise HardwareError(f"could not read the {self.focus_device} position: {exc}") from exc
        if not math.isfinite(z):
            raise HardwareError(f"{self.focus_device} reported a non-finite position {z!r}")
        return z

    def set_z_um(self, z_um: float) -> None:
        z = float(z_um)
        lo, hi = self._limits
        if not (math.isfinite(z) and lo <= z <= hi):
            raise StageLimitError(f"z = {z_um!r} um is outside the soft limits [{lo:g}, {hi:g}] um")
        try:
            self._call("setPosition", self.focus_device, z)
            self._call("waitForDevice", self.focus_device)
        except StageLimitError:
            raise
        except Exception as exc:
            raise HardwareError(f"{self.focus_device} refused the move to {z:g} um: {exc}") from exc
        if self.settle_ms > 0:
            time.sleep(self.settle_ms / 1000.0)
        got = self.get_z_um()
        if abs(got - z) > self.position_tolerance_um:
            raise HardwareError(
                f"{self.focus_device} reports {got:g} um after a move to {z:g} um "
                f"(tolerance {self.position_tolerance_um:g} um)"
            )

    def snap(self) -> np.ndarray:
        try:
            self._call("snapImage")
            img = self._call("getImage")
        except Exception as exc:
            raise HardwareError(f"snap failed: {exc}") from exc
        arr = np.asarray(img)
        if arr.ndim == 1:  # Java backend: flat buffer
            h, w = int(self._call("getImageHeight")), int(self._call("getImageWidth"))
            if arr.size != h * w:
                raise HardwareError(f"image buffer of {arr.size} values for {h}x{w} px")
            arr = arr.reshape(h, w)
        if arr.ndim != 2:
            raise HardwareError(f"expected a 2-D image, got shape {arr.shape}")
        if arr.dtype == np.int16:
            arr = arr.view(np.uint16)
        elif arr.dtype == np.int8:
            arr = arr.view(np.uint8)
        return arr


def check_z_limits(limits: Any) -> tuple[float, float]:
    """``(low, high)`` soft limits in um, finite with low < high, or InvalidInputError."""
    try:
        lo, hi = (float(v) for v in limits)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"z_limits_um must be (low, high) in um, got {limits!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidInputError(f"z_limits_um must be finite (low, high), got {limits}")
    return lo, hi


def _snake(camel: str) -> str:
    out = []
    for ch in camel:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


# ----------------------------------------------------------------- search on hardware
def make_measure(
    microscope: Microscope,
    scorer: Any,
    objective: Objective | None = None,
    *,
    with_patches: bool = True,
) -> Callable[[float], Any]:
    """``measure(z_um) -> FocusScore``: move, snap, score (for :func:`find_focus`)."""

    def measure(z_um: float) -> Any:
        microscope.set_z_um(z_um)
        frame = microscope.snap()
        return measure_blur(scorer, frame, objective, with_patches=with_patches)

    return measure


def autofocus_on(
    microscope: Microscope,
    scorer: Any,
    calibration: Any,
    config: Any = None,
    *,
    objective: Objective | None = None,
) -> Any:
    """Find focus on a microscope and move there; returns the ``FocusResult``.

    The search's soft limits are the tighter of ``config.z_limits_um`` and the
    microscope's.  Whatever happens (failure policy, hardware error), the stage is
    sent to ``result.z_um`` or back to the start, both inside the limits; an error
    while doing so propagates as :class:`~autofocus.errors.HardwareError`.
    """
    from autofocus.search import SearchConfig, find_focus

    cfg = config or SearchConfig()
    m_lo, m_hi = microscope.z_limits_um
    c_lo, c_hi = cfg.z_limits_um
    cfg = cfg.model_copy(update={"z_limits_um": (max(m_lo, c_lo), min(m_hi, c_hi))})
    cfg = SearchConfig.model_validate(cfg.model_dump())
    z0 = microscope.get_z_um()
    # the optics the calibration was scored with, when neither names an objective
    obj = (
        objective
        or getattr(microscope, "objective", None)
        or getattr(calibration, "objective", None)
    )
    measure = make_measure(microscope, scorer, obj)
    try:
        res = find_focus(measure, z0, calibration, cfg)
    except BaseException:
        _return_to(microscope, z0)
        raise
    microscope.set_z_um(res.z_um)
    return res


def _return_to(microscope: Microscope, z_um: float) -> None:
    try:
        microscope.set_z_um(z_um)
    except Exception as exc:  # keep the original error; log this one
        logger.error("could not return the stage to %.3f um: %s", z_um, exc)
