"""``autofocus bench render``: how fast the simulator renders camera frames.

For each frame size it times, on one specimen at a typical defocus: the specimen patch,
the PSF convolution (``render_field`` end to end, PSF cached as during an acquisition),
the camera noise, and the whole snap.  The baseline, measured in the same run, is a
plain ``scipy.ndimage.gaussian_filter`` of the same frame (what pymmcore-plus's
experimental simulator does for defocus).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.optics import get_objective
from autofocus.reporting import print_table, write_json

__all__ = ["run_render_benchmark"]


def _median_s(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm caches
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def run_render_benchmark(
    output: str | Path,
    *,
    sizes: tuple[int, ...] = (512, 2048),
    repeats: int = 5,
    specimens: tuple[str, ...] = ("nuclei", "calibration_slide"),
    objective: str = "20X",
    dz_um: float = 4.0,
) -> dict[str, Any]:
    from scipy import ndimage

    from simulators.camera import CameraModel
    from simulators.render import render_field
    from simulators.specimens import make_specimen

    obj = get_objective(objective)
    cam = CameraModel()
    rng = np.random.default_rng(0)
    rows = []
    for name in specimens:
        spec = make_specimen(name, seed=0)
        for size in sizes:
            shape = (size, size)

            def snap_signal(sp=spec, sh=shape):
                return render_field(sp, obj, dz_um, 0.0, 0.0, sh)

            signal = snap_signal()

            def specimen_patch(sp: Any = spec, sh: tuple[int, int] = shape) -> Any:
                return sp.patch(0.0, 0.0, sh, obj.pixel_size_um)

            def noise(sig: np.ndarray = signal) -> Any:
                return cam.expose(sig, rng)

            def snap() -> Any:
                return cam.expose(snap_signal(), rng)

            def gaussian(sig: np.ndarray = signal) -> Any:
                return ndimage.gaussian_filter(sig, 3.0)

            t_spec = _median_s(specimen_patch, repeats)
            t_render = _median_s(snap_signal, repeats)
            t_noise = _median_s(noise, repeats)
            t_snap = _median_s(snap, repeats)
            t_gauss = _median_s(gaussian, repeats)
            rows.append(
                {
                    "specimen": name,
                    "size": f"{size}x{size}",
                    "specimen_ms": 1e3 * t_spec,
                    "render_ms": 1e3 * t_render,
                    "noise_ms": 1e3 * t_noise,
                    "snap_ms": 1e3 * t_snap,
                    "baseline_gaussian_ms": 1e3 * t_gauss,
                }
            )
    cols = list(rows[0])
    print_table(
        f"Render time per frame ({objective}, dz = {dz_um} um, median of {repeats})",
        cols,
        [[r[c] for c in cols] for r in rows],
    )
    payload = {
        "benchmark": "render",
        "objective": objective,
        "dz_um": dz_um,
        "repeats": repeats,
        "rows": rows,
    }
    write_json(output, payload)
    return payload
