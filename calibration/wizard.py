"""The calibration flow behind ``autofocus calibrate``.

:func:`calibrate` = confirm large moves -> :func:`~calibration.acquire.acquire_samples`
(progress, stage returned to start) -> sample gates -> Moffat fit -> fit gates ->
:class:`~calibration.store.Calibration`.  :func:`save_calibration` writes the JSON and a
PNG plot (samples with their spread, fitted curve, FWHM) beside it, both atomically.
:func:`open_microscope` builds the :class:`~autofocus.microscope.Microscope` for the
chosen backend (simulator, a pymmcore-plus config, or a running Micro-Manager through
Pycro-Manager).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autofocus.errors import CalibrationError, InvalidInputError
from autofocus.io import atomic_path
from autofocus.microscope import CoreMicroscope, Microscope
from autofocus.optics import Objective
from calibration.acquire import acquire_samples, stack_offsets_um
from calibration.fit import fit_blur_curve
from calibration.quality import QualityThresholds, check_fit, check_samples
from calibration.store import (
    Calibration,
    CalibrationStore,
    FitReport,
    now_utc,
    scorer_identity,
)

__all__ = ["calibrate", "open_microscope", "plot_calibration", "save_calibration"]

logger = logging.getLogger(__name__)

Backend = Literal["simulator", "pymmcore", "pycromanager"]


def calibrate(
    microscope: Microscope,
    scorer: Any,
    objective: Objective,
    *,
    microscope_name: str = "default",
    range_um: float | None = None,
    step_um: float | None = None,
    settle_ms: float = 0.0,
    confirm: Callable[[str], bool] | None = None,
    max_move_um: float = 50.0,
    progress: Callable[[int, int], None] | None = None,
    thresholds: QualityThresholds | None = None,
) -> Calibration:
    """Acquire, score, gate and fit one calibration stack (nothing is written).

    ``confirm(question) -> bool`` is asked before a stack whose farthest slice is more
    than ``max_move_um`` from the start; ``None`` (scripted use, ``--yes``) skips it.
    Raises :class:`CalibrationError` for a failed gate or a declined move.
    """
    offsets = stack_offsets_um(objective, range_um, step_um)
    far = float(np.abs(offsets).max())
    if confirm is not None and far > max_move_um:
        z0 = microscope.get_z_um()
        question = (
            f"The calibration moves the focus drive up to {far:.0f} um away from {z0:.1f} um "
            f"({offsets.size} slices). Is the objective clear of the sample over that range?"
        )
        if not confirm(question):
            raise CalibrationError("calibration cancelled before moving the stage")
    z0, samples = acquire_samples(
        microscope, scorer, objective, offsets, settle_ms=settle_ms, progress=progress
    )
    dz, b = check_samples(samples, thresholds)
    by_dz = {s.dz_um: s for s in samples}
    sig = np.array([max(by_dz[d].spread_px or 0.0, 0.0) for d in dz])
    sigma = np.sqrt(sig**2 + max(float(np.median(sig)), 0.1) ** 2) if sig.size else None
    fit = fit_blur_curve(dz, b, sigma_px=sigma)
    check_fit(fit, dz, thresholds)
    return Calibration(
        microscope=microscope_name,
        objective=objective,
        curve=fit.curve,
        fit=FitReport(
            centre_um=fit.centre_um,
            focus_z_um=z0 + fit.centre_um,
            fwhm_um=fit.fwhm_um,
            amplitude_px=fit.amplitude_px,
            baseline_px=fit.baseline_px,
            r2=fit.r2,
            residual_rms_px=fit.residual_rms_px,
            residuals_px=list(fit.residuals_px),
        ),
        samples=samples,
        scorer=scorer_identity(scorer),
        created_utc=now_utc(),
        settle_ms=settle_ms,
    )


def plot_calibration(cal: Calibration, path: str | Path) -> Path:
    """PNG: samples (dz relative to the fitted focus) with spread bars, curve, FWHM."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    c = cal.fit.centre_um
    pts = [(s.dz_um - c, s.b_px, s.spread_px or 0.0) for s in cal.samples if s.b_px is not None]
    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    if pts:
        x, y, e = (np.array(v) for v in zip(*pts, strict=True))
        ax.errorbar(x, y, yerr=e, fmt="o", ms=3, lw=0.8, label="samples (median +/- MAD)")
        xx = np.linspace(x.min(), x.max(), 400)
        ax.plot(xx, cal.curve(xx), "-", lw=1.5, label="inverted Moffat fit")
    half = cal.curve.fwhm_um / 2
    lvl = cal.curve.min_px + cal.curve.amplitude_px / 2
    ax.plot([-half, half], [lvl, lvl], "k--", lw=1, label=f"FWHM {cal.curve.fwhm_um:.1f} um")
    ax.set_xlabel("dz from fitted focus (um)")
    ax.set_ylabel("blur score b (px)")
    ax.set_title(
        f"{cal.microscope} / {cal.objective.name}: R^2 {cal.fit.r2:.4f}, "
        f"residual {cal.fit.residual_rms_px:.2f} px"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def save_calibration(cal: Calibration, store: CalibrationStore) -> tuple[Path, Path]:
    """Write the JSON (atomic) and the PNG plot beside it; returns both paths."""
    json_path = store.save(cal)
    png_path = plot_calibration(cal, json_path.with_suffix(".png"))
    return json_path, png_path


@contextlib.contextmanager
def open_microscope(
    backend: Backend,
    objective: Objective,
    *,
    config_path: str | Path | None = None,
    z_limits_um: tuple[float, float] | None = None,
    settle_ms: float = 0.0,
    simulator_options: dict[str, Any] | None = None,
) -> Iterator[Microscope]:
    """A :class:`Microscope` for ``backend``; cleaned up on exit.

    * ``simulator``: the demo-config virtual microscope with a calibration slide; the
      stage starts a little off focus (``simulator_options`` go to
      ``simulators.core.create_demo_core``).
    * ``pymmcore``: a pymmcore-plus core loaded from ``config_path``.
    * ``pycromanager``: the Micro-Manager instance Pycro-Manager connects to.
    """
    if backend == "simulator":
        from simulators.core import create_demo_core, unload

        opts: dict[str, Any] = {
            "specimen": "calibration_slide",
            "objective": objective.name,
            "objectives": {objective.name: objective},
            "sensor_shape": (512, 512),
            "seed": 0,
        }
        opts.update(simulator_options or {})
        core: Any = create_demo_core(**opts)
        try:
            scope = CoreMicroscope(core, z_limits_um, settle_ms, objective=objective)
            yield scope
        finally:
            unload(core)
    elif backend == "pymmcore":
        if config_path is None:
            raise InvalidInputError("the pymmcore backend needs --config (a .cfg file)")
        from pymmcore_plus import CMMCorePlus

        core = CMMCorePlus()
        core.loadSystemConfiguration(str(config_path))
        try:
            yield CoreMicroscope(core, z_limits_um, settle_ms, objective=objective)
        finally:
            core.unloadAllDevices()
    elif backend == "pycromanager":
        from pycromanager import Core

        yield CoreMicroscope(Core(), z_limits_um, settle_ms, objective=objective)
    else:
        raise InvalidInputError(f"unknown backend {backend!r}")
