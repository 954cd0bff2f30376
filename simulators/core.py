"""Start, serve and tear down the demo-config virtual microscope.

One call gives a loaded pymmcore-plus core whose devices are the Python devices of
:mod:`simulators.devices`, all acting on one :class:`~simulators.virtual.VirtualMicroscope`::

    core = create_demo_core(specimen="calibration_slide", objective="20X")
    core.snapImage(); img = core.getImage()          # pymmcore-plus use (snap, MDA)
    vm = get_virtual_microscope(core)                # ground truth: vm.true_focus_um()
    unload(core)                                     # explicit teardown

and, for Pycro-Manager's Python backend::

    with virtual_microscope(sensor_shape=(128, 128)) as core:   # loads, serves, tears down
        with Acquisition(directory=None, post_hardware_hook_fn=hook) as acq:
            acq.acquire(multi_d_acquisition_events(z_start=-5, z_end=5, z_step=1))

What serving a ``UniMMCore`` to Pycro-Manager needs (and :func:`pycromanager_backend`
does): the acquisition engine calls snake_case core methods, so the core is wrapped in
a :class:`PycroManagerCoreView` whose aliases resolve through the core's own class
(``UniMMCore``'s MRO; resolving through ``pymmcore.CMMCore`` would bypass the Python
devices), plus mmpycorex's ``get_tagged_image`` / ``pop_next_tagged_image`` /
``TaggedImage``; the view is registered as mmpycorex's headless core (so
``pycromanager.Core()`` and ``Acquisition(...)`` pick the Python backend) and an
acquisition ``Engine`` is created for it.  Teardown shuts that Engine down and deletes
its process-wide singleton (a second ``Engine(...)`` is silently ignored and a dead
one would be reused), unregisters the view, and - in :func:`virtual_microscope` -
unloads the devices explicitly (unloading a pymmcore-plus core during interpreter
shutdown aborts with "FATAL: exception not rethrown").
"""

from __future__ import annotations

import logging
import re
import threading
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pymmcore_plus.experimental.unicore import UniMMCore

from autofocus.errors import HardwareError, InvalidInputError, UnknownNameError
from simulators.virtual import (
    DEFAULT_NAME,
    DEFAULT_OBJECTIVES,
    VirtualMicroscope,
    bind_devices_to,
    get_microscope,
    unregister_microscope,
)

__all__ = [
    "DemoCore",
    "PycroManagerCoreView",
    "create_demo_core",
    "demo_config_path",
    "get_virtual_microscope",
    "pycromanager_backend",
    "unload",
    "virtual_microscope",
]

logger = logging.getLogger(__name__)

_MICROSCOPE_PROPERTY = "Microscope"
_BACKEND_LOCK = threading.Lock()


def demo_config_path() -> Path:
    """Path of the shipped ``demo.cfg`` (package data of :mod:`simulators`)."""
    path = Path(str(resources.files("simulators").joinpath("demo.cfg")))
    if not path.is_file():  # pragma: no cover - broken installation
        raise HardwareError(f"the demo configuration is missing from the package: {path}")
    return path


class DemoCore(UniMMCore):
    """``UniMMCore`` that also resolves pixel-size presets set on Python devices.

    pymmcore-plus 0.18 asks the C++ core which pixel-size preset is active, and the
    C++ core cannot read Python devices' properties, so ``getPixelSizeUm()`` would be
    0.  This subclass matches the presets against the devices' current properties
    itself when the C++ core finds none.
    """

    def getCurrentPixelSizeConfig(self, cached: bool = False) -> str:
        name = super().getCurrentPixelSizeConfig(cached)
        if name:
            return name
        for preset in self.getAvailablePixelSizeConfigs():
            settings = list(self.getPixelSizeConfigData(preset))
            if settings and all(
                self.hasProperty(dev, prop) and str(self.getProperty(dev, prop)) == str(value)
                for dev, prop, value in settings
            ):
                return str(preset)
        return ""

    def _pixel_scale(self) -> float:
        cam = self.getCameraDevice()
        binning = 1.0
        if cam and self.hasProperty(cam, "Binning"):
            binning = float(self.getProperty(cam, "Binning"))
        return binning / self.getMagnificationFactor()

    def getPixelSizeUm(self, cached: bool = False) -> float:
        """Pixel size of the active preset times binning / magnification factor."""
        if not (preset := self.getCurrentPixelSizeConfig(cached)):
            return 0.0
        return float(self.getPixelSizeUmByID(preset)) * self._pixel_scale()

    def getPixelSizeAffine(self, cached: bool = False) -> Any:
        if not (preset := self.getCurrentPixelSizeConfig(cached)):
            return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        scale = self._pixel_scale()
        return tuple(float(v) * scale for v in self.getPixelSizeAffineByID(preset))


# --------------------------------------------------------------------- creation
def create_demo_core(
    *,
    specimen: str = "calibration_slide",
    seed: int = 0,
    objective: str = "10X",
    sensor_shape: tuple[int, int] = (512, 512),
    drift: Any = None,
    focus_z_um: float = 0.0,
    binning: int = 1,
    specimen_options: Mapping[str, Any] | None = None,
    objectives: Any = DEFAULT_OBJECTIVES,
    aberrations: Any = None,
    camera: Mapping[str, float] | None = None,
    z_limits_um: tuple[float, float] = (-300.0, 300.0),
    settle_ms: float = 0.0,
    focus_tilt_um_per_um: tuple[float, float] = (0.0, 0.0),
    clock: Literal["simulated", "wall"] = "simulated",
    seconds_per_frame: float | None = None,
    noise_seed: int | None = None,
    config_path: str | Path | None = None,
    mm_path: str | None = None,
) -> DemoCore:
    """Build a :class:`VirtualMicroscope` and a core loaded from the demo config.

    Keyword arguments configure the microscope (see :class:`VirtualMicroscope`).
    ``config_path`` loads another ``#py`` config file with the same device classes;
    ``mm_path`` is a Micro-Manager folder for C++ adapters (``None``: none, and no
    search for an installation).  Tear down with :func:`unload`.
    """
    vm = VirtualMicroscope(
        specimen=specimen,
        seed=seed,
        specimen_options=specimen_options,
        objective=objective,
        objectives=objectives,
        aberrations=aberrations,
        sensor_shape=sensor_shape,
        binning=binning,
        camera=camera,
        z_limits_um=z_limits_um,
        settle_ms=settle_ms,
        focus_z_um=focus_z_um,
        focus_tilt_um_per_um=focus_tilt_um_per_um,
        drift=drift,
        clock=clock,
        seconds_per_frame=seconds_per_frame,
        noise_seed=noise_seed,
    )
    path = Path(config_path) if config_path is not None else demo_config_path()
    if not path.is_file():
        raise InvalidInputError(f"configuration file not found: {path}")
    # An existing folder without adapters stops pymmcore-plus from searching for (and
    # logging an error about) a Micro-Manager installation.
    core = DemoCore(mm_path=mm_path or str(path.parent))
    try:
        with bind_devices_to(vm):
            core.loadSystemConfiguration(path)
        _complete_objective_presets(core, vm)
        _follow_auto_shutter(core, vm)
    except Exception:
        with suppress(Exception):
            core.unloadAllDevices()
        unregister_microscope(vm.name)
        raise
    logger.debug("created demo core %s with %r", path.name, vm)
    return core


def _complete_objective_presets(core: UniMMCore, vm: VirtualMicroscope) -> None:
    """Objective-group presets and pixel sizes for turret labels the file lacks."""
    if "Objective" not in core.getLoadedDevices():
        return
    known = {
        tuple(tuple(str(v) for v in s) for s in core.getPixelSizeConfigData(p))
        for p in core.getAvailablePixelSizeConfigs()
    }
    for label, obj in vm.objectives.items():
        if ((("Objective", "Label", label)),) not in known:
            preset = f"Res-{label}"
            core.definePixelSizeConfig(preset, "Objective", "Label", label)
            core.setPixelSizeUm(preset, obj.with_binning(1).pixel_size_um)
        if core.isGroupDefined("Objective") and not core.isConfigDefined("Objective", label):
            core.defineConfig("Objective", label, "Objective", "Label", label)
    # presets of the file that name objectives this turret does not carry
    turret = set(vm.objectives)
    for preset in core.getAvailablePixelSizeConfigs():
        labels = {str(v) for d, p, v in core.getPixelSizeConfigData(preset) if d == "Objective"}
        if labels and not labels <= turret:
            core.deletePixelSizeConfig(preset)
    if core.isGroupDefined("Objective"):
        for preset in core.getAvailableConfigs("Objective"):
            labels = {
                str(v) for d, p, v in core.getConfigData("Objective", preset) if d == "Objective"
            }
            if labels and not labels <= turret:
                core.deleteConfig("Objective", preset)


def _follow_auto_shutter(core: UniMMCore, vm: VirtualMicroscope) -> None:
    vm.set_auto_shutter(core.getAutoShutter())
    core.events.autoShutterSet.connect(vm.set_auto_shutter)


# ------------------------------------------------------------------- accessors
def get_virtual_microscope(core: Any) -> VirtualMicroscope:
    """The :class:`VirtualMicroscope` behind a core (or a :class:`PycroManagerCoreView`).

    Found through the read-only ``Microscope`` property of the camera (or any device).
    """
    core = getattr(core, "wrapped_core", core)
    labels = [core.getCameraDevice(), *core.getLoadedDevices()]
    for label in labels:
        if label and label != "Core" and core.hasProperty(label, _MICROSCOPE_PROPERTY):
            return get_microscope(str(core.getProperty(label, _MICROSCOPE_PROPERTY)))
    raise UnknownNameError("no virtual-microscope device is loaded in this core")


def unload(core: Any) -> None:
    """Safe teardown: stop serving it to Pycro-Manager, unload all devices.

    Idempotent.  Call it before the interpreter exits (unloading a pymmcore-plus core
    during interpreter shutdown aborts the process).
    """
    core = getattr(core, "wrapped_core", core)
    _stop_serving(core)
    vm: VirtualMicroscope | None = None
    with suppress(UnknownNameError, RuntimeError):
        vm = get_virtual_microscope(core)
    if vm is not None:
        with suppress(Exception):
            core.events.autoShutterSet.disconnect(vm.set_auto_shutter)
    with suppress(Exception):
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()
    core.unloadAllDevices()
    _release_core_callback(core)
    if vm is not None and vm.name != DEFAULT_NAME:
        unregister_microscope(vm.name)


def _release_core_callback(core: UniMMCore) -> None:
    """Detach the C++ -> Python event relay now, while the interpreter is alive.

    Otherwise ``CMMCorePlus.__del__`` detaches it during interpreter shutdown, from a
    C++ thread that cannot take the GIL any more: the process aborts with
    "FATAL: exception not rethrown".  The core's C++ events stop after this.
    """
    import pymmcore

    with suppress(Exception):
        pymmcore.CMMCore.registerCallback(core, None)


# ------------------------------------------------------------ Pycro-Manager glue
def _camel_to_snake(name: str) -> str:
    """``getXYStageDevice`` -> ``get_xy_stage_device`` (Pycro-Manager's convention)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def _snake_aliases(cls: type) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name in dir(cls):
        if name.startswith("_") or not name[:1].islower() or name.lower() == name:
            continue
        if callable(getattr(cls, name, None)):
            aliases.setdefault(_camel_to_snake(name), name)
    return aliases


class PycroManagerCoreView:
    """The snake_case face of a pymmcore-plus core for Pycro-Manager's Python backend.

    ``view.get_xy_stage_device()`` calls ``core.getXYStageDevice()`` looked up on the
    core itself (so ``UniMMCore``'s overrides serve the Python devices); any other
    attribute (``snapImage``, ``mda``...) is the core's own.  ``get_tagged_image``,
    ``pop_next_tagged_image`` and ``TaggedImage`` are mmpycorex's.
    """

    def __init__(self, core: UniMMCore) -> None:
        from mmpycorex.launcher import TaggedImage, get_tagged_image, pop_next_tagged_image

        self.wrapped_core = core
        self._aliases = _snake_aliases(type(core))
        self.TaggedImage = TaggedImage
        self.get_tagged_image = types.MethodType(get_tagged_image, self)
        self.pop_next_tagged_image = types.MethodType(pop_next_tagged_image, self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("wrapped_core", "_aliases"):
            raise AttributeError(name)
        core = self.wrapped_core
        camel = self._aliases.get(name)
        return getattr(core, camel if camel is not None else name)

    def __repr__(self) -> str:
        return f"PycroManagerCoreView({self.wrapped_core!r})"


_SERVED: dict[int, tuple[PycroManagerCoreView, Any]] = {}


def _engine_class() -> Any:
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    return Engine


def _engine_is_dead(engine: Any) -> bool:
    ex = getattr(engine, "acq_executor", None)
    return ex is None or bool(getattr(ex, "_shutdown", False))


def _start_serving(core: UniMMCore) -> PycroManagerCoreView:
    from mmpycorex import launcher

    engine_cls = _engine_class()
    with _BACKEND_LOCK:
        if id(core) in _SERVED:
            raise HardwareError("this core is already served to Pycro-Manager")
        existing = engine_cls.get_instance()
        if existing is not None:
            if not _engine_is_dead(existing):
                raise HardwareError(
                    "another Pycro-Manager Python backend is running in this process; "
                    "stop it first (pycromanager.stop_headless())"
                )
            del engine_cls.singleton  # a dead Engine would be silently reused
        if launcher._PYMMCORES:
            raise HardwareError(
                "another core is registered as Pycro-Manager's headless core; "
                "stop it first (pycromanager.stop_headless())"
            )
        view = PycroManagerCoreView(core)
        launcher._PYMMCORES.append(view)
        engine = engine_cls(view)
        _SERVED[id(core)] = (view, engine)
    return view


def _stop_serving(core: UniMMCore) -> None:
    from mmpycorex import launcher

    with _BACKEND_LOCK:
        served = _SERVED.pop(id(core), None)
    if served is None:
        return
    view, engine = served
    try:
        engine.shutdown()  # waits for queued engine work
    finally:
        engine_cls = _engine_class()
        with _BACKEND_LOCK:
            if getattr(engine_cls, "singleton", None) is engine:
                del engine_cls.singleton
            launcher._PYMMCORES[:] = [c for c in launcher._PYMMCORES if c is not view]


@contextmanager
def pycromanager_backend(
    core: UniMMCore, *, unload_on_exit: bool = False
) -> Iterator[PycroManagerCoreView]:
    """Serve ``core`` as the core of Pycro-Manager Python-backend acquisitions.

    Inside the block ``pycromanager.Core()`` returns the yielded
    :class:`PycroManagerCoreView` and ``pycromanager.Acquisition(...)`` runs on the
    Python backend with this core.  On exit the acquisition Engine is shut down and
    its singleton cleared, and the view unregistered; the devices stay loaded unless
    ``unload_on_exit`` (then :func:`unload`).  Only one core can be served at a time
    (:class:`HardwareError` otherwise).
    """
    view = _start_serving(core)
    try:
        yield view
    finally:
        _stop_serving(core)
        if unload_on_exit:
            unload(core)


@contextmanager
def virtual_microscope(**options: Any) -> Iterator[DemoCore]:
    """:func:`create_demo_core` (``options``), served to Pycro-Manager, then torn down.

    Yields the core, usable directly (snap, pymmcore-plus MDA) and through
    ``pycromanager.Core()`` / ``Acquisition`` inside the block; on exit the backend
    is stopped and the devices unloaded.
    """
    core = create_demo_core(**options)
    try:
        with pycromanager_backend(core, unload_on_exit=True):
            yield core
    finally:
        unload(core)  # idempotent; covers a failure while starting the backend
