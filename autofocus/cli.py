"""The ``autofocus`` command line.  It only parses arguments and calls library code.

``main(argv)`` is the entry point (console script and tests); it returns the exit code:
0 success, 1 a failed check (e.g. a quality gate), 2 bad input or a project error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from autofocus.errors import AutofocusError
from autofocus.io import check_writable
from autofocus.optics import OBJECTIVE_PRESETS
from autofocus.service.protocol import check_endpoint

_OBJECTIVE_FORMS = (
    f"a preset ({', '.join(OBJECTIVE_PRESETS)}), Objective fields "
    "(name=my60x,magnification=60,na=1.42,immersion_index=1.515,camera_pixel_size_um=6.5,"
    "wavelength_um=0.52,binning=1) or a JSON file of them"
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Acquisition-time autofocus and focus-quality flagging for Micro-Manager.",
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(no_args_is_help=True, help="Opt-in benchmarks (print a table, write JSON).")
app.add_typer(bench_app, name="bench")

log = logging.getLogger("autofocus")


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v INFO, -vv DEBUG")
    ] = 0,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    _configure_logging(level)


_HANDLER_NAME = "autofocus-cli"


def _configure_logging(level: int) -> None:
    """One stderr handler on the root logger, filtering at ``level`` itself: libraries
    such as pymmcore-plus lower the root logger's level to DEBUG when imported, so the
    handler's level is what keeps their debug output off the terminal."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    handler.setLevel(level)
    root.setLevel(min(root.level or logging.WARNING, level))


def _at_least(level: int) -> None:
    """Let records of ``level`` through (e.g. the INFO summaries of serve and train)."""
    root = logging.getLogger()
    for h in root.handlers:
        if h.get_name() == _HANDLER_NAME and h.level > level:
            h.setLevel(level)
    if root.level > level:
        root.setLevel(level)


@app.command()
def simulate(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="OME-TIFF (.ome.tif) or TIFF path")
    ],
    specimen: Annotated[
        str,
        typer.Option(
            help="nuclei, beads, microtubules, actin, tissue, calibration_slide, phase or empty"
        ),
    ] = "nuclei",
    objective: Annotated[str, typer.Option(help="objective preset")] = "10X",
    z_range_um: Annotated[
        float | None,
        typer.Option(help="half-range of the series in um around focus [default: 5 DOF]"),
    ] = None,
    slices: Annotated[int, typer.Option(min=1, max=401, help="number of z slices")] = 21,
    size: Annotated[int, typer.Option(min=32, max=4096, help="frame size in px")] = 512,
    seed: Annotated[int, typer.Option(help="specimen and noise seed")] = 0,
    exposure_ms: Annotated[
        float, typer.Option(min=0.001, max=3_600_000, help="camera exposure")
    ] = 10.0,
    spherical_waves: Annotated[
        float, typer.Option(help="Z11 spherical aberration (waves RMS)")
    ] = 0.0,
    montage: Annotated[
        Path | None, typer.Option(help="PNG montage path [default: beside the TIFF]")
    ] = None,
) -> None:
    """Render a through-focus series of a specimen to a TIFF plus a labelled PNG montage."""
    import numpy as np
    from rich.progress import Progress

    from autofocus.optics import get_objective
    from simulators.camera import CameraModel
    from simulators.export import montage_png, write_series
    from simulators.psf import Aberrations
    from simulators.series import render_series
    from simulators.specimens import make_specimen

    obj = get_objective(objective)
    spec = make_specimen(specimen, seed=seed)
    half = 5 * obj.dof_um if z_range_um is None else z_range_um
    if not np.isfinite(half) or half < 0 or (half == 0 and slices > 1):
        raise typer.BadParameter(
            "--z-range-um must be > 0 (or 0 with --slices 1)", param_hint="--z-range-um"
        )
    png = montage or output.with_name(_series_stem(output) + "_montage.png")
    if png.expanduser().resolve() == output.expanduser().resolve():
        raise typer.BadParameter("the montage must not replace the TIFF", param_hint="--montage")
    if png.suffix.lower() != ".png":
        raise typer.BadParameter(f"the montage is a PNG: {png}", param_hint="--montage")
    check_writable(output)
    check_writable(png)
    dz = np.linspace(-half, half, slices) if slices > 1 else np.zeros(1)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"rendering {spec.name} at {obj.name}", total=dz.size)
        series = render_series(
            spec,
            obj,
            dz,
            shape=(size, size),
            camera=CameraModel(exposure_ms=exposure_ms),
            seed=seed,
            aberrations=Aberrations(spherical=spherical_waves),
            progress=lambda i, n: progress.update(task, completed=i),
        )
    tif = write_series(series, output)
    montage_png(series, png)
    typer.echo(f"wrote {tif} ({dz.size} slices, {size}x{size}, dz {dz[0]:+.1f}..{dz[-1]:+.1f} um)")
    typer.echo(f"wrote {png}")


def _series_stem(path: Path) -> str:
    """``x.ome.tif`` -> ``x``; ``run.1.tif`` -> ``run.1``."""
    name = path.name
    for ext in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


@bench_app.command("render")
def bench_render(
    output: Annotated[Path, typer.Option(help="JSON results path")] = Path(
        "bench-results/render.json"
    ),
    repeats: Annotated[int, typer.Option(min=1)] = 5,
) -> None:
    """Render time of 512x512 and 2048x2048 frames (specimen + PSF + camera noise)."""
    from simulators.bench import run_render_benchmark

    check_writable(output)
    run_render_benchmark(output, repeats=repeats)


def _int_list(flag: str, text: str | None) -> tuple[int, ...] | None:
    """``"24,48,96"`` -> ``(24, 48, 96)``; None stays None."""
    from autofocus.errors import InvalidInputError

    if text is None:
        return None
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise InvalidInputError(f"{flag} must be comma-separated integers, not {text!r}") from None


def _fill_range(text: str | None) -> tuple[float, float] | None:
    """``"0.6,0.8"`` -> ``(0.6, 0.8)``; ``"none"`` or None -> None (a point source)."""
    from autofocus.training.data import check_condenser_fill

    if text is None or text.strip().lower() == "none":
        return None
    return check_condenser_fill(_pair("--condenser-fill", text))


def _pair(flag: str, text: str | None) -> tuple[float, float] | None:
    """``"0.2,1.49"`` -> ``(0.2, 1.49)`` (the range itself is checked by the recipe)."""
    from autofocus.errors import InvalidInputError

    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInputError(
            f"{flag} must be two comma-separated numbers, not {text!r}"
        ) from None
    return lo, hi


def _names(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")`` (blanks dropped)."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="classifier or regressor")],
    output: Annotated[Path, typer.Option(help="folder for <model>.pt and <model>.json")] = Path(
        "autofocus/weights"
    ),
    seed: Annotated[int, typer.Option()] = 0,
    n_fields: Annotated[int | None, typer.Option(min=10, help="training fields to render")] = None,
    n_eval_fields: Annotated[int | None, typer.Option(min=10)] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="patches per batch [256]")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch threads")] = 2,
    workers: Annotated[int, typer.Option(min=1, help="rendering processes")] = 2,
    widths: Annotated[
        str | None, typer.Option(help="trunk channel widths, e.g. 24,48,96,128 [model default]")
    ] = None,
    hidden: Annotated[int | None, typer.Option(min=1, help="head hidden units")] = None,
    depths: Annotated[
        str | None, typer.Option(help="3x3 convolutions per block, e.g. 1,2,2 [one each]")
    ] = None,
    spectral_bins: Annotated[
        int | None, typer.Option(min=0, help="radial log-spectrum rings beside the trunk [0]")
    ] = None,
    specimens: Annotated[
        str | None,
        typer.Option(help="comma-separated training specimen types [the six named ones]"),
    ] = None,
    max_blur_px: Annotated[
        float | None,
        typer.Option(
            help="regressor: top of the blur range of the fields not drawn in 0-30 px [100]"
        ),
    ] = None,
    near_share: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="regressor: share of the fields drawn in 0-30 px blur [0.5]"
        ),
    ] = None,
    patch_px: Annotated[
        int | None,
        typer.Option(help="regressor: patch size, 128 or 256 (the whole training field) [128]"),
    ] = None,
    blur_ray: Annotated[
        str | None,
        typer.Option(
            help="regressor: the blur diameter b reads, 'marginal' (tan theta) or 'mean' "
            "(the mean-ray slope, as the classifier's levels) [marginal]"
        ),
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(help="classifier: train for one objective preset (classifier-<name>)"),
    ] = None,
    condenser_fill: Annotated[
        str | None,
        typer.Option(
            help="brightfield fields under Koehler illumination, condenser NA a fraction "
            "of the objective's drawn from lo,hi (e.g. 0.6,0.8) [a point source]"
        ),
    ] = None,
    na_range: Annotated[
        str | None, typer.Option(help="NA drawn for each field, lo,hi [0.2,1.35]")
    ] = None,
    sampling_range: Annotated[
        str | None,
        typer.Option(help="pixel size over lambda/(2 NA) drawn for each field, lo,hi [0.5,1.4]"),
    ] = None,
    immersion: Annotated[
        str | None,
        typer.Option(
            help="'by_na' (air below NA 0.95, water to 1.2, oil above) or 'mixed' (water, "
            "silicone, glycerol and oil at every NA they reach) [by_na]"
        ),
    ] = None,
    input_asinh: Annotated[
        bool,
        typer.Option(help="the trunk reads asinh of the normalised patch [off]"),
    ] = False,
    optics_input: Annotated[
        bool,
        typer.Option(
            help="tell the head the frame's optics (spot size in px, NA), "
            "hidden from 20 % of training patches [off]"
        ),
    ] = False,
) -> None:
    """Train a focus model on simulator data and write its weights and model card."""
    from dataclasses import replace

    from autofocus.errors import UnknownNameError
    from autofocus.registry import model_stem
    from autofocus.training.train import Recipe, default_command
    from autofocus.training.train import train as run_training

    if model not in ("classifier", "regressor"):
        raise UnknownNameError(f"unknown model {model!r}; choose classifier or regressor")
    recipe = Recipe(model=model, seed=seed, threads=threads, workers=workers)  # type: ignore[arg-type]
    width_list = _int_list("--widths", widths)
    depth_list = _int_list("--depths", depths)
    given = {
        "n_fields": n_fields,
        "n_eval_fields": n_eval_fields,
        "epochs": epochs,
        "batch_size": batch_size,
        "widths": width_list,
        "hidden": hidden,
        "depths": depth_list,
        "spectral_bins": spectral_bins,
        "specimens": _names(specimens) if specimens is not None else None,
        "max_blur_px": max_blur_px,
        "near_share": near_share,
        "patch_px": patch_px,
        "blur_ray": blur_ray,
        "objective": objective,
        "condenser_fill": _fill_range(condenser_fill),
        "na_range": _pair("--na-range", na_range),
        "sampling_range": _pair("--sampling-range", sampling_range),
        "immersion": immersion,
        "optics_input": optics_input or None,
        "input_asinh": input_asinh or None,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    recipe = replace(recipe, **changes)  # type: ignore[arg-type]
    _at_least(logging.INFO)
    card = run_training(recipe, output, command=default_command())
    typer.echo(json.dumps(card["evaluation"], indent=2))
    stem = model_stem(model, card["data"]["objective"])
    typer.echo(f"wrote {output / (stem + '.pt')} and {output / (stem + '.json')}")


@app.command()
def score(
    paths: Annotated[list[Path], typer.Argument(help="TIFF/PNG files or folders")],
    csv_path: Annotated[
        Path, typer.Option("--csv", help="output CSV, one row per image (per TIFF page)")
    ],
    overlays: Annotated[Path | None, typer.Option(help="folder for annotated PNG overlays")] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            help="objective (gives |dz| in um, and its optics to the models): " + _OBJECTIVE_FORMS
        ),
    ] = None,
) -> None:
    """Score images: defocus level, certainties, verdict, blur score b, 11 probabilities."""
    from rich.progress import Progress

    from autofocus.imageio import iter_image_paths
    from autofocus.optics import parse_objective
    from autofocus.scoring_cli import score_files

    obj = parse_objective(objective) if objective is not None else None
    check_writable(csv_path)
    if overlays is not None:
        check_writable(overlays, "dir")
    files = list(iter_image_paths(paths))
    with Progress(transient=True) as progress:
        task = progress.add_task("scoring", total=None)
        n = score_files(
            files,
            csv_path,
            objective=obj,
            overlays=overlays,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    images, nf = ("image" if n == 1 else "images"), len(files)
    typer.echo(f"scored {n} {images} from {nf} file{'' if nf == 1 else 's'} -> {csv_path}")


@app.command()
def evaluate(
    what: Annotated[str, typer.Argument(help="classifier, regressor or all")] = "all",
    output: Annotated[
        Path | None,
        typer.Option(
            help="folder for evaluation.md/json and PNGs [bench-results/evaluation; with "
            "--labelled: bench-results/evaluation-labelled]"
        ),
    ] = None,
    labelled: Annotated[
        Path | None, typer.Option(help="CSV of file,level or file,in_focus to evaluate instead")
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            help="objective of the labelled images, or the one every held-out "
            "classifier image is seen through [random objectives]: " + _OBJECTIVE_FORMS
        ),
    ] = None,
    n_images: Annotated[int, typer.Option(min=10, help="held-out synthetic images")] = 600,
    seeds_per_specimen: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[
        int,
        typer.Option(
            min=0,
            max=999,
            help="held-out stream: 0 is the reported set; use others as validation sets "
            "when choosing a rule, so the reported set stays unseen",
        ),
    ] = 0,
    weights: Annotated[
        Path | None, typer.Option(help="model weights folder [default: the shipped models]")
    ] = None,
    condenser_fill: Annotated[
        str,
        typer.Option(
            help="held-out brightfield images: Koehler illumination, condenser NA a fraction "
            "of the objective's drawn from lo,hi; none: a point source"
        ),
    ] = "0.6,0.8",
    untold: Annotated[
        bool,
        typer.Option(
            help="score the held-out synthetic images without telling the scorer their "
            "objective (the general classifier gets no optics; presets' own are not used)"
        ),
    ] = False,
) -> None:
    """Evaluate the models on held-out synthetic data (or a labelled folder)."""
    from autofocus.evaluation_cli import run_evaluation
    from autofocus.scorer import LocalScorer

    if what not in ("classifier", "regressor", "all"):
        raise typer.BadParameter("choose classifier, regressor or all", param_hint="WHAT")
    if output is None:  # a labelled run must not replace the held-out report
        output = Path(
            "bench-results/evaluation-labelled" if labelled else "bench-results/evaluation"
        )
    check_writable(output, "dir")
    scorer = LocalScorer(weights_dir=str(weights)) if weights is not None else None
    md = run_evaluation(
        what,
        output,
        labelled=labelled,
        objective=objective,
        n_images=n_images,
        seeds_per_specimen=seeds_per_specimen,
        seed=seed,
        scorer=scorer,
        condenser_fill=_fill_range(condenser_fill),
        untold=untold,
    )
    typer.echo(md)


@bench_app.command("scoring")
def bench_scoring(
    output: Annotated[Path, typer.Option(help="JSON results path")] = Path(
        "bench-results/scoring.json"
    ),
    threads: Annotated[int, typer.Option(min=1)] = 2,
    repeats: Annotated[int, typer.Option(min=3)] = 15,
    weights: Annotated[
        Path | None, typer.Option(help="model weights folder [the shipped weights]")
    ] = None,
) -> None:
    """Full-frame scoring time (512 and 2048 px) vs Yang et al.'s network; peak memory."""
    from autofocus.bench_scoring import run_scoring_benchmark
    from autofocus.registry import load_card

    check_writable(output)
    if weights is not None:
        load_card("classifier", weights)  # a clear error before any timing
        load_card("regressor", weights)
    run_scoring_benchmark(output, threads=threads, repeats=repeats, weights_dir=weights)


@app.command()
def calibrate(
    objective: Annotated[
        str, typer.Option(help="the objective (its name keys the calibration): " + _OBJECTIVE_FORMS)
    ],
    microscope: Annotated[str, typer.Option(help="microscope name for the store")] = "default",
    range_um: Annotated[
        float | None, typer.Option(help="half-range of the stack in um [default: 12 DOF]")
    ] = None,
    step_um: Annotated[float | None, typer.Option(help="z step in um [default: DOF/2]")] = None,
    output: Annotated[
        Path | None, typer.Option(help="folder for the JSON + PNG [default: user data dir]")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="simulator, pymmcore (needs --config) or pycromanager")
    ] = "simulator",
    config: Annotated[Path | None, typer.Option(help="Micro-Manager .cfg (pymmcore)")] = None,
    settle_ms: Annotated[float, typer.Option(min=0, help="extra settle time per move")] = 0.0,
    max_move_um: Annotated[
        float, typer.Option(min=0, help="ask before moving farther than this")
    ] = 50.0,
    weights: Annotated[Path | None, typer.Option(help="model weights folder")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask questions")] = False,
) -> None:
    """Calibrate an objective: z-stack of a flat textured slide -> blur curve (JSON + PNG)."""
    from rich.progress import Progress

    from autofocus.optics import parse_objective
    from autofocus.scorer import LocalScorer
    from calibration.store import CalibrationStore
    from calibration.wizard import calibrate as run_calibration
    from calibration.wizard import open_microscope, save_calibration

    obj = parse_objective(objective)
    if obj.name == "custom":  # the default name of inline fields
        raise typer.BadParameter(
            "name your objective (name=...): the name keys its calibration in the store",
            param_hint="--objective",
        )
    if backend not in ("simulator", "pymmcore", "pycromanager"):
        raise typer.BadParameter(f"unknown backend {backend!r}", param_hint="--backend")
    if not microscope.strip():
        raise typer.BadParameter("must not be empty", param_hint="--microscope")
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"no such config file: {config}", param_hint="--config")
    if output is not None:
        check_writable(output, "dir")
    scorer = LocalScorer(weights_dir=str(weights) if weights else None)
    store = CalibrationStore(output)
    confirm = None if yes else (lambda q: typer.confirm(q, default=False))
    with (
        open_microscope(backend, obj, config_path=config, settle_ms=settle_ms) as scope,  # type: ignore[arg-type]
        Progress(transient=True) as progress,
    ):
        task = progress.add_task(f"calibrating {obj.name}", total=None)
        cal = run_calibration(
            scope,
            scorer,
            obj,
            microscope_name=microscope,
            range_um=range_um,
            step_um=step_um,
            confirm=confirm,
            max_move_um=max_move_um,
            progress=lambda i, n: progress.update(task, completed=i, total=n),
        )
    json_path, png_path = save_calibration(cal, store)
    f = cal.fit
    typer.echo(
        f"{obj.name}: focus at dz {f.centre_um:+.2f} um, FWHM {f.fwhm_um:.2f} um, "
        f"amplitude {f.amplitude_px:.2f} px, R^2 {f.r2:.4f}, residual {f.residual_rms_px:.3f} px"
    )
    typer.echo(f"wrote {json_path}")
    typer.echo(f"wrote {png_path}")


@bench_app.command("autofocus")
def bench_autofocus(
    output: Annotated[Path, typer.Option(help="results folder")] = Path("bench-results"),
    objectives: Annotated[str, typer.Option(help="comma-separated presets")] = "10x-0.3-air,40X",
    specimens: Annotated[str, typer.Option(help="comma-separated names")] = (
        "tissue,nuclei,beads,phase"
    ),
    trials: Annotated[int, typer.Option(min=1, help="trials per objective x specimen")] = 25,
    size: Annotated[int, typer.Option(min=128, max=2048, help="frame size in px")] = 512,
    max_offset_dof: Annotated[float, typer.Option(min=0.5)] = 10.0,
    metric: Annotated[str, typer.Option(help="classic metric for the baselines")] = "tenengrad",
    seed: Annotated[int, typer.Option()] = 0,
    weights: Annotated[Path | None, typer.Option(help="model weights folder")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch threads per worker")] = 2,
    workers: Annotated[int, typer.Option(min=1, help="parallel trial processes")] = 1,
    replay: Annotated[
        Path | None, typer.Option(help="recorded z-stack (folder or TIFF) instead")
    ] = None,
    true_focus_um: Annotated[float | None, typer.Option(help="replay: in-focus z")] = None,
    objective: Annotated[
        str | None, typer.Option(help="replay: the stack's objective, " + _OBJECTIVE_FORMS)
    ] = None,
    z_csv: Annotated[
        Path | None, typer.Option(help="replay: CSV of index,z_um for the stack's planes")
    ] = None,
    z_step_um: Annotated[
        float | None, typer.Option(help="replay: z spacing of the planes (without --z-csv)")
    ] = None,
) -> None:
    """Few-image search vs OughtaFocus-like Brent and a z-stack sweep (markdown + JSON + PNG)."""
    import math

    from autofocus.bench_autofocus import BenchSettings, run_autofocus_benchmark

    if not math.isfinite(max_offset_dof):
        raise typer.BadParameter("must be a finite number of DOF", param_hint="--max-offset-dof")
    if replay is None and (z_csv is not None or z_step_um is not None):
        raise typer.BadParameter("--z-csv and --z-step-um go with --replay")
    check_writable(output, "dir")
    settings = BenchSettings(
        objectives=_names(objectives),
        specimens=_names(specimens),
        trials=trials,
        size=size,
        max_offset_dof=max_offset_dof,
        metric=metric,
        seed=seed,
        weights_dir=str(weights) if weights else None,
        threads=threads,
        workers=workers,
    )
    stack = None
    obj = None
    if replay is not None:
        from autofocus.optics import parse_objective
        from simulators.replay import ZStack

        obj = parse_objective(objective) if objective is not None else None
        stack = ZStack.load(replay, z_csv, z_step_um, true_focus_um=true_focus_um)
    run_autofocus_benchmark(
        output, settings, replay=stack, replay_objective=obj, progress=typer.echo
    )
    typer.echo((output / "autofocus.md").read_text("utf-8"))
    typer.echo(f"wrote {output / 'autofocus.json'} and {output / 'autofocus_images.png'}")


@app.command()
def serve(
    bind: Annotated[str, typer.Option(help="ZMQ endpoint (loopback by default)")] = (
        "tcp://127.0.0.1:5557"
    ),
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1...")] = "cpu",
    calibrations: Annotated[
        Path | None, typer.Option(help="calibration folder for autofocus sessions")
    ] = None,
    weights_dir: Annotated[
        Path | None, typer.Option(help="model weights folder [default: the shipped models]")
    ] = None,
    curve_secret_key: Annotated[
        Path | None, typer.Option(help="CurveZMQ server secret key file (encrypts traffic)")
    ] = None,
    curve_clients: Annotated[
        Path | None, typer.Option(help="folder of authorised client public keys")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="allow a non-loopback bind without CurveZMQ (warns)")
    ] = False,
    session_ttl_s: Annotated[float, typer.Option(min=1, help="idle session expiry")] = 300.0,
    summary_interval_s: Annotated[float, typer.Option(min=1, help="INFO summary period")] = 60.0,
) -> None:
    """Serve focus scoring and step-wise autofocus sessions over ZMQ until Ctrl-C/SIGTERM."""
    from autofocus.service.server import ServiceConfig
    from autofocus.service.server import serve as run_server

    check_endpoint(bind)
    if calibrations is not None and not calibrations.is_dir():
        raise typer.BadParameter(f"not a folder: {calibrations}", param_hint="--calibrations")
    _at_least(logging.INFO)  # the periodic summary is INFO
    config = ServiceConfig(
        bind=bind,
        insecure=insecure,
        curve_secret_key=curve_secret_key,
        curve_clients_dir=curve_clients,
        session_ttl_s=session_ttl_s,
        summary_interval_s=summary_interval_s,
    )
    run_server(config, weights_dir=weights_dir, device=device, calibrations_dir=calibrations)


@app.command()
def ping(
    address: Annotated[str, typer.Argument(help="server endpoint")] = "tcp://127.0.0.1:5557",
    timeout_s: Annotated[float, typer.Option(min=0.01)] = 3.0,
    server_key: Annotated[
        Path | None, typer.Option(help="the server's CurveZMQ public key file")
    ] = None,
) -> None:
    """Check a running 'autofocus serve': print its version and health."""
    from autofocus.service.client import ping as run_ping

    check_endpoint(address)
    info = run_ping(address, timeout_s=timeout_s, server_public_key=server_key)
    typer.echo(json.dumps(info, indent=2))


@bench_app.command("service")
def bench_service(
    output: Annotated[Path, typer.Option(help="JSON results path")] = Path(
        "bench-results/service.json"
    ),
    duration_s: Annotated[float, typer.Option(min=1, help="concurrent phase length")] = 60.0,
    clients: Annotated[int, typer.Option(min=1, max=64)] = 4,
    malformed: Annotated[int, typer.Option(min=0)] = 1000,
    repeats: Annotated[int, typer.Option(min=3, help="overhead repeats")] = 30,
    weights_dir: Annotated[
        Path | None, typer.Option(help="model weights folder [default: the shipped models]")
    ] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Remote-vs-local overhead, 4 concurrent clients, malformed input, graceful stop."""
    from autofocus.service.bench import run_service_benchmark

    check_writable(output)
    run_service_benchmark(
        output,
        duration_s=duration_s,
        clients=clients,
        malformed=malformed,
        repeats=repeats,
        weights_dir=weights_dir,
        device=device,
    )


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="folder for the dataset, plot and report")
    ] = Path("autofocus-demo"),
    time_points: Annotated[int, typer.Option(min=1, max=10000)] = 30,
    positions: Annotated[int, typer.Option(min=1, max=100, help="XY positions")] = 3,
    objective: Annotated[str, typer.Option(help="objective preset")] = "20X",
    specimen: Annotated[str, typer.Option(help="specimen name")] = "nuclei",
    drift: Annotated[
        str | None,
        typer.Option(help="drift spec, e.g. 'linear:0.005,walk:0.04,jump:9@870' [default: in DOF]"),
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    autofocus: Annotated[bool, typer.Option("--autofocus/--no-autofocus")] = True,
    z_slices: Annotated[int, typer.Option(min=1, max=51, help="odd; the centre is in focus")] = 3,
    frame_px: Annotated[int, typer.Option(min=64, max=2048)] = 256,
    calibrations: Annotated[
        Path | None, typer.Option(help="calibration store folder [default: user data dir]")
    ] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="live progress view")] = True,
) -> None:
    """Drifting timelapse on the virtual microscope kept in focus by the Pycro-Manager hooks."""
    from hooks.demo import DemoOptions, print_result, run_demo

    check_writable(output, "dir")
    if calibrations is not None:
        check_writable(calibrations, "dir")
    options = DemoOptions(
        output=output,
        time_points=time_points,
        positions=positions,
        objective=objective,
        specimen=specimen,
        drift=drift,
        seed=seed,
        autofocus=autofocus,
        z_slices=z_slices,
        frame_px=frame_px,
        calibration_dir=calibrations,
        live=live,
    )
    print_result(run_demo(options))


def _click_exception() -> type[Exception]:
    """The ClickException class typer raises (recent typer bundles its own click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code instead of exiting.

    Usage errors print click's message (exit 2); the project's errors, unusable paths
    and invalid settings one ``error:`` line (exit 2); Ctrl-C or a declined question
    ``aborted`` (exit 130).  Anything else is a bug and keeps its traceback.
    """
    from pydantic import ValidationError

    click_exception = _click_exception()
    try:
        # typer returns an explicit exit's code (130 for Ctrl-C) instead of raising
        rv = app(args=argv, prog_name="autofocus", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except click_exception as exc:
        exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        return 130
    except AutofocusError as exc:
        return _error(str(exc))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(f"invalid setting {where}: {first.get('msg', exc)}")
    except OSError as exc:  # e.g. an output folder that is a file, a full disk
        return _error(str(exc))
    code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    if code == 130:
        typer.echo("aborted", err=True)
    return code


def _error(message: str) -> int:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
