"""``autofocus bench scoring``: speed and memory of full-frame scoring on the CPU.

For 512x512 and 2048x2048 uint16 frames (a simulated specimen), it times the complete
``LocalScorer.score`` (validation, tiling, normalisation, both networks, aggregation)
and, as the baseline in the same run, a re-implementation of Yang et al.'s network
(:class:`autofocus.models.YangNet`, randomly initialised: only its cost matters) on the
same normalised 84x84 tiles.  Peak memory (max RSS) of scoring one 2048x2048 frame is
measured in a fresh subprocess so that nothing else in this process inflates it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.reporting import print_table, write_json

__all__ = ["run_scoring_benchmark"]

# Peak RSS from /proc/self/status VmHWM: unlike getrusage's ru_maxrss, which Linux
# carries across exec from the forked parent, VmHWM belongs to this process image.
_RSS_SNIPPET = r"""
import json, sys, numpy as np, torch
def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
torch.set_num_threads(int(sys.argv[1]))
from autofocus.scorer import LocalScorer
s = LocalScorer(weights_dir=sys.argv[2] or None)
rng = np.random.default_rng(0)
frame = rng.integers(100, 4000, size=(2048, 2048), dtype=np.uint16)
before = hwm_mb()
s.score(frame)
print(json.dumps({"peak_rss_before_scoring_mb": before, "peak_rss_mb": hwm_mb()}))
"""


def _frame(size: int) -> np.ndarray:
    from autofocus.optics import get_objective
    from simulators.camera import CameraModel
    from simulators.render import render_field
    from simulators.specimens import make_specimen

    obj = get_objective("20X")
    sig = render_field(make_specimen("nuclei", seed=3), obj, 2.0, 0.0, 0.0, (size, size))
    return CameraModel().expose(sig, np.random.default_rng(0))


def _median_ms(fn: Any, repeats: int) -> tuple[float, float]:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ts), float(np.percentile(ts, 90))


def run_scoring_benchmark(
    output: str | Path,
    *,
    threads: int = 2,
    repeats: int = 15,
    sizes: tuple[int, ...] = (512, 2048),
    weights_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Time the scorer (the shipped weights, or those in ``weights_dir``) against YangNet."""
    import torch

    from autofocus.models import CLASSIFIER_PATCH, YangNet
    from autofocus.registry import load_model
    from autofocus.scorer import LocalScorer
    from autofocus.tiling import TileGrid, extract_patches, normalise_patches

    torch.set_num_threads(threads)
    scorer = LocalScorer(weights_dir=str(weights_dir) if weights_dir else None)
    yang = YangNet().eval()
    rows = []
    for size in sizes:
        frame = _frame(size)
        med, p90 = _median_ms(lambda f=frame: scorer.score(f), repeats)
        grid = TileGrid.for_shape(frame.shape, CLASSIFIER_PATCH)

        def yang_run(f: np.ndarray = frame, g: TileGrid = grid) -> None:
            x, _ = normalise_patches(extract_patches(f, g))
            with torch.inference_mode():
                for s in range(0, x.shape[0], 256):
                    yang(torch.from_numpy(x[s : s + 256])[:, None])

        y_med, y_p90 = _median_ms(yang_run, max(3, repeats // 3))
        rows.append(
            {
                "frame": f"{size}x{size} uint16",
                "tiles_84": int(grid.ys.size * grid.xs.size),
                "ours_median_ms": med,
                "ours_p90_ms": p90,
                "yang_median_ms": y_med,
                "yang_p90_ms": y_p90,
                "speedup_x": y_med / med,
            }
        )
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SNIPPET, str(threads), str(weights_dir or "")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    mem = (
        json.loads(proc.stdout.strip().splitlines()[-1])
        if proc.returncode == 0
        else {"error": proc.stderr[-2000:]}
    )
    cols = list(rows[0])
    print_table(
        f"Full-frame scoring on CPU ({threads} threads, median of {repeats})",
        cols,
        [[r[c] for c in cols] for r in rows],
    )
    print(f"peak RSS scoring one 2048x2048 frame in a fresh process: {mem}")
    params = {
        # the shipped (unfolded) networks: BatchNorm folding drops a few parameters
        "ours_classifier": _n_params(load_model("classifier", weights_dir)[0]),
        "ours_regressor": _n_params(load_model("regressor", weights_dir)[0]),
        "yang": _n_params(yang),
    }
    payload = {
        "benchmark": "scoring",
        "threads": threads,
        "repeats": repeats,
        "rows": rows,
        "memory": mem,
        "parameters": params,
        "torch": torch.__version__,
        "model_version": scorer.model_version,
    }
    write_json(output, payload)
    return payload


def _n_params(net: Any) -> int:
    return int(sum(p.numel() for p in net.parameters()))
