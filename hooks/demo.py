"""``autofocus demo``: a drifting timelapse on the virtual microscope, kept in focus.

What it runs
------------
1. The demo-config virtual microscope (pymmcore-plus ``UniMMCore``) with the chosen
   specimen and objective, a slightly tilted slide (every XY position has its own
   focus) and a drifting focal plane: a slow creep, a random walk and one sudden jump
   half-way (default sizes in depths of field, see :func:`default_drift_spec`).
2. A calibration of the objective when the store has none for it (49-slice stack of
   the textured calibration slide on a separate virtual microscope).
3. A Pycro-Manager Python-backend acquisition: ``positions`` XY positions (all at the
   same nominal z), a small z-stack around focus at each (``z_slices`` slices,
   ``z_step_dof`` DOF apart), ``time_points`` time points ``interval_s`` apart on the
   simulated clock (no real waiting), with :class:`~hooks.pycromanager.AutofocusHook`
   (search at every time point of every position) and
   :class:`~hooks.pycromanager.FlaggingHook` (every frame scored).
4. Ground truth from the simulator for every frame, joined with the flags read back
   from the saved dataset: the table per time point and position (true focus error
   of the in-focus slice without autofocus, before and after it, in um and DOF;
   images used; frames flagged), the figures of merit, a JSON report and a PNG plot.

Figures of merit (printed and in ``demo.json``)
---------------------------------------------
* ``in_focus_time_points``: share of time points at which the centre slice of every
  position lies within DOF/4 of the true focus (and the same without autofocus: the
  nominal z against the drifted focus);
* ``mean_images_per_autofocus``;
* flag precision / recall of ``out_of_focus`` against the truth ``|dz| > DOF``
  (undetermined frames left out and counted).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Hashable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import InvalidInputError, UnknownNameError
from autofocus.optics import Objective, get_objective

__all__ = [
    "DemoOptions",
    "DemoResult",
    "DemoRow",
    "default_drift_spec",
    "flag_precision_recall",
    "print_result",
    "run_demo",
]

logger = logging.getLogger(__name__)

DEMO_MICROSCOPE = "virtual-demo"
"""Name under which the demo stores its calibrations."""
POSITION_SPACING_UM = 600.0
SLIDE_TILT_UM_PER_UM = 0.003


@dataclass(frozen=True)
class DemoOptions:
    """Settings of one demo run (the CLI's options)."""

    output: Path = Path("autofocus-demo")
    time_points: int = 30
    positions: int = 3
    objective: str = "20X"
    specimen: str = "nuclei"
    drift: str | None = None
    seed: int = 0
    autofocus: bool = True
    interval_s: float = 60.0
    z_slices: int = 3
    z_step_dof: float = 2.0
    frame_px: int = 256
    out_of_focus_dof: float | None = 1.0
    calibration_dir: Path | None = None
    weights_dir: Path | None = None
    live: bool = True

    def validate(self) -> DemoOptions:
        if not 1 <= self.time_points <= 10000:
            raise InvalidInputError("time_points must lie in 1..10000")
        if not 1 <= self.positions <= 100:
            raise InvalidInputError("positions must lie in 1..100")
        if self.z_slices < 1 or self.z_slices % 2 == 0 or self.z_slices > 51:
            raise InvalidInputError("z_slices must be odd, 1..51 (the centre slice is in focus)")
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise InvalidInputError("interval_s must be > 0")
        if not (math.isfinite(self.z_step_dof) and self.z_step_dof > 0):
            raise InvalidInputError("z_step_dof must be > 0")
        if not 64 <= self.frame_px <= 2048:
            raise InvalidInputError("frame_px must lie in 64..2048")
        get_objective(self.objective)
        from simulators.specimens import SPECIMEN_NAMES

        if self.specimen not in SPECIMEN_NAMES:
            raise UnknownNameError(
                f"unknown specimen {self.specimen!r}; known: {', '.join(SPECIMEN_NAMES)}"
            )
        return self


@dataclass(frozen=True)
class DemoRow:
    """One time point at one position (errors = stage z - true focus, um)."""

    time_index: int
    position: int
    t_s: float
    true_focus_um: float
    error_no_af_um: float
    error_before_um: float | None
    error_um: float
    images_used: int | None
    af_status: str | None
    frames: int
    frames_flagged: int


@dataclass(frozen=True)
class DemoResult:
    options: dict[str, Any]
    objective: str
    dof_um: float
    drift: str
    rows: list[DemoRow]
    in_focus_time_points: float
    in_focus_time_points_no_af: float
    in_focus_rows: float
    mean_images_per_autofocus: float | None
    n_autofocus: int
    n_autofocus_failed: int
    flag_precision: float | None
    flag_recall: float | None
    flag_counts: dict[str, int]
    frames: int
    frames_per_s: float
    mean_score_ms: float
    scorer: str
    calibration_path: str | None
    calibrated_now: bool
    dataset_path: str
    plot_path: str
    json_path: str
    elapsed_s: float
    errors: list[str] = field(default_factory=list)


def default_drift_spec(dof_um: float, interval_s: float, time_points: int) -> str:
    """Creep of 0.1 DOF per interval, a random walk of 0.1 DOF per sqrt(interval), and a
    jump of +3 DOF half an interval before the middle time point (``make_drift`` text)."""
    rate = 0.1 * dof_um / interval_s
    walk = 0.1 * dof_um / math.sqrt(interval_s)
    t_jump = max(time_points // 2 - 0.5, 0.5) * interval_s
    return f"linear:{rate:.6g},walk:{walk:.6g},jump:{3 * dof_um:.6g}@{t_jump:.6g}"


def flag_precision_recall(
    verdicts: list[str], true_dz_um: list[float], dof_um: float
) -> tuple[float | None, float | None, dict[str, int]]:
    """Precision and recall of ``out_of_focus`` against ``|dz| > DOF`` (undetermined out).

    ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``; None when undefined.
    """
    tp = fp = fn = tn = und = 0
    for v, dz in zip(verdicts, true_dz_um, strict=True):
        if v == "undetermined":
            und += 1
            continue
        out_true = abs(dz) > dof_um
        out_pred = v == "out_of_focus"
        tp += out_true and out_pred
        fp += out_pred and not out_true
        fn += out_true and not out_pred
        tn += not out_true and not out_pred
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return precision, recall, {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "undetermined": und}


# ------------------------------------------------------------------ calibration
def _calibration(
    objective: Objective, scorer: Any, store_dir: Path | None, frame_px: int, seed: int
) -> tuple[Any, Path | None, bool]:
    """Load the demo calibration of ``objective`` or make (and store) one."""
    from autofocus.errors import CalibrationError
    from calibration.store import CalibrationStore
    from calibration.wizard import calibrate, open_microscope, save_calibration

    store = CalibrationStore(store_dir)
    try:
        cal = store.load(objective, DEMO_MICROSCOPE, scorer=scorer)
        return cal, store.path_for(objective, DEMO_MICROSCOPE), False
    except (UnknownNameError, CalibrationError) as exc:
        logger.info("calibrating %s: %s", objective.name, exc)
    with open_microscope(
        "simulator",
        objective,
        simulator_options={"sensor_shape": (frame_px, frame_px), "seed": seed + 1000},
    ) as scope:
        cal = calibrate(scope, scorer, objective, microscope_name=DEMO_MICROSCOPE)
    path, _ = save_calibration(cal, store)
    return cal, path, True


# ------------------------------------------------------------------ the run
@contextlib.contextmanager
def _abort_on_ctrl_c(acq: Any) -> Iterator[list[bool]]:
    """Ctrl-C aborts the acquisition (pending events dropped) instead of being held up
    until every queued event has run; yields a list that is non-empty after one."""
    interrupted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if not interrupted:
            interrupted.append(True)
            acq.abort()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def run_demo(options: DemoOptions, *, scorer: Any = None, console: Any = None) -> DemoResult:
    """Run the demo (see the module docstring); writes the dataset, PNG and JSON."""
    from pycromanager import Acquisition, multi_d_acquisition_events
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from hooks.metadata import iter_focus_flags
    from hooks.pycromanager import (
        AutofocusHook,
        FlaggingHook,
        acquisition_hooks,
        event_time_index,
        z_centres_um,
    )
    from simulators.core import get_virtual_microscope, virtual_microscope
    from simulators.drift import make_drift
    from simulators.specimens import make_specimen

    opts = options.validate()
    console = console or Console()
    t_start = time.perf_counter()
    objective = get_objective(opts.objective)
    dof = objective.dof_um
    drift = opts.drift or default_drift_spec(dof, opts.interval_s, opts.time_points)
    make_drift(drift, seed=opts.seed)  # a bad spec fails here, before any work
    make_specimen(opts.specimen)
    out = Path(opts.output)
    out.mkdir(parents=True, exist_ok=True)
    if scorer is None:
        from autofocus.scorer import LocalScorer

        scorer = LocalScorer(
            weights_dir=None if opts.weights_dir is None else str(opts.weights_dir)
        )
    cal, cal_path, calibrated_now = None, None, False
    if opts.autofocus:
        with console.status(f"calibration of {objective.name}..."):
            cal, cal_path, calibrated_now = _calibration(
                objective, scorer, opts.calibration_dir, opts.frame_px, opts.seed
            )
        if calibrated_now:
            console.print(f"calibrated {objective.name}: {cal_path}")

    xyz = [[i * POSITION_SPACING_UM, 0.0, 0.0] for i in range(opts.positions)]
    half = (opts.z_slices // 2) * opts.z_step_dof * dof
    step = opts.z_step_dof * dof
    z_kw: dict[str, Any] = {}
    if opts.z_slices > 1:
        # arange(start, end + step, step) inside: end a quarter step short of +half
        z_kw = {"z_start": -half, "z_end": half - 0.25 * step, "z_step": step}
    events = multi_d_acquisition_events(
        num_time_points=opts.time_points,
        time_interval_s=0,
        xyz_positions=xyz,
        order="tpz",
        **z_kw,
    )
    truth: dict[tuple[int, int, int], dict[str, Any]] = {}
    hook_errors: list[str] = []
    n_total = opts.time_points * opts.positions * opts.z_slices

    with virtual_microscope(
        specimen=opts.specimen,
        seed=opts.seed,
        objective=objective.name,
        objectives={objective.name: objective},
        sensor_shape=(opts.frame_px, opts.frame_px),
        drift=drift,
        focus_tilt_um_per_um=(SLIDE_TILT_UM_PER_UM, 0.0),
        noise_seed=opts.seed,
    ) as core:
        vm = get_virtual_microscope(core)
        af = None
        if opts.autofocus:
            af = AutofocusHook(
                scorer,
                cal,
                objective=objective,
                reference_z_um=z_centres_um(events),
                on_failure="warn",
            )
        flag = FlaggingHook(
            scorer,
            objective,
            autofocus=af,
            out_of_focus_dof=opts.out_of_focus_dof,
            max_lag_s=None,
        )
        hooks = acquisition_hooks(af, flag)
        af_pre = hooks.get("pre_hardware_hook_fn")

        progress = Progress(
            TextColumn("[bold]demo[/]"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} frames"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            disable=not opts.live,
            transient=False,
        )
        task = progress.add_task("", total=n_total)

        def pre_hardware(event: Any, event_queue: Any = None) -> Any:
            try:  # the simulated clock follows the time points
                first = event[0] if isinstance(event, list) else event
                t = event_time_index(first)
                if t is not None and t * opts.interval_s > vm.time_s():
                    vm.set_time(t * opts.interval_s)
            except Exception as exc:  # pragma: no cover - reported below
                hook_errors.append(f"clock: {exc!r}")
            return af_pre(event) if af_pre is not None else event

        def post_camera(event: Any, event_queue: Any = None) -> Any:
            try:
                first = event[-1] if isinstance(event, list) else event
                axes = first.get("axes", {})
                key = (
                    int(axes.get("time", 0)),
                    int(axes.get("position", 0)),
                    int(axes.get("z", 0)),
                )
                truth[key] = dict(vm.last_frame_info)
                info = truth[key]
                progress.update(
                    task,
                    advance=1,
                    description=f"t {key[0]} pos {key[1]}: dz {info['dz_um']:+.2f} um "
                    f"({info['dz_um'] / dof:+.2f} DOF)",
                )
            except Exception as exc:  # pragma: no cover - reported below
                hook_errors.append(f"truth: {exc!r}")
            return event

        hooks["pre_hardware_hook_fn"] = pre_hardware
        t_acq = time.perf_counter()
        with progress:
            acq = Acquisition(
                directory=str(out),
                name="demo_dataset",
                post_camera_hook_fn=post_camera,
                show_display=False,
                **hooks,
            )
            with _abort_on_ctrl_c(acq) as interrupted, acq:
                acq.acquire(events)
        if interrupted:
            raise KeyboardInterrupt  # the CLI reports "aborted" (exit 130)
        acq_s = time.perf_counter() - t_acq
        dataset = acq.get_dataset()
        dataset_path = str(getattr(dataset, "path", out))
        flags = {
            (int(a.get("time", 0)), int(a.get("position", 0)), int(a.get("z", 0))): f
            for a, f in iter_focus_flags(dataset)
        }
        dataset.close()
        true_focus = {
            (t, p): vm.true_focus_um(t_s=t * opts.interval_s, x_um=xyz[p][0], y_um=0.0)
            for t in range(opts.time_points)
            for p in range(opts.positions)
        }

    af_summary = af.summary() if af is not None else None
    records: dict[tuple[int | None, Hashable], Any] = {}
    if af_summary is not None:
        for r in af_summary.records:
            records[(r.time_index, r.position)] = r
    centre = opts.z_slices // 2
    rows: list[DemoRow] = []
    verdicts: list[str] = []
    true_dz: list[float] = []
    for t in range(opts.time_points):
        for p in range(opts.positions):
            frames = [truth.get((t, p, z)) for z in range(opts.z_slices)]
            fl = [flags.get((t, p, z)) for z in range(opts.z_slices)]
            for info, f in zip(frames, fl, strict=True):
                if info is not None and f is not None:
                    verdicts.append(f.verdict)
                    true_dz.append(float(info["dz_um"]))
            c = frames[centre]
            focus = float(c["true_focus_um"]) if c is not None else true_focus[(t, p)]
            rec = records.get((t, p))
            rows.append(
                DemoRow(
                    time_index=t,
                    position=p,
                    t_s=float(c["t_s"]) if c is not None else t * opts.interval_s,
                    true_focus_um=focus,
                    error_no_af_um=xyz[p][2] - focus,
                    error_before_um=None if rec is None else rec.z_start_um - focus,
                    error_um=float(c["dz_um"]) if c is not None else float("nan"),
                    images_used=None if rec is None else rec.images_used,
                    af_status=None if rec is None else rec.status,
                    frames=sum(f is not None for f in frames),
                    frames_flagged=sum(f is not None and f.out_of_focus for f in fl),
                )
            )
    quarter = dof / 4
    ok_rows = [abs(r.error_um) <= quarter for r in rows]
    by_t = [
        all(ok for r, ok in zip(rows, ok_rows, strict=True) if r.time_index == t)
        for t in range(opts.time_points)
    ]
    by_t_no = [
        all(abs(r.error_no_af_um) <= quarter for r in rows if r.time_index == t)
        for t in range(opts.time_points)
    ]
    precision, recall, counts = flag_precision_recall(verdicts, true_dz, dof)
    fs = flag.summary()
    n_frames = sum(r.frames for r in rows)
    errors = [f"{e.hook} at {e.where}: {e.error_type}: {e.message}" for e in fs.errors]
    if af_summary is not None:
        errors += [f"{e.hook} at {e.where}: {e.error_type}: {e.message}" for e in af_summary.errors]
    errors += hook_errors
    plot_path = out / "demo.png"
    json_path = out / "demo.json"
    result = DemoResult(
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        objective=objective.name,
        dof_um=dof,
        drift=drift,
        rows=rows,
        in_focus_time_points=float(np.mean(by_t)),
        in_focus_time_points_no_af=float(np.mean(by_t_no)),
        in_focus_rows=float(np.mean(ok_rows)),
        mean_images_per_autofocus=None
        if af_summary is None or not af_summary.n_autofocus
        else af_summary.mean_images,
        n_autofocus=0 if af_summary is None else af_summary.n_autofocus,
        n_autofocus_failed=0 if af_summary is None else af_summary.n_failed,
        flag_precision=precision,
        flag_recall=recall,
        flag_counts=counts,
        frames=n_frames,
        frames_per_s=n_frames / acq_s if acq_s > 0 else float("nan"),
        mean_score_ms=fs.mean_score_ms,
        scorer=str(scorer.model_version),
        calibration_path=None if cal_path is None else str(cal_path),
        calibrated_now=calibrated_now,
        dataset_path=dataset_path,
        plot_path=str(plot_path),
        json_path=str(json_path),
        elapsed_s=time.perf_counter() - t_start,
        errors=errors,
    )
    _plot(result, flags, truth, plot_path)
    from autofocus.reporting import write_json

    write_json(json_path, {"demo": asdict(result)})
    return result


# ------------------------------------------------------------------ output
def _plot(
    result: DemoResult,
    flags: dict[tuple[int, int, int], Any],
    truth: dict[tuple[int, int, int], dict[str, Any]],
    path: Path,
) -> Path:
    """Focus error (DOF) over time per position, with and without autofocus; flags marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from autofocus.io import atomic_path

    dof = result.dof_um
    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.axhspan(-0.25, 0.25, color="green", alpha=0.12, label="within DOF/4")
    positions = sorted({r.position for r in result.rows})
    for p in positions:
        rr = [r for r in result.rows if r.position == p]
        t = [r.time_index for r in rr]
        (line,) = ax.plot(
            t,
            [r.error_um / dof for r in rr],
            "-o",
            ms=3,
            lw=1.2,
            label=f"pos {p}" + (" with autofocus" if result.n_autofocus else ""),
        )
        ax.plot(
            t,
            [r.error_no_af_um / dof for r in rr],
            "--",
            lw=1,
            color=line.get_color(),
            alpha=0.7,
            label=f"pos {p} without autofocus",
        )
    bad = [
        (k[0], truth[k]["dz_um"] / dof)
        for k, f in flags.items()
        if f is not None and f.out_of_focus and k in truth
    ]
    if bad:
        bt, bz = zip(*bad, strict=True)
        ax.plot(bt, bz, "x", color="red", ms=5, label="frames flagged out of focus")
    ax.set_xlabel("time point")
    ax.set_ylabel("stage z - true focus (DOF)")
    ax.set_title(
        f"{result.objective}, DOF {dof:.2f} um: {100 * result.in_focus_time_points:.0f}% of "
        f"time points within DOF/4" + ("" if result.n_autofocus else " (no autofocus)")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:+.{digits}f}"


def print_result(result: DemoResult, console: Any = None) -> None:
    """The table per time point and position, then the figures of merit."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    dof = result.dof_um
    table = Table(title=f"focus error per time point and position (DOF {dof:.2f} um)")
    for col in (
        "t",
        "pos",
        "no AF um",
        "no AF DOF",
        "before AF um",
        "after AF um",
        "after AF DOF",
        "images",
        "flagged",
    ):
        table.add_column(col, justify="right")
    for r in result.rows:
        table.add_row(
            str(r.time_index),
            str(r.position),
            _fmt(r.error_no_af_um),
            _fmt(r.error_no_af_um / dof),
            _fmt(r.error_before_um),
            _fmt(r.error_um),
            _fmt(r.error_um / dof),
            "-" if r.images_used is None else str(r.images_used),
            f"{r.frames_flagged}/{r.frames}",
        )
    console.print(table)
    pct = 100 * result.in_focus_time_points
    pct_no = 100 * result.in_focus_time_points_no_af
    lines = [
        f"time points with every position within DOF/4: {pct:.1f}% "
        f"(without autofocus: {pct_no:.1f}%)",
    ]
    if result.mean_images_per_autofocus is not None:
        lines.append(
            f"autofocus: {result.n_autofocus} searches, "
            f"{result.mean_images_per_autofocus:.2f} images each on average, "
            f"{result.n_autofocus_failed} failed"
        )
    prec, rec = result.flag_precision, result.flag_recall
    lines.append(
        "flags (out of focus = |dz| > DOF): precision "
        + ("-" if prec is None else f"{prec:.3f}")
        + ", recall "
        + ("-" if rec is None else f"{rec:.3f}")
        + f" {result.flag_counts}"
    )
    lines.append(
        f"{result.frames} frames at {result.frames_per_s:.1f} frames/s, scoring "
        f"{result.mean_score_ms:.1f} ms/frame; total {result.elapsed_s:.1f} s"
    )
    lines.append(f"dataset: {result.dataset_path}")
    lines.append(f"plot: {result.plot_path}   report: {result.json_path}")
    for e in result.errors:
        lines.append(f"[red]error: {e}[/]")
    for line in lines:
        console.print(line)


# ------------------------------------------------------------------ flagging throughput
def flagging_rate(
    *,
    frame_px: int = 512,
    frames: int = 100,
    exposure_ms: float = 10.0,
    scorer: Any = None,
    specimen: str = "nuclei",
    seed: int = 0,
    max_lag_s: float | None = None,
) -> dict[str, float]:
    """Acquisition rate (frames/s) of a Python-backend timelapse without and with the
    flagging hook, measured in one run on the virtual microscope.

    Events get distinct ``min_start_time`` values in the past, so every frame is a
    separate snap (no camera sequence).  ``max_lag_s`` is the flagging hook's keep-up
    setting (``None``: score every frame, whatever it costs).  Returns both rates, their
    ratio, the mean scoring time and how many frames were scored.
    """
    from pycromanager import Acquisition, multi_d_acquisition_events

    from hooks.pycromanager import FlaggingHook
    from simulators.core import virtual_microscope

    if scorer is None:
        from autofocus.scorer import LocalScorer

        scorer = LocalScorer()
    obj = get_objective("10X")
    out: dict[str, float] = {"frame_px": float(frame_px), "frames": float(frames)}
    with virtual_microscope(
        specimen=specimen,
        seed=seed,
        objective=obj.name,
        sensor_shape=(frame_px, frame_px),
        camera={"exposure_ms": exposure_ms},
    ) as core:
        del core
        for label in ("without", "with"):
            events = multi_d_acquisition_events(num_time_points=frames)
            for e in events:
                e["min_start_time"] = 1e-3 * e["axes"]["time"]
            flag = FlaggingHook(scorer, obj, max_lag_s=max_lag_s) if label == "with" else None
            kw = {} if flag is None else {"image_process_fn": flag}
            t0 = time.perf_counter()
            with Acquisition(directory=None, show_display=False, **kw) as acq:
                acq.acquire(events)
            out[f"rate_{label}_fps"] = frames / (time.perf_counter() - t0)
            if flag is not None:
                out["mean_score_ms"] = flag.summary().mean_score_ms
                out["busy_fraction"] = flag.summary().busy_fraction
                out["frames_scored"] = float(flag.summary().frames_scored)
    out["ratio"] = out["rate_with_fps"] / out["rate_without_fps"]
    return out
