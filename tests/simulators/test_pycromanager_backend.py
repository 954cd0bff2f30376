"""The virtual microscope as the core of Pycro-Manager Python-backend acquisitions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from autofocus.errors import HardwareError
from simulators.core import get_virtual_microscope, pycromanager_backend, virtual_microscope

REPO_ROOT = Path(__file__).resolve().parents[2]


def _backend_is_clean() -> bool:
    from mmpycorex import is_pymmcore_active
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    return Engine.get_instance() is None and not is_pymmcore_active()


def _z_stack(tmp_path: Path | None, name: str) -> tuple[list[np.ndarray], list[float], list[str]]:
    """Run a z-stack acquisition; return frames, z seen by the hook, hook failures."""
    from pycromanager import Acquisition, Core, multi_d_acquisition_events

    seen_z: list[float] = []
    failures: list[str] = []

    def post_hardware(event: dict) -> dict:
        try:  # the Python backend swallows hook errors: record them instead
            seen_z.append(float(Core().get_position()))
            assert float(event["z"]) == pytest.approx(seen_z[-1])
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            failures.append(repr(exc))
        return event

    directory = None if tmp_path is None else str(tmp_path)
    with Acquisition(
        directory=directory, name=name, post_hardware_hook_fn=post_hardware, show_display=False
    ) as acq:
        acq.acquire(multi_d_acquisition_events(z_start=-6, z_end=6, z_step=6))
    dataset = acq.get_dataset()
    frames = [np.asarray(dataset.read_image(z=i)) for i in range(3)]
    if tmp_path is not None:
        dataset.close()
    return frames, seen_z, failures


def _sharpness(img: np.ndarray) -> float:
    from scipy.ndimage import gaussian_filter, laplace

    return float(laplace(gaussian_filter(img.astype(np.float64), 1.0)).var())


def test_acquisition_with_hook_records_z_and_frames(tmp_path: Path) -> None:
    with virtual_microscope(sensor_shape=(128, 128), camera={"photon_flux": 1000.0}) as core:
        from pycromanager import Core

        assert Core().wrapped_core is core  # the headless core is ours
        frames, seen_z, failures = _z_stack(tmp_path, "zstack")
        assert failures == []
        assert seen_z == [-6.0, 0.0, 6.0]
        assert all(f.shape == (128, 128) and f.dtype == np.uint16 for f in frames)
        sharp = [_sharpness(f) for f in frames]
        assert sharp[1] > sharp[0] and sharp[1] > sharp[2]
        assert not np.array_equal(frames[0], frames[2])
        assert get_virtual_microscope(core).z_um == pytest.approx(6.0)
    assert _backend_is_clean()
    # `autofocus score` on the saved dataset: one row per frame, in acquisition order
    import csv
    import json

    from autofocus.scorer import LocalScorer
    from autofocus.scoring_cli import score_files

    (stack,) = tmp_path.glob("zstack*/*.tif")
    scorer = LocalScorer()
    assert score_files([stack], tmp_path / "s.csv", scorer=scorer) == 3
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [int(r["page"]) for r in rows] == [0, 1, 2]
    assert [json.loads(r["axes"])["z"] for r in rows] == [0, 1, 2]  # from NDTiff.index
    direct = [f"{scorer.score(f).blur_px:.3f}" for f in frames]
    assert [r["blur_px"] for r in rows] == direct


def test_repeated_start_teardown_with_two_acquisitions_each() -> None:
    from pycromanager import Acquisition, multi_d_acquisition_events

    for _ in range(3):
        with virtual_microscope(sensor_shape=(64, 64)) as core:
            frames, seen_z, failures = _z_stack(None, "first")
            assert failures == [] and seen_z == [-6.0, 0.0, 6.0] and len(frames) == 3
            # a time series: identical events are merged into a camera sequence
            with Acquisition(directory=None, show_display=False) as acq:
                acq.acquire(multi_d_acquisition_events(num_time_points=3))
            dataset = acq.get_dataset()
            series = [np.asarray(dataset.read_image(time=t)) for t in range(3)]
            assert all(s.shape == (64, 64) for s in series)
            assert core.getLoadedDevices()
        assert core.getLoadedDevices() == ("Core",)  # torn down: devices unloaded
        assert _backend_is_clean()


def test_only_one_core_is_served_at_a_time(demo_core) -> None:
    with pycromanager_backend(demo_core) as view:
        assert view.get_camera_device() == "Camera"
        assert view.get_xy_stage_device() == "XY"
        view.set_position("Z", 4.0)
        assert view.get_position() == pytest.approx(4.0)
        with pytest.raises(HardwareError), pycromanager_backend(demo_core):
            pass  # pragma: no cover
    assert _backend_is_clean()
    assert demo_core.getLoadedDevices() != ("Core",)  # still usable without the backend
    demo_core.snapImage()


def test_clean_exit_in_a_fresh_interpreter() -> None:
    script = textwrap.dedent(
        """
        from pycromanager import Acquisition, multi_d_acquisition_events
        from simulators.core import virtual_microscope

        with virtual_microscope(sensor_shape=(64, 64)) as core:
            with Acquisition(directory=None, show_display=False) as acq:
                acq.acquire(multi_d_acquisition_events(z_start=0, z_end=2, z_step=1))
            n = len(acq.get_dataset().axes["z"])
        print("frames", n)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FATAL" not in proc.stderr
    assert "frames 3" in proc.stdout
