"""Python devices of the demo-config virtual microscope, for ``UniMMCore``.

Named and propertied like Micro-Manager's demo configuration (``simulators/demo.cfg``):

================== ================= ===================================================
label (demo.cfg)   class             acts on (:class:`~simulators.virtual.VirtualMicroscope`)
================== ================= ===================================================
Camera             DemoCamera        camera model, sensor, specimen; renders frames
Z                  DemoZStage        focus drive (soft limits, 0.025 um step)
XY                 DemoXYStage       XY stage (field centre, um)
White Light Shutter DemoShutter      illumination
Objective          DemoObjective     turret (10X / 20X / 40X)
Emission           DemoEmission      emission filter (Open / DAPI / FITC / Rhodamine / Cy5)
(optional)         ReplayCamera      replays a recorded z-stack at the stage position
================== ================= ===================================================

Each device attaches at construction to the microscope returned by
:func:`simulators.virtual.microscope_for_new_device` (see that module for how a
config file load is bound to a given microscope) and shows its name in the read-only
``Microscope`` property.  Errors of the model (e.g. :class:`StageLimitError` for a Z
move outside the soft limits) propagate to the core call that caused them; the
position is then unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    StateDevice,
    XYStageDevice,
    pymm_property,
)

from autofocus.errors import HardwareError, InvalidInputError
from simulators.virtual import EMISSION_FILTERS_UM, VirtualMicroscope, microscope_for_new_device

__all__ = [
    "DemoCamera",
    "DemoEmission",
    "DemoObjective",
    "DemoShutter",
    "DemoXYStage",
    "DemoZStage",
    "ReplayCamera",
]


def _attach(device: Any) -> VirtualMicroscope:
    vm = microscope_for_new_device()
    device.register_property(
        "Microscope", default_value=vm.name, getter=lambda dev: dev.vm.name, is_read_only=True
    )
    return vm


class DemoCamera(SimpleCameraDevice):
    """Simulated camera: renders the specimen at the current defocus and adds noise."""

    def __init__(self) -> None:
        super().__init__()
        self.vm = _attach(self)
        # config files pass strings: limits convert them, the model accepts 1, 2 or 4 only
        self.set_property_limits("Binning", (1, 4))
        self.set_property_limits("Exposure", (0.001, 10000.0))
        self.set_property_limits("Gain", (0.01, 100.0))
        self.set_property_limits("Offset", (0.0, 10000.0))
        from simulators.specimens import SPECIMEN_NAMES

        self.set_property_allowed_values("Specimen", tuple(SPECIMEN_NAMES))

    # -- SimpleCameraDevice ------------------------------------------------------
    def sensor_shape(self) -> tuple[int, int]:
        return self.vm.frame_shape

    def dtype(self) -> Any:
        return np.uint16

    def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
        frame = self.vm.snap()
        buffer[:] = frame
        info = self.vm.last_frame_info
        return {
            "VirtualMicroscope-TrueFocusUm": f"{info['true_focus_um']:.4f}",
            "VirtualMicroscope-DefocusUm": f"{info['dz_um']:.4f}",
            "VirtualMicroscope-TimeS": f"{info['t_s']:.4f}",
        }

    # -- standard properties -------------------------------------------------------
    def get_exposure(self) -> float:
        return self.vm.exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self.vm.configure_camera(exposure_ms=float(exposure))

    def get_binning(self) -> int:
        return self.vm.binning

    def set_binning(self, value: int) -> None:
        self.vm.set_binning(int(value))

    def get_gain(self) -> float:
        return self.vm.camera_setting("gain_adu_per_e")

    def set_gain(self, value: float) -> None:
        self.vm.configure_camera(gain_adu_per_e=float(value))

    def get_offset(self) -> float:
        return self.vm.camera_setting("offset_adu")

    def set_offset(self, value: float) -> None:
        self.vm.configure_camera(offset_adu=float(value))

    # -- demo-camera properties ----------------------------------------------------
    @pymm_property(name="PixelType", allowed_values=("16bit",))
    def pixel_type(self) -> str:
        return "16bit"

    @pymm_property(name="BitDepth", limits=(8, 16))
    def bit_depth(self) -> int:
        return int(self.vm.camera_setting("bit_depth"))

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        self.vm.configure_camera(bit_depth=int(value))

    @pymm_property(name="ReadNoise (electrons)", limits=(0.0, 100.0))
    def read_noise(self) -> float:
        return self.vm.camera_setting("read_noise_e")

    @read_noise.setter
    def read_noise(self, value: float) -> None:
        self.vm.configure_camera(read_noise_e=float(value))

    @pymm_property(name="Photon Flux", limits=(0.0, 100000.0))
    def photon_flux(self) -> float:
        """Photoelectrons per pixel per ms at expected signal 1.0."""
        return self.vm.camera_setting("photon_flux")

    @photon_flux.setter
    def photon_flux(self, value: float) -> None:
        self.vm.configure_camera(photon_flux=float(value))

    @pymm_property(name="OnCameraCCDXSize", limits=(8, 8192))
    def ccd_x_size(self) -> int:
        return self.vm.sensor_shape[1]

    @ccd_x_size.setter
    def ccd_x_size(self, value: int) -> None:
        self.vm.set_sensor_shape((self.vm.sensor_shape[0], int(value)))

    @pymm_property(name="OnCameraCCDYSize", limits=(8, 8192))
    def ccd_y_size(self) -> int:
        return self.vm.sensor_shape[0]

    @ccd_y_size.setter
    def ccd_y_size(self, value: int) -> None:
        self.vm.set_sensor_shape((int(value), self.vm.sensor_shape[1]))

    # -- simulation extras ---------------------------------------------------------
    @pymm_property(name="Specimen")
    def specimen(self) -> str:
        return self.vm.specimen_name

    @specimen.setter
    def specimen(self, value: str) -> None:
        self.vm.set_specimen(str(value))

    @pymm_property(name="Specimen Seed", limits=(0, 2**31 - 1))
    def specimen_seed(self) -> int:
        return self.vm.seed

    @specimen_seed.setter
    def specimen_seed(self, value: int) -> None:
        self.vm.set_specimen(self.vm.specimen_name, seed=int(value))

    @pymm_property(name="Focus Offset", limits=(-10000.0, 10000.0))
    def focus_offset(self) -> float:
        """Base stage z (um) of the true focal plane, before tilt and drift."""
        return self.vm.focus_z_um

    @focus_offset.setter
    def focus_offset(self, value: float) -> None:
        with self.vm.lock:
            self.vm.focus_z_um = float(value)

    @pymm_property(name="True Focus (um)", is_read_only=True)
    def true_focus(self) -> float:
        return self.vm.true_focus_um()

    @pymm_property(name="Defocus (um)", is_read_only=True)
    def defocus(self) -> float:
        return self.vm.dz_um()


class DemoZStage(StageDevice):
    """Focus drive with soft limits; moves outside them raise :class:`StageLimitError`."""

    def __init__(self) -> None:
        super().__init__()
        self.vm = _attach(self)
        self._origin_um = 0.0  # physical z that reads as 0
        lo, hi = self.vm.z_limits_um
        self.register_property(
            "Position",
            default_value=self.vm.z_um,
            limits=(lo, hi),
            getter=lambda dev: dev.get_position_um(),
            setter=lambda dev, v: dev.set_position_um(float(v)),
        )
        self.register_property(
            "Step Size (um)",
            default_value=self.vm.z_step_um,
            getter=lambda dev: dev.vm.z_step_um,
            is_read_only=True,
        )
        self.register_property(
            "Settle Time (ms)",
            default_value=self.vm.settle_ms,
            limits=(0.0, 10000.0),
            getter=lambda dev: dev.vm.settle_ms,
            setter=lambda dev, v: setattr(dev.vm, "settle_ms", float(v)),
        )

    def get_position_um(self) -> float:
        return self.vm.z_um - self._origin_um

    def set_position_um(self, val: float) -> None:
        self.vm.set_z_um(float(val) + self._origin_um)
        self.core.events.stagePositionChanged.emit(self.get_label(), self.get_position_um())

    def home(self) -> None:
        self.set_position_um(0.0)

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""

    def set_origin(self) -> None:
        self._origin_um = self.vm.z_um

    def set_adapter_origin_um(self, newZUm: float) -> None:
        self._origin_um = self.vm.z_um - float(newZUm)


class DemoXYStage(XYStageDevice):
    """XY stage; the position is the sample coordinate of the field centre (um)."""

    def __init__(self) -> None:
        super().__init__()
        self.vm = _attach(self)
        self._origin = [0.0, 0.0]

    def get_position_um(self) -> tuple[float, float]:
        x, y = self.vm.xy_um
        return (x - self._origin[0], y - self._origin[1])

    def set_position_um(self, x: float, y: float) -> None:
        self.vm.set_xy_um(float(x) + self._origin[0], float(y) + self._origin[1])
        self.core.events.XYStagePositionChanged.emit(self.get_label(), *self.get_position_um())

    def set_origin_x(self) -> None:
        self._origin[0] = self.vm.xy_um[0]

    def set_origin_y(self) -> None:
        self._origin[1] = self.vm.xy_um[1]

    def set_adapter_origin_um(self, x: float, y: float) -> None:
        px, py = self.vm.xy_um
        self._origin = [px - float(x), py - float(y)]

    def home(self) -> None:
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""


class DemoShutter(ShutterDevice):
    """Illumination shutter; closed (and auto-shutter off) gives dark frames."""

    def __init__(self) -> None:
        super().__init__()
        self.vm = _attach(self)

    def get_open(self) -> bool:
        return self.vm.shutter_open

    def set_open(self, open: bool) -> None:
        self.vm.set_shutter_open(bool(open))


class DemoObjective(StateDevice):
    """Objective turret; state labels are the microscope's objective names."""

    def __init__(self) -> None:
        vm = microscope_for_new_device()
        super().__init__(dict(enumerate(vm.objectives)))
        self.vm = _attach(self)

    def get_state(self) -> int:
        return self._label_to_state.get(self.vm.objective_name, 0)

    def set_state(self, position: int) -> None:
        label = self._state_to_label.get(int(position))
        if label is None:
            raise HardwareError(f"objective turret has no position {position}")
        self.vm.set_objective(str(label))


_EMISSION_LABELS = ("Open", *EMISSION_FILTERS_UM)


class DemoEmission(StateDevice):
    """Emission filter wheel: sets the emission wavelength used for the PSF.

    ``Open`` keeps each objective's own wavelength; the others use
    :data:`simulators.virtual.EMISSION_FILTERS_UM`.
    """

    def __init__(self) -> None:
        super().__init__(dict(enumerate(_EMISSION_LABELS)))
        self.vm = _attach(self)

    def get_state(self) -> int:
        w = self.vm.emission_um
        for label, wl in EMISSION_FILTERS_UM.items():
            if w is not None and abs(w - wl) < 1e-9:
                return _EMISSION_LABELS.index(label)
        return 0

    def set_state(self, position: int) -> None:
        pos = int(position)
        if not 0 <= pos < len(_EMISSION_LABELS):
            raise HardwareError(f"emission wheel has no position {position}")
        label = _EMISSION_LABELS[pos]
        self.vm.set_emission_um(EMISSION_FILTERS_UM.get(label))


class ReplayCamera(SimpleCameraDevice):
    """Camera that replays a recorded z-stack (``simulators.replay.ZStack``).

    Not in ``demo.cfg``; load it next to the demo devices (e.g. ``#py
    pyDevice,Replay,simulators.devices,ReplayCamera``) and make it the core camera.
    Set ``Stack Z Step (um)`` (when the files carry no z) and then ``Stack Path``.
    A snap returns the plane at stack coordinate
    ``z_stack = z_stage - true_focus + ref`` where ``true_focus`` is the microscope's
    (so its focus offset and drift apply) and ``ref`` is the stack's known in-focus z
    (0 when unknown: stage z maps straight to stack z).  Outside the recorded range
    the end plane is returned; ``Interpolate`` = 1 blends the two nearest planes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vm = _attach(self)
        self._stack: Any = None
        self._path = ""
        self._z_step_um = 0.0
        self._interpolate = 0
        self._exposure_ms = 10.0

    def _require_stack(self) -> Any:
        if self._stack is None:
            raise HardwareError("ReplayCamera: set the 'Stack Path' property first")
        return self._stack

    def stack_z_um(self) -> float:
        """Stack coordinate replayed at the current stage position."""
        stack = self._require_stack()
        ref = stack.true_focus_um if stack.true_focus_um is not None else 0.0
        return self.vm.z_um - self.vm.true_focus_um() + float(ref)

    def sensor_shape(self) -> tuple[int, int]:
        if self._stack is None:
            return self.vm.frame_shape
        h, w = self._stack.shape
        return (int(h), int(w))

    def dtype(self) -> Any:
        return np.uint16

    def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
        z = self.stack_z_um()
        plane = self._require_stack().plane_at(z, interpolate=bool(self._interpolate))
        buffer[:] = np.clip(np.rint(plane), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        return {"Replay-StackZUm": f"{z:.4f}"}

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        if not float(exposure) > 0:
            raise InvalidInputError(f"exposure must be > 0 ms, got {exposure!r}")
        self._exposure_ms = float(exposure)

    @pymm_property(name="Stack Z Step (um)", limits=(0.0, 1000.0))
    def stack_z_step(self) -> float:
        """Plane spacing used when the recording carries no z (0: must carry z)."""
        return self._z_step_um

    @stack_z_step.setter
    def stack_z_step(self, value: float) -> None:
        self._z_step_um = float(value)

    @pymm_property(name="Stack Path")
    def stack_path(self) -> str:
        return self._path

    @stack_path.setter
    def stack_path(self, value: str) -> None:
        from simulators.replay import ZStack

        step = self._z_step_um if self._z_step_um > 0 else None
        self._stack = ZStack.load(str(value), z_step_um=step)
        self._path = str(value)

    @pymm_property(name="Interpolate", allowed_values=("0", "1"))
    def interpolate(self) -> str:
        return str(self._interpolate)

    @interpolate.setter
    def interpolate(self, value: str) -> None:
        self._interpolate = int(value)
