"""The demo-config virtual microscope as a pymmcore-plus core (snap, stages, MDA)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, laplace

from autofocus.errors import InvalidInputError, StageLimitError
from simulators.core import create_demo_core, demo_config_path, get_virtual_microscope, unload
from simulators.drift import LinearDrift
from simulators.virtual import VirtualMicroscope, bind_devices_to


def _snap(core) -> np.ndarray:
    core.snapImage()
    return np.asarray(core.getImage())


def _sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian of a lightly smoothed frame (noise-robust)."""
    return float(laplace(gaussian_filter(img.astype(np.float64), 1.0)).var())


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


def test_plain_unimmcore_loads_the_shipped_config() -> None:
    from pymmcore_plus.experimental.unicore import UniMMCore

    path = demo_config_path()
    assert path.is_file() and path.suffix == ".cfg"
    vm = VirtualMicroscope(sensor_shape=(64, 64))
    core = UniMMCore(mm_path=str(path.parent))
    with bind_devices_to(vm):
        core.loadSystemConfiguration(str(path))
    try:
        assert set(core.getLoadedDevices()) >= {
            "Camera",
            "Z",
            "XY",
            "White Light Shutter",
            "Objective",
            "Emission",
        }
        assert core.getCameraDevice() == "Camera"
        assert core.getFocusDevice() == "Z"
        assert core.getXYStageDevice() == "XY"
        assert core.getShutterDevice() == "White Light Shutter"
        assert core.getAutoShutter()
        assert get_virtual_microscope(core) is vm
        assert set(core.getAvailableConfigs("Channel")) == {"DAPI", "FITC", "Rhodamine", "Cy5"}
        assert set(core.getAvailableConfigs("Objective")) == {"10X", "20X", "40X"}
        img = _snap(core)
        assert img.dtype == np.uint16 and img.shape == (64, 64)
    finally:
        unload(core)


def test_create_demo_core_snaps_uint16_frames(demo_core) -> None:
    core = demo_core
    assert core.getImageWidth() == 128 and core.getImageHeight() == 128
    assert core.getPixelSizeUm() == pytest.approx(1.0)
    for name in ("Exposure", "Binning", "PixelType", "BitDepth", "Gain", "Offset"):
        assert core.hasProperty("Camera", name)
    for name in ("ReadNoise (electrons)", "Photon Flux", "OnCameraCCDXSize", "OnCameraCCDYSize"):
        assert core.hasProperty("Camera", name)
    img = _snap(core)
    assert img.dtype == np.uint16 and img.shape == (128, 128)
    assert img.std() > 0
    # the sensor size is a camera property
    core.setProperty("Camera", "OnCameraCCDXSize", "96")
    assert _snap(core).shape == (128, 96)


def test_frames_depend_on_z_and_are_sharpest_at_true_focus(demo_core) -> None:
    core = demo_core
    vm = get_virtual_microscope(core)
    vm.configure_camera(photon_flux=1000.0)
    core.setProperty("Camera", "Focus Offset", "3.0")
    assert float(core.getProperty("Camera", "True Focus (um)")) == pytest.approx(3.0)
    zs = [-9.0, -3.0, 0.0, 2.0, 3.0, 4.0, 6.0, 9.0, 15.0]
    scores = []
    for z in zs:
        core.setPosition(z)
        assert core.getPosition() == pytest.approx(z)
        assert vm.dz_um() == pytest.approx(z - 3.0)
        scores.append(_sharpness(_snap(core)))
    assert zs[int(np.argmax(scores))] == pytest.approx(3.0, abs=1.0)
    assert max(scores) > 3 * min(scores)
    # symmetric-ish fall-off on both sides
    assert scores[zs.index(-3.0)] < scores[zs.index(3.0)]
    assert scores[zs.index(9.0)] < scores[zs.index(3.0)]


def test_objective_switch_changes_pixel_size_and_image(demo_core) -> None:
    core = demo_core
    vm = get_virtual_microscope(core)
    frames = {}
    for label, px in (("10X", 1.0), ("20X", 0.5), ("40X", 0.25)):
        core.setConfig("Objective", label)
        assert core.getProperty("Objective", "Label") == label
        assert vm.objective_name == label
        assert core.getPixelSizeUm() == pytest.approx(px)
        assert vm.pixel_size_um == pytest.approx(px)
        frames[label] = vm.expected_signal()
    assert not np.allclose(frames["10X"], frames["20X"])
    assert not np.allclose(frames["20X"], frames["40X"])
    # binning doubles the sample pixel and halves the frame
    core.setConfig("Objective", "20X")
    core.setProperty("Camera", "Binning", "2")
    assert core.getPixelSizeUm() == pytest.approx(1.0)
    assert _snap(core).shape == (64, 64)
    with pytest.raises(Exception, match="binning"):
        core.setProperty("Camera", "Binning", "3")


def test_xy_move_changes_the_field(demo_core) -> None:
    core = demo_core
    a1, a2 = _snap(core), _snap(core)
    core.setXYPosition(250.0, -130.0)
    assert core.getXYPosition() == pytest.approx((250.0, -130.0))
    b = _snap(core)
    same, moved = _corr(a1, a2), _corr(a1, b)
    assert same > 0.5
    assert moved < same - 0.3


def test_closed_shutter_gives_a_dark_frame(demo_core) -> None:
    core = demo_core
    vm = get_virtual_microscope(core)
    lit = _snap(core)  # auto-shutter (config default) lights the exposure
    core.setAutoShutter(False)
    core.setShutterOpen(False)
    assert not core.getShutterOpen()
    dark = _snap(core).astype(float)
    offset = float(core.getProperty("Camera", "Offset"))
    read_noise_adu = float(core.getProperty("Camera", "ReadNoise (electrons)")) * float(
        core.getProperty("Camera", "Gain")
    )
    assert dark.mean() == pytest.approx(offset, abs=0.5)
    assert dark.std() == pytest.approx(read_noise_adu, rel=0.15)
    assert lit.mean() > offset + 20 * read_noise_adu
    core.setShutterOpen(True)
    assert vm.illuminated and _snap(core).mean() > offset + 20 * read_noise_adu


def test_z_beyond_soft_limits_is_refused(demo_core) -> None:
    core = demo_core
    core.setPosition(12.5)
    for z in (300.5, -1000.0):
        with pytest.raises(StageLimitError):
            core.setPosition(z)
        assert core.getPosition() == pytest.approx(12.5)
    core.setPosition(300.0)  # the limit itself is reachable
    assert core.getPosition() == pytest.approx(300.0)
    with pytest.raises(InvalidInputError):
        get_virtual_microscope(core).set_z_um(float("nan"))


def test_drift_moves_the_true_focus_on_the_simulated_clock() -> None:
    core = create_demo_core(
        sensor_shape=(64, 64), drift=LinearDrift(0.5), seconds_per_frame=2.0, focus_z_um=1.0
    )
    try:
        vm = get_virtual_microscope(core)
        assert vm.true_focus_um() == pytest.approx(1.0)
        for _ in range(3):
            core.snapImage()
        assert vm.time_s() == pytest.approx(6.0)
        assert vm.true_focus_um() == pytest.approx(1.0 + 0.5 * 6.0)
        vm.advance_time(4.0)
        assert float(core.getProperty("Camera", "True Focus (um)")) == pytest.approx(6.0)
    finally:
        unload(core)


def test_specimen_is_swappable_by_property(demo_core) -> None:
    core = demo_core
    before = get_virtual_microscope(core).expected_signal()
    core.setProperty("Camera", "Specimen", "beads")
    assert core.getProperty("Camera", "Specimen") == "beads"
    after = get_virtual_microscope(core).expected_signal()
    assert not np.allclose(before, after)


def test_pymmcore_plus_mda_runs_a_z_stack_time_lapse(demo_core) -> None:
    import useq

    core = demo_core
    get_virtual_microscope(core).configure_camera(photon_flux=1000.0)
    frames: list[tuple[np.ndarray, float]] = []

    def on_frame(img: np.ndarray, event: useq.MDAEvent) -> None:
        frames.append((np.array(img), float(event.z_pos)))

    core.mda.events.frameReady.connect(on_frame)
    seq = useq.MDASequence(
        z_plan=useq.ZRangeAround(range=16.0, step=8.0),
        time_plan=useq.TIntervalLoops(interval=0.0, loops=2),
    )
    core.mda.run(seq)
    core.mda.events.frameReady.disconnect(on_frame)
    assert len(frames) == 6
    assert {z for _, z in frames} == {-8.0, 0.0, 8.0}
    sharp = {z: _sharpness(img) for img, z in frames[:3]}
    assert sharp[0.0] > sharp[-8.0] and sharp[0.0] > sharp[8.0]
    assert all(img.shape == (128, 128) and img.dtype == np.uint16 for img, _ in frames)


def test_replay_camera_replays_the_plane_at_the_stage_position(tmp_path) -> None:
    import tifffile

    from simulators.replay import ZStack

    planes = np.stack([np.full((32, 48), 1000 * (i + 1), np.uint16) for i in range(5)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, planes)
    stack_z = ZStack.load(path, z_step_um=2.0).z_um
    core = create_demo_core(sensor_shape=(64, 64))
    try:
        vm = get_virtual_microscope(core)
        with bind_devices_to(vm):
            core.loadDevice("Replay", "simulators.devices", "ReplayCamera")
        core.initializeDevice("Replay")
        core.setProperty("Replay", "Stack Z Step (um)", "2.0")
        core.setProperty("Replay", "Stack Path", str(path))
        core.setCameraDevice("Replay")
        for i in (0, 3, 4):
            core.setPosition(float(stack_z[i]))
            img = _snap(core)
            assert img.shape == (32, 48)
            assert np.all(img == 1000 * (i + 1))
        # the microscope's focus offset shifts which plane is replayed
        core.setPosition(float(stack_z[2]))
        core.setProperty("Camera", "Focus Offset", "-2.0")
        assert np.all(_snap(core) == 1000 * 4)
        core.setProperty("Replay", "Interpolate", "1")
        core.setPosition(float(stack_z[2]) - 1.0)  # halfway between planes 2 and 3
        assert np.all(_snap(core) == 3500)
    finally:
        unload(core)
