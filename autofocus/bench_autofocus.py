"""``autofocus bench autofocus``: the few-image search against Micro-Manager's methods.

Setup per objective: one calibration through the real wizard path
(:func:`calibration.wizard.calibrate` on the simulator's calibration slide).  Then
``trials`` autofocus trials per (objective, specimen): a specimen seed and XY position,
a true focus ``z_true``, and a start ``z_true + u * max_offset_dof * DOF`` (``u``
uniform in [-1, 1]).  Frames are rendered on demand (``simulators.render.render_field``
+ ``CameraModel.expose`` with shot and read noise) with a noise seed derived from
(seed, trial, z), so every method sees the *identical* frame at an identical z.

Methods (all given the same frames):

* ``search``: :func:`autofocus.search.find_focus` with the default
  :class:`~autofocus.search.SearchConfig` (the product);
* ``brent-mm``: :func:`autofocus.baselines.brent_focus` with Micro-Manager's
  OughtaFocus defaults (range 10 um, tolerance 1 um) on ``metric``;
* ``brent-wide``: the same over ``+/- max_offset_dof`` DOF, tolerance DOF/8;
* ``zstack``: :func:`autofocus.baselines.zstack_focus` over ``+/- max_offset_dof`` DOF
  in steps of 1 DOF with a Gaussian peak fit.

Fields with no structure: a trial whose noise-free field never varies by more than
``STRUCTURE_SNR_MIN`` (0.1) of one pixel's shot noise, in any 64 px tile at any of
dz = 0, +/-1, +/-3 DOF (``structure_snr``: max over those tiles and dz of
``SD(lambda) / sqrt(mean(lambda))``, lambda the expected electrons per pixel), gives
nothing to focus on: e.g. a phase field at 40X that holds no cell.  Such trials are
run like the others but left out of every figure below; the summary counts them
(``n_empty``) and, per method, the fraction of them in which the stage was left where it
started (``empty_kept_start``: the right answer, "undetermined, no move").
``success_all`` is the success rate over all trials, empty ones counted as failures.
Replay trials always count as structured.

Search rows also carry ``sharpest_b_px``: the lowest b the search imaged (None when no
image had texture), so a search that finished without an image near focus shows.

Per method: images used, mean and p95 |error| (um and DOF), success rate
(|error| < DOF/4), capture range (largest start offset, in DOF, up to which every
1-DOF bin of |offset| succeeds in >= 90 % of trials), and compute time per autofocus
excluding camera and stage: search logic + scoring (or metric) of its frames.  Scores
of a frame are cached per (trial, z) with the time it took to compute them, and that
time is charged to every method that uses the frame.  Also "error versus number of
images" (DeepFocus Fig. 4): the search forced to exactly N images and Brent limited to
N images, for N in ``budgets``.

``workers > 1`` runs trials in that many spawned processes, each with its own
``LocalScorer(weights_dir)`` and ``threads`` torch threads (a ``scorer`` argument is then
used for the calibration only).  Compute times are per autofocus in whichever process
ran it.

Replay mode (``replay``): the frames come from a recorded :class:`simulators.replay.ZStack`
with a known true focus (nearest plane to each requested z); starts are drawn inside
the stack.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import InvalidInputError
from autofocus.optics import Objective, get_objective
from autofocus.score import measure_blur

__all__ = ["BenchSettings", "run_autofocus_benchmark"]

logger = logging.getLogger(__name__)

SUCCESS_DOF = 0.25
STRUCTURE_SNR_MIN = 0.1
STRUCTURE_DZ_DOF = (0.0, -1.0, 1.0, -3.0, 3.0)
STRUCTURE_BLOCK_PX = 64


@dataclass(frozen=True)
class BenchSettings:
    objectives: tuple[str, ...] = ("10x-0.3-air", "40X")
    specimens: tuple[str, ...] = ("tissue", "nuclei", "beads", "phase")
    trials: int = 25
    size: int = 512
    max_offset_dof: float = 10.0
    seed: int = 0
    exposure_ms: float = 10.0
    metric: str = "tenengrad"
    budgets: tuple[int, ...] = (3, 4, 5, 6, 8)
    weights_dir: str | None = None
    threads: int = 2
    workers: int = 1

    def __post_init__(self) -> None:
        """Unknown names or empty lists fail here, before any calibration runs."""
        from autofocus.metrics import get_metric
        from simulators.specimens import make_specimen

        if not self.objectives or not self.specimens:
            raise InvalidInputError("give at least one objective and one specimen")
        for name in self.objectives:
            get_objective(name)
        for name in self.specimens:
            make_specimen(name)
        get_metric(self.metric)


@dataclass
class _Trial:
    frame: Callable[[float], np.ndarray]
    z_true: float
    z_start: float
    limits: tuple[float, float]
    structure_snr: float = math.inf
    scores: dict[float, tuple[Any, float]] = field(default_factory=dict)
    metrics: dict[float, tuple[float, float]] = field(default_factory=dict)


def _scored(trial: _Trial, scorer: Any, obj: Objective, z: float) -> tuple[Any, float]:
    key = round(z, 6)
    if key not in trial.scores:
        f = trial.frame(z)
        t0 = time.perf_counter()
        s = measure_blur(scorer, f, obj, with_patches=True)
        trial.scores[key] = (s, time.perf_counter() - t0)
    return trial.scores[key]


def _metric(trial: _Trial, fn: Callable[[np.ndarray], float], z: float) -> tuple[float, float]:
    key = round(z, 6)
    if key not in trial.metrics:
        f = trial.frame(z)
        t0 = time.perf_counter()
        v = float(fn(f))
        trial.metrics[key] = (v, time.perf_counter() - t0)
    return trial.metrics[key]


def _run_methods(
    trial: _Trial,
    scorer: Any,
    obj: Objective,
    calibration: Any,
    metric_fn: Callable[[np.ndarray], float],
    max_offset_dof: float,
    budgets: Sequence[int],
) -> dict[str, dict[str, float]]:
    from autofocus.baselines import brent_focus, zstack_focus
    from autofocus.search import SearchConfig, find_focus

    dof = obj.dof_um
    out: dict[str, dict[str, float]] = {}

    def search(cfg: SearchConfig) -> dict[str, Any]:
        spent = [0.0]

        def measure(z: float) -> Any:
            s, dt = _scored(trial, scorer, obj, z)
            spent[0] += dt
            return s

        r = find_focus(measure, trial.z_start, calibration, cfg)
        bs = [b for _, b in r.trace if math.isfinite(b)]
        return {
            "error_um": r.z_um - trial.z_true,
            "moved_um": r.z_um - trial.z_start,
            "images": r.images_used,
            "compute_s": r.compute_s + spent[0],
            "status": r.status,
            "sharpest_b_px": min(bs) if bs else None,
        }

    def classic(kind: str, **kw: Any) -> dict[str, Any]:
        spent = [0.0]

        def measure(z: float) -> float:
            v, dt = _metric(trial, metric_fn, z)
            spent[0] += dt
            return v

        fn = brent_focus if kind == "brent" else zstack_focus
        r = fn(measure, trial.z_start, z_limits_um=trial.limits, **kw)
        return {
            "error_um": r.z_um - trial.z_true,
            "moved_um": r.z_um - trial.z_start,
            "images": r.images_used,
            "compute_s": r.compute_s + spent[0],
        }

    base = SearchConfig(z_limits_um=trial.limits, on_failure="warn")
    out["search"] = search(base)
    out["brent-mm"] = classic("brent", search_range_um=10.0, tolerance_um=1.0)
    wide = 2 * max_offset_dof * dof
    out["brent-wide"] = classic("brent", search_range_um=wide, tolerance_um=dof / 8)
    out["zstack"] = classic("zstack", search_range_um=wide, step_um=dof)
    for n in budgets:
        cfg = base.model_copy(update={"min_images": n, "max_images": n})
        cfg = SearchConfig.model_validate(cfg.model_dump())
        out[f"search@{n}"] = search(cfg)
        out[f"brent@{n}"] = classic(
            "brent", search_range_um=wide, tolerance_um=dof / 50, max_images=n
        )
    return out


def _summary(rows: list[dict[str, Any]], dof_of: dict[str, float]) -> dict[str, dict[str, float]]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    out = {}
    for m, rs_all in by_method.items():
        rs = [r for r in rs_all if r.get("has_structure", True)]
        empty = [r for r in rs_all if not r.get("has_structure", True)]
        ok_all = [
            r.get("has_structure", True)
            and abs(r["error_um"]) / dof_of[r["objective"]] < SUCCESS_DOF
            for r in rs_all
        ]
        kept = [abs(r.get("moved_um", math.nan)) < 1e-6 for r in empty]
        extra = {
            "n_empty": len(empty),
            "empty_kept_start": float(np.mean(kept)) if kept else None,
            "success_all": float(np.mean(ok_all)),
        }
        if not rs:
            out[m] = {"n": 0, **extra}
            continue
        err = np.array([abs(r["error_um"]) for r in rs])
        dofs = np.array([dof_of[r["objective"]] for r in rs])
        err_dof = err / dofs
        off = np.array([abs(r["offset_dof"]) for r in rs])
        ok = err_dof < SUCCESS_DOF
        cap = 0.0
        for edge in range(1, math.ceil(off.max() if off.size else 0) + 1):
            sel = (off >= edge - 1) & (off < edge)
            if sel.any() and ok[sel].mean() < 0.9:
                break
            cap = float(edge)
        out[m] = {
            "n": len(rs),
            "images_mean": float(np.mean([r["images"] for r in rs])),
            "mean_err_um": float(err.mean()),
            "p95_err_um": float(np.percentile(err, 95)),
            "mean_err_dof": float(err_dof.mean()),
            "p95_err_dof": float(np.percentile(err_dof, 95)),
            "success": float(ok.mean()),
            "capture_range_dof": cap,
            "compute_ms": float(np.mean([r["compute_s"] for r in rs]) * 1e3),
            **extra,
        }
    return out


def _block_snr(lam: np.ndarray, block: int) -> float:
    """Max over ``block`` x ``block`` tiles of ``SD(lambda) / sqrt(mean(lambda))``."""
    h, w = lam.shape
    bh, bw = max(1, h // block), max(1, w // block)
    th, tw = h // bh, w // bw
    tiles = lam[: bh * th, : bw * tw].reshape(bh, th, bw, tw)
    mean = tiles.mean(axis=(1, 3))
    sd = tiles.std(axis=(1, 3))
    ok = mean > 0
    return float((sd[ok] / np.sqrt(mean[ok])).max()) if ok.any() else 0.0


def structure_snr(
    specimen: Any, obj: Objective, x_um: float, y_um: float, size: int, camera: Any
) -> float:
    """Max over ``STRUCTURE_DZ_DOF`` and over 64 px tiles of the noise-free field's SD
    in units of one pixel's shot noise (``SD(lambda) / sqrt(mean(lambda))``); 0 for a
    blank field.  Per tile, so that a small object in a large field still counts."""
    from simulators.render import render_field

    best = 0.0
    for d in STRUCTURE_DZ_DOF:
        sig = render_field(specimen, obj, d * obj.dof_um, x_um, y_um, (size, size))
        best = max(best, _block_snr(camera.mean_electrons(sig), STRUCTURE_BLOCK_PX))
    return best


def _sim_trial(
    obj: Objective, specimen: str, s: BenchSettings, spec_idx: int, t: int
) -> tuple[_Trial, float]:
    """Trial ``t`` of a specimen: deterministic from (seed, specimen index, t)."""
    from simulators.camera import CameraModel
    from simulators.render import render_field
    from simulators.specimens import make_specimen

    dof = obj.dof_um
    rng = np.random.default_rng([s.seed, spec_idx, t])
    cam = CameraModel(exposure_ms=s.exposure_ms)
    spec = make_specimen(specimen, seed=s.seed * 1000 + t)
    x, y = rng.uniform(-2000, 2000, 2)
    z_true = float(rng.uniform(-20, 20))
    u = float(rng.uniform(-1, 1))
    z_start = z_true + u * s.max_offset_dof * dof
    key = (s.seed, spec_idx, t)

    def frame(z: float) -> np.ndarray:
        sig = render_field(spec, obj, z - z_true, x, y, (s.size, s.size))
        r = np.random.default_rng([*key, round(z * 1e4) & 0xFFFFFFFF])
        return cam.expose(sig, r)

    snr = structure_snr(spec, obj, x, y, s.size, cam)
    return _Trial(frame, z_true, z_start, (-1000.0, 1000.0), snr), u * s.max_offset_dof


_WORKER: dict[str, Any] = {}


def _worker_init(weights_dir: str | None, threads: int) -> None:
    import torch

    from autofocus.scorer import LocalScorer

    torch.set_num_threads(threads)
    _WORKER["scorer"] = LocalScorer(weights_dir=weights_dir)


def _sim_job(
    job: tuple[str, str, int, int], s: BenchSettings, cal: Any, scorer: Any = None
) -> list[dict[str, Any]]:
    from autofocus.metrics import get_metric

    oname, sp, spec_idx, t = job
    obj = get_objective(oname)
    trial, off = _sim_trial(obj, sp, s, spec_idx, t)
    sc = scorer if scorer is not None else _WORKER["scorer"]
    res = _run_methods(trial, sc, obj, cal, get_metric(s.metric), s.max_offset_dof, s.budgets)
    info = {
        "objective": obj.name,
        "specimen": sp,
        "trial": t,
        "offset_dof": off,
        "structure_snr": trial.structure_snr,
        "has_structure": trial.structure_snr >= STRUCTURE_SNR_MIN,
    }
    return [{**info, "method": m, **r} for m, r in res.items()]


def _replay_trials(stack: Any, s: BenchSettings) -> list[tuple[_Trial, float]]:
    if stack.true_focus_um is None:
        raise InvalidInputError("replay needs the stack's true focus (--true-focus-um)")
    lo, hi = stack.z_range_um
    rng = np.random.default_rng(s.seed)
    trials = []
    for _ in range(s.trials):
        z0 = float(rng.uniform(lo, hi))
        trials.append(
            (
                _Trial(lambda z: stack.plane_at(z), float(stack.true_focus_um), z0, (lo, hi)),
                z0 - float(stack.true_focus_um),
            )
        )
    return trials


def _calibrate(obj: Objective, scorer: Any, size: int) -> Any:
    from calibration.wizard import calibrate, open_microscope

    with open_microscope(
        "simulator",
        obj,
        simulator_options={"sensor_shape": (size, size), "focus_z_um": 0.0},
    ) as scope:
        scope.set_z_um(0.3 * obj.dof_um)
        return calibrate(scope, scorer, obj)


def run_autofocus_benchmark(
    output_dir: str | Path,
    settings: BenchSettings | None = None,
    *,
    scorer: Any = None,
    replay: Any = None,
    replay_objective: str | Objective | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; writes ``autofocus.json``, ``autofocus.md`` and
    ``autofocus_images.png`` into ``output_dir`` and returns the JSON payload."""
    from autofocus.metrics import get_metric
    from autofocus.reporting import markdown_table, write_json

    s = settings or BenchSettings()
    out = Path(output_dir)
    if scorer is None:
        import torch

        from autofocus.scorer import LocalScorer

        torch.set_num_threads(s.threads)
        scorer = LocalScorer(weights_dir=s.weights_dir)
    metric_fn = get_metric(s.metric)
    rows: list[dict[str, Any]] = []
    calibrations: dict[str, Any] = {}
    say = progress or (lambda msg: logger.info("%s", msg))
    objectives = [replay_objective] if replay is not None else list(s.objectives)
    dof_of = {}
    for oname in objectives:
        if oname is None:
            raise InvalidInputError("replay needs --objective")
        obj = get_objective(oname)
        dof_of[obj.name] = obj.dof_um
        t0 = time.perf_counter()
        cal = _calibrate(obj, scorer, s.size)
        calibrations[obj.name] = {
            "fwhm_um": cal.fit.fwhm_um,
            "r2": cal.fit.r2,
            "residual_rms_px": cal.fit.residual_rms_px,
            "curve": cal.curve.model_dump(),
            "seconds": time.perf_counter() - t0,
        }
        say(f"calibrated {obj.name}: FWHM {cal.fit.fwhm_um:.1f} um, R^2 {cal.fit.r2:.4f}")
        if replay is not None:
            for t, (trial, off) in enumerate(_replay_trials(replay, s)):
                res = _run_methods(trial, scorer, obj, cal, metric_fn, s.max_offset_dof, s.budgets)
                rows += [
                    {
                        "objective": obj.name,
                        "specimen": "replay",
                        "trial": t,
                        "offset_dof": off / obj.dof_um,
                        "method": m,
                        **r,
                    }
                    for m, r in res.items()
                ]
            continue
        jobs = [(obj.name, sp, i, t) for i, sp in enumerate(s.specimens) for t in range(s.trials)]
        if s.workers <= 1:
            for n, job in enumerate(jobs):
                rows += _sim_job(job, s, cal, scorer)
                if (n + 1) % max(1, s.trials) == 0:
                    say(f"{obj.name}: {n + 1}/{len(jobs)} trials done")
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(
                s.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_worker_init,
                initargs=(s.weights_dir, s.threads),
            ) as pool:
                futs = [pool.submit(_sim_job, job, s, cal) for job in jobs]
                for n, f in enumerate(futs):
                    rows += f.result()
                    if (n + 1) % max(1, s.trials) == 0:
                        say(f"{obj.name}: {n + 1}/{len(jobs)} trials done")
    summary = _summary(rows, dof_of)
    per_objective = {o: _summary([r for r in rows if r["objective"] == o], dof_of) for o in dof_of}
    payload = {
        "settings": s.__dict__,
        "scorer": getattr(scorer, "model_version", "?"),
        "calibrations": calibrations,
        "summary": summary,
        "per_objective": per_objective,
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "autofocus.json", payload)
    cols = [
        "method",
        "images",
        "mean |err| um",
        "p95 um",
        "mean DOF",
        "p95 DOF",
        "success",
        "capture DOF",
        "compute ms",
    ]
    md = []
    for o, summ in per_objective.items():
        md.append(f"### {o} (DOF {dof_of[o]:.2f} um)\n")
        md.append(markdown_table(cols, _table_rows(summ)))
        md.append(_empty_note(summ))
    from autofocus.io import atomic_write_text

    atomic_write_text(out / "autofocus.md", "\n".join(md))
    _plot(per_objective, s.budgets, out / "autofocus_images.png")
    return payload


_TABLE_KEYS = (
    "images_mean",
    "mean_err_um",
    "p95_err_um",
    "mean_err_dof",
    "p95_err_dof",
    "success",
    "capture_range_dof",
    "compute_ms",
)


def _table_rows(summ: dict[str, dict[str, float]]) -> list[list[Any]]:
    return [[m, *(v.get(k, math.nan) for k in _TABLE_KEYS)] for m, v in summ.items()]


def _empty_note(summ: dict[str, dict[str, float]]) -> str:
    """One line on the trials left out for having no structure (empty if none)."""
    s = summ.get("search")
    if not s or not s["n_empty"]:
        return ""
    return (
        f"{s['n_empty']} trial(s) had no structure (noise-free SD < {STRUCTURE_SNR_MIN} x "
        f"shot noise in every {STRUCTURE_BLOCK_PX} px tile at every z) and are left out "
        f"above; search left the stage at its start in {s['empty_kept_start']:.0%} of them. "
        f"Success over all {s['n'] + s['n_empty']} trials, empty ones as failures: "
        f"{s['success_all']:.1%}.\n"
    )


def _plot(
    per_obj: dict[str, dict[str, dict[str, float]]], budgets: Sequence[int], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from autofocus.io import atomic_path

    fig = Figure(figsize=(5 * max(1, len(per_obj)), 4), dpi=110)
    for i, (o, summ) in enumerate(per_obj.items()):
        ax = fig.add_subplot(1, max(1, len(per_obj)), i + 1)
        for prefix, label in (
            ("search", "search (this project)"),
            ("brent", "Brent (OughtaFocus)"),
        ):
            n = [b for b in budgets if f"{prefix}@{b}" in summ]
            e = [summ[f"{prefix}@{b}"].get("mean_err_um", math.nan) for b in n]
            p = [summ[f"{prefix}@{b}"].get("p95_err_um", math.nan) for b in n]
            ax.plot(n, e, "o-", label=f"{label} mean")
            ax.plot(n, p, "x--", label=f"{label} p95", alpha=0.6)
        ax.set_yscale("log")
        ax.set_xlabel("images used")
        ax.set_ylabel("|error| (um)")
        ax.set_title(o)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
