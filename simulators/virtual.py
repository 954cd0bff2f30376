"""The shared state of the demo-config virtual microscope.

:class:`VirtualMicroscope` is a plain, thread-safe object holding everything the
Python devices of :mod:`simulators.devices` act on: the specimen, the objective
turret, the emission filter, the camera model, the Z and XY stages, the shutter,
the focal-plane drift and a clock.  :meth:`VirtualMicroscope.snap` renders one
camera frame.

Physics of one frame
--------------------
* True focal plane (stage coordinate at which the nominal specimen plane is sharp)::

      z_focus(t, x, y) = focus_z_um + tilt_x * x_um + tilt_y * y_um + drift.offset_um(t)

  with ``tilt = focus_tilt_um_per_um`` (a tilted slide) and ``t`` from the clock.
* Defocus (project-wide sign convention): ``dz_um = z_stage_um - z_focus``.
* Sample pixel size: ``camera_pixel_um * binning / magnification`` (the objective's
  :meth:`~autofocus.optics.Objective.with_binning`); the frame has
  ``sensor_shape // binning`` pixels.
* Expected signal: ``simulators.render.render_field`` at ``dz_um`` for the field
  centred on the XY stage position, times ``binning**2`` (a binned pixel collects
  the light of ``binning**2`` sensor pixels); zero when no light reaches the sample
  (shutter closed and auto-shutter off).
* Camera: ``simulators.camera.CameraModel.expose`` (shot noise, read noise, gain,
  offset, quantisation to ``bit_depth``).  A dark frame is offset + read noise.

Clock
-----
``clock="simulated"`` (default): time is a number owned by the microscope; each
:meth:`snap` advances it by ``seconds_per_frame`` (``None``: the exposure time), so
time is a frame count in disguise and runs are reproducible.  :meth:`advance_time`
and :meth:`set_time` move it explicitly.  ``clock="wall"``: seconds of
``time.monotonic()`` since construction, plus whatever :meth:`advance_time` added.

How devices find their microscope
---------------------------------
A ``#py pyDevice`` config line constructs a device with no arguments, and a
device's ``.core`` is a restricted proxy, so the model is handed over through this
module: a device constructed inside ``with bind_devices_to(vm):`` (in the same
thread) attaches to ``vm``; a device constructed outside any binding attaches to
the process-wide default microscope (:func:`default_microscope`, created lazily).
Every microscope is registered by its unique ``name`` (:func:`get_microscope`), and
each device shows that name in its read-only ``Microscope`` property, which is how
:func:`simulators.core.get_virtual_microscope` finds the model behind a core.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from autofocus.checks import finite_float
from autofocus.errors import (
    HardwareError,
    InvalidInputError,
    StageLimitError,
    UnknownNameError,
)
from autofocus.optics import Objective, get_objective

if TYPE_CHECKING:
    from simulators.camera import CameraModel

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_OBJECTIVES",
    "EMISSION_FILTERS_UM",
    "DriftLike",
    "VirtualMicroscope",
    "bind_devices_to",
    "default_microscope",
    "get_microscope",
    "microscope_for_new_device",
    "register_microscope",
    "unregister_microscope",
]

logger = logging.getLogger(__name__)

DEFAULT_OBJECTIVES: tuple[str, ...] = ("10X", "20X", "40X")
"""Objective turret of the demo config (pixel sizes 1.0 / 0.5 / 0.25 um)."""

EMISSION_FILTERS_UM: dict[str, float] = {
    "DAPI": 0.461,
    "FITC": 0.519,
    "Rhodamine": 0.580,
    "Cy5": 0.670,
}
"""Emission centre wavelengths (um) of the demo config's Channel presets."""

_CAMERA_DEFAULTS: dict[str, float] = {
    "exposure_ms": 10.0,
    "photon_flux": 100.0,
    "read_noise_e": 2.0,
    "gain_adu_per_e": 1.0,
    "offset_adu": 100.0,
    "bit_depth": 16,
}


class DriftLike(Protocol):
    """Anything with ``offset_um(t_s) -> float`` (see ``simulators.drift``)."""

    def offset_um(self, t_s: float) -> float: ...


def _finite(name: str, value: Any) -> float:
    return finite_float(value, name)


class VirtualMicroscope:
    """Shared, lock-protected state of the virtual microscope; renders frames.

    Parameters
    ----------
    specimen, seed, specimen_options
        Passed to ``simulators.specimens.make_specimen(specimen, seed, **options)``.
    objective
        Name of the objective in the turret at start.
    objectives
        Turret: names of presets (``autofocus.optics.OBJECTIVE_PRESETS``) or
        :class:`~autofocus.optics.Objective` objects, or a label -> Objective mapping.
    aberrations
        ``simulators.psf.Aberrations`` (``None``: none).
    sensor_shape
        Full sensor size ``(height, width)`` in unbinned pixels.
    binning
        1, 2 or 4.
    camera
        Overrides of the camera model's settings (``exposure_ms``, ``photon_flux``,
        ``read_noise_e``, ``gain_adu_per_e``, ``offset_adu``, ``bit_depth``,
        ``full_well_e``).
    z_limits_um, z_step_um, settle_ms
        Soft limits of the focus drive, its step size (reported only) and a settle
        time slept after each move (only when > 0).
    focus_z_um, focus_tilt_um_per_um, drift
        The true focal plane (see the module docstring).  ``drift`` is a drift model
        with ``offset_um(t_s)``, or a spec accepted by ``simulators.drift.make_drift``.
    clock, seconds_per_frame
        See the module docstring.
    noise_seed
        Seed of the camera-noise generator (``None``: ``seed``).
    name
        Registry name (``None``: a unique ``vm-<n>``).
    """

    _counter = itertools.count(1)

    def __init__(
        self,
        *,
        specimen: str = "calibration_slide",
        seed: int = 0,
        specimen_options: Mapping[str, Any] | None = None,
        objective: str = "10X",
        objectives: Any = DEFAULT_OBJECTIVES,
        aberrations: Any = None,
        sensor_shape: tuple[int, int] = (512, 512),
        binning: int = 1,
        camera: Mapping[str, float] | None = None,
        z_limits_um: tuple[float, float] = (-300.0, 300.0),
        z_step_um: float = 0.025,
        settle_ms: float = 0.0,
        focus_z_um: float = 0.0,
        focus_tilt_um_per_um: tuple[float, float] = (0.0, 0.0),
        drift: Any = None,
        clock: Literal["simulated", "wall"] = "simulated",
        seconds_per_frame: float | None = None,
        noise_seed: int | None = None,
        name: str | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.name = name if name is not None else f"vm-{next(self._counter)}"
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError("a microscope name must be a non-empty string")

        self._objectives = self._make_turret(objectives)
        if objective not in self._objectives:
            raise UnknownNameError(
                f"objective {objective!r} is not in the turret {list(self._objectives)}"
            )
        self._objective_name = objective
        self._emission_um: float | None = None
        self._aberrations = aberrations

        self._specimen_name = ""
        self._seed = 0
        self._specimen_options: dict[str, Any] = {}
        self._specimen: Any = None
        self.set_specimen(specimen, seed=seed, **dict(specimen_options or {}))

        self._camera_kw: dict[str, float] = dict(_CAMERA_DEFAULTS)
        self._camera_model: CameraModel | None = None
        self.configure_camera(**dict(camera or {}))
        self._sensor_shape = (512, 512)
        self.set_sensor_shape(sensor_shape)
        self._binning = 1
        self.set_binning(binning)

        lo, hi = (_finite("z limit", v) for v in z_limits_um)
        if not lo < hi:
            raise InvalidInputError(
                f"z_limits_um must be (low, high) with low < high: {z_limits_um}"
            )
        self.z_limits_um = (lo, hi)
        self.z_step_um = _finite("z_step_um", z_step_um)
        self.settle_ms = max(0.0, _finite("settle_ms", settle_ms))
        self._z_um = min(max(0.0, lo), hi)
        self._x_um = 0.0
        self._y_um = 0.0
        self._shutter_open = False
        self._auto_shutter = True

        self.focus_z_um = _finite("focus_z_um", focus_z_um)
        tx, ty = (_finite("focus tilt", v) for v in focus_tilt_um_per_um)
        self.focus_tilt_um_per_um = (tx, ty)
        self._drift: DriftLike | None = None
        self.set_drift(drift)

        if clock not in ("simulated", "wall"):
            raise InvalidInputError(f"clock must be 'simulated' or 'wall', got {clock!r}")
        self.clock = clock
        if seconds_per_frame is not None and _finite("seconds_per_frame", seconds_per_frame) < 0:
            raise InvalidInputError("seconds_per_frame must be >= 0")
        self.seconds_per_frame = seconds_per_frame
        self._t0_monotonic = time.monotonic()
        self._time_offset_s = 0.0
        self.frame_count = 0
        self._rng = np.random.default_rng(seed if noise_seed is None else noise_seed)
        self.last_frame_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _make_turret(objectives: Any) -> dict[str, Objective]:
        if isinstance(objectives, Mapping):
            items = [(str(k), get_objective(v)) for k, v in objectives.items()]
        else:
            items = []
            for o in objectives:
                obj = get_objective(o)
                items.append((obj.name, obj))
        if not items:
            raise InvalidInputError("the objective turret needs at least one objective")
        return dict(items)

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock guarding this microscope (hold it for atomic sequences)."""
        return self._lock

    # ----------------------------------------------------------------- specimen
    def set_specimen(self, name: str, *, seed: int | None = None, **options: Any) -> None:
        """Swap the specimen (``make_specimen(name, seed, **options)``)."""
        from simulators.specimens import make_specimen

        with self._lock:
            seed = self._seed if seed is None else int(seed)
            self._specimen = make_specimen(name, seed=seed, **options)
            self._specimen_name, self._seed, self._specimen_options = name, seed, options

    @property
    def specimen_name(self) -> str:
        return self._specimen_name

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def specimen(self) -> Any:
        return self._specimen

    # ---------------------------------------------------------------- objective
    @property
    def objectives(self) -> dict[str, Objective]:
        """The turret, label -> Objective (a copy)."""
        return dict(self._objectives)

    @property
    def objective_name(self) -> str:
        return self._objective_name

    def set_objective(self, label: str) -> None:
        with self._lock:
            if label not in self._objectives:
                raise UnknownNameError(
                    f"objective {label!r} is not in the turret {list(self._objectives)}"
                )
            self._objective_name = label

    @property
    def objective(self) -> Objective:
        """The objective in use, with the current binning and emission wavelength."""
        with self._lock:
            obj = self._objectives[self._objective_name].with_binning(self._binning)
            if self._emission_um is not None:
                obj = obj.model_copy(update={"wavelength_um": self._emission_um})
            return obj

    @property
    def pixel_size_um(self) -> float:
        return self.objective.pixel_size_um

    @property
    def emission_um(self) -> float | None:
        """Emission wavelength set by the filter (``None``: the objective's own)."""
        return self._emission_um

    def set_emission_um(self, wavelength_um: float | None) -> None:
        with self._lock:
            if wavelength_um is None:
                self._emission_um = None
                return
            w = _finite("emission wavelength", wavelength_um)
            if not 0.2 < w < 2.0:
                raise InvalidInputError(f"emission wavelength {w} um is outside (0.2, 2.0)")
            self._emission_um = w

    @property
    def aberrations(self) -> Any:
        return self._aberrations

    def set_aberrations(self, aberrations: Any) -> None:
        with self._lock:
            self._aberrations = aberrations

    # ------------------------------------------------------------------- camera
    def configure_camera(self, **settings: float) -> None:
        """Change camera-model settings (names as ``simulators.camera.CameraModel``)."""
        from simulators.camera import CameraModel

        with self._lock:
            kw = {**self._camera_kw, **settings}
            try:
                model = CameraModel.model_validate(kw)
            except (ValueError, TypeError) as exc:  # pydantic ValidationError is a ValueError
                raise InvalidInputError(f"invalid camera settings {settings}: {exc}") from exc
            self._camera_kw, self._camera_model = kw, model

    @property
    def camera_model(self) -> CameraModel:
        assert self._camera_model is not None  # set in __init__
        return self._camera_model

    def camera_setting(self, name: str) -> float:
        """Current value of one camera-model setting (e.g. ``"exposure_ms"``)."""
        return float(getattr(self.camera_model, name))

    @property
    def exposure_ms(self) -> float:
        return self.camera_setting("exposure_ms")

    @property
    def sensor_shape(self) -> tuple[int, int]:
        """Full sensor size in unbinned pixels, ``(height, width)``."""
        return self._sensor_shape

    def set_sensor_shape(self, shape: tuple[int, int]) -> None:
        try:
            h, w = (int(v) for v in shape)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"sensor_shape must be (height, width), got {shape!r}") from exc
        if not (8 <= h <= 8192 and 8 <= w <= 8192):
            raise InvalidInputError(f"sensor_shape {shape} must lie within 8..8192 pixels")
        with self._lock:
            self._sensor_shape = (h, w)

    @property
    def binning(self) -> int:
        return self._binning

    def set_binning(self, binning: int) -> None:
        b = int(binning)
        if b not in (1, 2, 4):
            raise InvalidInputError(f"binning must be 1, 2 or 4, got {binning!r}")
        with self._lock:
            self._binning = b

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Shape of a snapped frame: ``sensor_shape // binning``."""
        h, w = self._sensor_shape
        return (h // self._binning, w // self._binning)

    # ------------------------------------------------------------------- stages
    @property
    def z_um(self) -> float:
        return self._z_um

    def set_z_um(self, z_um: float) -> None:
        """Move the focus drive; :class:`StageLimitError` outside the soft limits."""
        z = _finite("z position", z_um)
        lo, hi = self.z_limits_um
        if not lo <= z <= hi:
            raise StageLimitError(f"z = {z:g} um is outside the soft limits [{lo:g}, {hi:g}] um")
        with self._lock:
            self._z_um = z
        if self.settle_ms > 0:
            time.sleep(self.settle_ms / 1000.0)

    @property
    def xy_um(self) -> tuple[float, float]:
        return (self._x_um, self._y_um)

    def set_xy_um(self, x_um: float, y_um: float) -> None:
        x, y = _finite("x position", x_um), _finite("y position", y_um)
        with self._lock:
            self._x_um, self._y_um = x, y

    # --------------------------------------------------------------- illumination
    @property
    def shutter_open(self) -> bool:
        return self._shutter_open

    def set_shutter_open(self, is_open: bool) -> None:
        with self._lock:
            self._shutter_open = bool(is_open)

    @property
    def auto_shutter(self) -> bool:
        """Mirror of the core's auto-shutter flag (the core opens the shutter per frame)."""
        return self._auto_shutter

    def set_auto_shutter(self, state: bool) -> None:
        with self._lock:
            self._auto_shutter = bool(state)

    @property
    def illuminated(self) -> bool:
        """Light reaches the sample during an exposure."""
        return self._shutter_open or self._auto_shutter

    # --------------------------------------------------------------- time & focus
    def time_s(self) -> float:
        """Current time of the clock, seconds."""
        with self._lock:
            if self.clock == "wall":
                return time.monotonic() - self._t0_monotonic + self._time_offset_s
            return self._time_offset_s

    def advance_time(self, dt_s: float) -> None:
        dt = _finite("dt_s", dt_s)
        if dt < 0:
            raise InvalidInputError("time only runs forward: dt_s must be >= 0")
        with self._lock:
            self._time_offset_s += dt

    def set_time(self, t_s: float) -> None:
        """Set the clock to ``t_s`` (simulated) / shift the wall clock to read ``t_s``."""
        t = _finite("t_s", t_s)
        with self._lock:
            if self.clock == "wall":
                self._time_offset_s = t - (time.monotonic() - self._t0_monotonic)
            else:
                self._time_offset_s = t

    @property
    def drift(self) -> DriftLike | None:
        return self._drift

    def set_drift(self, drift: Any) -> None:
        """Drift model (``offset_um(t_s)``), a ``make_drift`` spec, or ``None``."""
        if drift is not None and not callable(getattr(drift, "offset_um", None)):
            from simulators.drift import make_drift

            drift = make_drift(drift)
        with self._lock:
            self._drift = drift

    def true_focus_um(
        self, *, t_s: float | None = None, x_um: float | None = None, y_um: float | None = None
    ) -> float:
        """Stage z at which the nominal specimen plane is in focus (ground truth)."""
        with self._lock:
            t = self.time_s() if t_s is None else float(t_s)
            x = self._x_um if x_um is None else float(x_um)
            y = self._y_um if y_um is None else float(y_um)
            tx, ty = self.focus_tilt_um_per_um
            z = self.focus_z_um + tx * x + ty * y
            if self._drift is not None:
                z += float(self._drift.offset_um(t))
            return z

    def dz_um(self) -> float:
        """Current defocus ``z_stage - true focus`` (ground truth)."""
        with self._lock:
            return self._z_um - self.true_focus_um()

    # ------------------------------------------------------------------- frames
    def expected_signal(self) -> np.ndarray:
        """Noise-free expected signal of the current field (float32, frame shape)."""
        from simulators.render import render_field

        with self._lock:
            shape = self.frame_shape
            if not self.illuminated:
                return np.zeros(shape, np.float32)
            obj = self.objective
            kwargs = {} if self._aberrations is None else {"aberrations": self._aberrations}
            signal = render_field(
                self._specimen, obj, self.dz_um(), self._x_um, self._y_um, shape, **kwargs
            )
            signal = np.asarray(signal, dtype=np.float32)
            if signal.shape != shape:
                raise HardwareError(f"renderer returned {signal.shape}, expected {shape}")
            if self._binning > 1:
                signal = signal * np.float32(self._binning**2)
            return signal

    def snap(self) -> np.ndarray:
        """Expose one frame (uint16, ``frame_shape``) and advance the simulated clock."""
        with self._lock:
            info = {
                "t_s": self.time_s(),
                "z_um": self._z_um,
                "true_focus_um": self.true_focus_um(),
                "dz_um": self.dz_um(),
                "x_um": self._x_um,
                "y_um": self._y_um,
                "objective": self._objective_name,
                "binning": self._binning,
                "illuminated": self.illuminated,
                "frame": self.frame_count,
            }
            frame = self.camera_model.expose(self.expected_signal(), self._rng)
            self.frame_count += 1
            if self.clock == "simulated":
                dt = self.seconds_per_frame
                self._time_offset_s += self.exposure_ms / 1000.0 if dt is None else dt
            self.last_frame_info = info
            return np.asarray(frame, dtype=np.uint16)

    def __repr__(self) -> str:
        return (
            f"VirtualMicroscope(name={self.name!r}, specimen={self._specimen_name!r}, "
            f"objective={self._objective_name!r}, z_um={self._z_um:g}, "
            f"focus_um={self.true_focus_um():g})"
        )


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, VirtualMicroscope] = {}
_REGISTRY_LOCK = threading.Lock()
_BINDING = threading.local()
DEFAULT_NAME = "default"


def register_microscope(vm: VirtualMicroscope) -> None:
    """Make ``vm`` findable by ``vm.name`` (idempotent for the same object)."""
    with _REGISTRY_LOCK:
        other = _REGISTRY.get(vm.name)
        if other is not None and other is not vm:
            raise InvalidInputError(f"a different microscope is registered as {vm.name!r}")
        _REGISTRY[vm.name] = vm


def unregister_microscope(name: str) -> None:
    """Forget a microscope (no error if unknown)."""
    with _REGISTRY_LOCK:
        _REGISTRY.pop(name, None)


def get_microscope(name: str) -> VirtualMicroscope:
    with _REGISTRY_LOCK:
        try:
            return _REGISTRY[name]
        except KeyError:
            raise UnknownNameError(
                f"no virtual microscope named {name!r}; known: {sorted(_REGISTRY)}"
            ) from None


def default_microscope() -> VirtualMicroscope:
    """The process-wide default microscope (created on first use with defaults)."""
    with _REGISTRY_LOCK:
        vm = _REGISTRY.get(DEFAULT_NAME)
    if vm is None:
        vm = VirtualMicroscope(name=DEFAULT_NAME)
        with _REGISTRY_LOCK:
            vm = _REGISTRY.setdefault(DEFAULT_NAME, vm)
    return vm


@contextmanager
def bind_devices_to(vm: VirtualMicroscope) -> Iterator[VirtualMicroscope]:
    """Devices constructed in this thread inside the block attach to ``vm``."""
    register_microscope(vm)
    stack: list[VirtualMicroscope] = getattr(_BINDING, "stack", [])
    _BINDING.stack = stack
    stack.append(vm)
    try:
        yield vm
    finally:
        stack.pop()


def microscope_for_new_device() -> VirtualMicroscope:
    """The microscope a device constructed now attaches to (see module docstring)."""
    stack = getattr(_BINDING, "stack", None)
    if stack:
        return stack[-1]
    return default_microscope()
