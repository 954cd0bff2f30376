"""``autofocus evaluate``: accuracy of the classifier and sample invariance of the blur score.

Classifier (per image, the full scoring pipeline)
------------------------------------------------
Confusion matrix of the predicted level (the median of the image distribution) against
the true class, exact and within-one-level accuracy (and both again for the argmax of the
distribution, Yang et al.'s rule, side by side), the in/out-of-focus F-score ("out" is
the positive class; in focus = levels 0..2), and calibration of certainty: accuracy per
certainty bin (10 equal bins of ``certainty_aggregate``).  Undetermined images are
counted and left out of the accuracies.

Blur score versus classic metrics (DeepFocus Table 1 protocol)
---------------------------------------------------------------
For many specimens (several types, seeds never used in training), a through-focus
series over +/- ``range_dof`` depths of field is scored by the regressor (b) and by every
metric of :mod:`autofocus.metrics`.  Each specimen's curve is normalised to [0, 1]
(0 sharpest, 1 blurriest: ``(b - min) / (max - min)`` for b, ``(max - s) / (max - min)``
for metrics, which are higher-is-sharper).  Figures:

* ``sd_5dof``: the standard deviation across specimens of the normalised score at each z,
  averaged over ``|z| <= 5 DOF`` (lower = more sample-invariant);
* ``cond_entropy_bits``: the conditional entropy of depth given the score, as in
  DeepFocus's formula ``-sum_{b,z} p(b|z) log p(b|z) / sum_z' p(b|z')``, i.e. H(Z | S)
  with z uniform over the sampled depths: normalised scores are binned into 16 equal
  bins on [0, 1], ``H = -sum_{z,s} p(z, s) log2 p(z | s)`` (bits; lower = the score tells
  the depth better; a plateau, where many depths give the same score, raises it; bounded
  by log2 of the number of depths);
* ``depth_range_dof``: the largest |z| (in DOF, the smaller of the two sides) up to which
  the mean normalised curve keeps changing by at least 0.01 per DOF step;
* ``sharpest_at_dof`` and ``peaks_at_focus``: where each specimen's sharpest reading
  lies, the median over specimens of its |z| (DOF) and the share of specimens whose
  sharpest reading is within 1 DOF of focus.  SD, H and depth say nothing about
  direction: a score that reads sharpest far from focus can still be consistent across
  specimens and tell depths apart, but a search that follows it goes the wrong way.
  (PLLS reads its sharpest at 12 DOF for 23 of the 24 specimens of the reported
  set: far out of focus a frame is mostly shot noise, whose flat spectrum PLLS takes
  for detail.)
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import AutofocusError, InvalidInputError
from autofocus.io import atomic_path
from autofocus.optics import IN_FOCUS_MAX_LEVEL, N_LEVELS, Objective, get_objective
from autofocus.reporting import markdown_table, write_json
from autofocus.score import FocusScore

__all__ = [
    "classifier_figures",
    "evaluate_classifier_synthetic",
    "evaluate_invariance",
    "evaluate_labelled_folder",
    "invariance_figures",
    "per_na_figures",
]

ENTROPY_BINS = 16


# ---------------------------------------------------------------------------
# classifier
# ---------------------------------------------------------------------------
def classifier_figures(
    true_cls: Sequence[int], scores: Sequence[FocusScore], in_focus_max: int = IN_FOCUS_MAX_LEVEL
) -> dict[str, Any]:
    """Accuracy figures for images with known classes (undetermined images excluded)."""
    t = np.asarray(true_cls, dtype=int)
    det = np.array([s.determined for s in scores], dtype=bool)
    pred = np.array([s.predicted_level for s in scores], dtype=int)
    top = np.array([int(np.argmax(s.probabilities)) for s in scores], dtype=int)
    cert = np.array([s.certainty_aggregate for s in scores], dtype=float)
    cm = np.zeros((N_LEVELS, N_LEVELS), dtype=int)
    for a, b in zip(t[det], pred[det], strict=True):
        cm[a, b] += 1
    err = np.abs(pred - t)[det]
    err_top = np.abs(top - t)[det]
    out_true = t[det] > in_focus_max
    out_pred = np.array([s.verdict == "out_of_focus" for s in scores], dtype=bool)[det]
    tp = int((out_true & out_pred).sum())
    fp = int((~out_true & out_pred).sum())
    fn = int((out_true & ~out_pred).sum())
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    bins = np.linspace(0, 1, 11)
    calib = []
    for lo, hi in itertools.pairwise(bins):
        m = (cert[det] >= lo) & (cert[det] < hi if hi < 1 else cert[det] <= hi)
        if m.any():
            calib.append(
                {
                    "bin": [round(lo, 2), round(hi, 2)],
                    "n": int(m.sum()),
                    "accuracy": float((err[m] == 0).mean()),
                    "within_one": float((err[m] <= 1).mean()),
                }
            )
    return {
        "n_images": int(t.size),
        "n_undetermined": int((~det).sum()),
        "exact_accuracy": float((err == 0).mean()) if err.size else float("nan"),
        "within_one_accuracy": float((err <= 1).mean()) if err.size else float("nan"),
        "argmax_exact_accuracy": float((err_top == 0).mean()) if err.size else float("nan"),
        "argmax_within_one_accuracy": (float((err_top <= 1).mean()) if err.size else float("nan")),
        "out_of_focus_precision": precision,
        "out_of_focus_recall": recall,
        "in_out_f1": f1,
        "confusion_matrix": cm.tolist(),
        "certainty_calibration": calib,
    }


def evaluate_classifier_synthetic(
    scorer: Any,
    n_images: int = 600,
    field_px: int = 336,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    objective: str | Objective | None = None,
    condenser_fill: tuple[float, float] | None = (0.6, 0.8),
    tell_objective: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score held-out synthetic images (disjoint seeds, held-out specimen types included).

    ``tell_objective``: the scorer is given each image's objective (False: none, as a
    caller who does not pass it; the general classifier then gets no optics and a
    preset's own classifier is not used).

    ``objective``: a preset (name) or any objective to see every image through (the
    scorer is told it, so a classifier trained for that preset is the one evaluated, and
    the general one for any other); None: random optics.
    ``condenser_fill``: brightfield images under Koehler illumination with a condenser
    NA of this fraction of the objective's (the usual 60-80 % setting of the aperture
    diaphragm); None: a point source.
    """
    from dataclasses import replace

    from autofocus.training.data import (
        EVAL_SEED_OFFSET,
        HELD_OUT_SPECIMENS,
        TRAIN_SPECIMENS,
        DomainConfig,
        check_condenser_fill,
        level_class,
        render_field_sample,
    )

    cfg = replace(
        DomainConfig(defocus="classifier", max_level=10.5, empty_fraction=0.0),
        specimens=TRAIN_SPECIMENS + HELD_OUT_SPECIMENS,
        field_px=field_px,
        objective=None if objective is None else get_objective(objective),
        condenser_fill=check_condenser_fill(condenser_fill),
    )
    true, scores, rows = [], [], []
    for i in range(n_images):
        fs = render_field_sample(i, EVAL_SEED_OFFSET + 7919 + seed, cfg)
        s = scorer.score(fs.frame, fs.objective if tell_objective else None)
        c = level_class(fs.level)
        true.append(c)
        scores.append(s)
        rows.append(
            {
                "specimen": fs.specimen,
                "true_level": fs.level,
                "true_class": c,
                "predicted": s.predicted_level,
                "verdict": s.verdict,
                "certainty": s.certainty_aggregate,
                "na": fs.objective.na,
                "pixel_size_um": fs.objective.pixel_size_um,
            }
        )
        if progress:
            progress(i + 1, n_images)
    figs = classifier_figures(true, scores)
    specimens = [r["specimen"] for r in rows]
    per = {}
    for name in sorted({r["specimen"] for r in rows}):
        idx = [k for k, r in enumerate(rows) if r["specimen"] == name]
        f = classifier_figures([true[k] for k in idx], [scores[k] for k in idx])
        per[name] = {
            k: f[k]
            for k in (
                "n_images",
                "n_undetermined",
                "exact_accuracy",
                "within_one_accuracy",
                "in_out_f1",
            )
        }
    figs["per_specimen"] = per
    figs["per_na"] = per_na_figures(
        true, scores, [r["na"] for r in rows], specimens, HELD_OUT_SPECIMENS
    )
    return figs, rows


NA_BINS = (0.0, 0.4, 0.6, 0.9, 1.6)
"""Objective NA bins of the per-NA table: dry low power, dry mid power, dry high power,
immersion."""


def per_na_figures(
    true_cls: Sequence[int],
    scores: Sequence[FocusScore],
    na: Sequence[float],
    specimens: Sequence[str],
    held_out: Sequence[str],
) -> list[dict[str, Any]]:
    """Within-one accuracy per objective NA bin (:data:`NA_BINS`), over all images and
    split into trained and held-out specimen types (NaN where a bin has no such image):
    where in the optics the level can be trusted.  Empty bins are left out."""
    na_arr = np.asarray(na, dtype=float)
    held = np.array([sp in held_out for sp in specimens], dtype=bool)
    out = []
    for lo, hi in itertools.pairwise(NA_BINS):
        m = (na_arr >= lo) & (na_arr < hi)
        if not m.any():
            continue
        row: dict[str, Any] = {"na": [lo, hi]}
        for key, sel in (("all", m), ("trained", m & ~held), ("held_out", m & held)):
            idx = np.flatnonzero(sel)
            f = classifier_figures(
                [true_cls[k] for k in idx.tolist()], [scores[k] for k in idx.tolist()]
            )
            row[f"n_{key}"] = int(idx.size - f["n_undetermined"])
            row[f"within_one_{key}"] = f["within_one_accuracy"]
        out.append(row)
    return out


def evaluate_labelled_folder(scorer: Any, csv_path: Path, objective: Objective | None) -> dict:
    """Score images listed in a CSV (``file`` plus ``level`` or ``in_focus``/``label``)."""
    from autofocus.imageio import count_pages, read_image
    from autofocus.scorer import CLASSIFIER_PATCH
    from autofocus.tiling import prepare_frame

    if not csv_path.is_file():
        raise InvalidInputError(f"no such labels CSV: {csv_path}")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:  # Excel writes a BOM
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{csv_path} is not a UTF-8 CSV file: {exc}") from exc
    if not rows:
        raise InvalidInputError(f"{csv_path} has no rows")
    cols = set(rows[0])
    if "file" not in cols or not ({"level", "in_focus", "label"} & cols):
        raise InvalidInputError(
            f"{csv_path} needs a 'file' column and a 'level' or 'in_focus'/'label' column"
        )
    # check every row before scoring any image
    paths, levels, inout = [], [], []
    for n, r in enumerate(rows, start=2):  # line 1 is the header
        p = Path(r.get("file") or "")
        p = p if p.is_absolute() else csv_path.parent / p
        if not p.is_file():
            raise InvalidInputError(f"{csv_path} line {n}: no such image {r.get('file')!r}")
        if (pages := count_pages(p)) > 1:
            raise InvalidInputError(
                f"{csv_path} line {n}: {r.get('file')!r} holds {pages} pages; "
                "label one image per file"
            )
        try:  # decoded once here, so that a bad image fails before any is scored
            prepare_frame(read_image(p), CLASSIFIER_PATCH)
        except AutofocusError as exc:
            raise type(exc)(f"{csv_path} line {n} ({r.get('file')!r}): {exc}") from exc
        paths.append(p)
        if (r.get("level") or "").strip():
            raw = r["level"].strip()
            if not (raw.isascii() and raw.isdigit() and 0 <= int(raw) < N_LEVELS):
                raise InvalidInputError(
                    f"{csv_path} line {n}: level must be an integer 0-{N_LEVELS - 1}, got {raw!r}"
                )
            levels.append(int(raw))
        else:
            v = (r.get("in_focus") or r.get("label") or "").strip().lower()
            if v not in ("1", "0", "in", "out", "true", "false"):
                raise InvalidInputError(f"{csv_path} line {n}: bad in/out label {v!r}")
            inout.append(v in ("1", "in", "true"))
    if levels and inout:
        raise InvalidInputError(f"{csv_path}: every row needs the same kind of label")
    scores = [scorer.score(read_image(p), objective) for p in paths]
    if levels:
        return classifier_figures(levels, scores)
    true_out = ~np.asarray(inout)
    det = np.array([s.determined for s in scores])
    pred_out = np.array([s.verdict == "out_of_focus" for s in scores])
    tp = int((true_out & pred_out & det).sum())
    fp = int((~true_out & pred_out & det).sum())
    fn = int((true_out & ~pred_out & det).sum())
    prec, rec, f1 = precision_recall_f1(tp, fp, fn)
    return {
        "n_images": len(rows),
        "n_undetermined": int((~det).sum()),
        "out_of_focus_precision": prec,
        "out_of_focus_recall": rec,
        "in_out_f1": f1,
    }


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of the out-of-focus class; NaN where undefined (F1 when
    there is neither an out-of-focus image nor an out-of-focus verdict), 0 when defined
    and nothing was right."""
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return prec, rec, f1


# ---------------------------------------------------------------------------
# sample invariance (DeepFocus Table 1)
# ---------------------------------------------------------------------------
def normalise_curves(curves: np.ndarray, higher_is_sharper: bool) -> np.ndarray:
    """Per specimen (row), map to [0, 1] with 0 the sharpest and 1 the blurriest value."""
    c = np.asarray(curves, dtype=float)
    lo = np.nanmin(c, axis=1, keepdims=True)
    hi = np.nanmax(c, axis=1, keepdims=True)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    n = (c - lo) / span
    return 1.0 - n if higher_is_sharper else n


def invariance_figures(norm: np.ndarray, z_dof: np.ndarray) -> dict[str, float]:
    """SD within +/-5 DOF, conditional entropy over all z, depth range (see module doc)."""
    z = np.asarray(z_dof, dtype=float)
    sd = np.nanstd(norm, axis=0)
    near = np.abs(z) <= 5.0 + 1e-9
    bins = np.clip((np.nan_to_num(norm, nan=1.0) * ENTROPY_BINS).astype(int), 0, ENTROPY_BINS - 1)
    counts = np.zeros((norm.shape[1], ENTROPY_BINS))  # (z, score bin)
    for k in range(norm.shape[1]):
        counts[k] = np.bincount(bins[:, k], minlength=ENTROPY_BINS)
    p_zs = counts / counts.sum()
    p_s = p_zs.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_z_given_s = np.where(p_s > 0, p_zs / p_s, 0.0)
        h_terms = np.where(p_zs > 0, -p_zs * np.log2(p_z_given_s), 0.0)
    cond_entropy = float(h_terms.sum())
    mean_curve = np.nanmean(norm, axis=0)
    step = np.median(np.diff(z))
    slope = np.abs(np.diff(mean_curve)) / step  # per DOF
    mid = 0.5 * (z[1:] + z[:-1])
    ranges = []
    for side in (mid > 0, mid < 0):
        idx = np.flatnonzero(side)
        order = idx[np.argsort(np.abs(mid[idx]))]
        reach = 0.0
        for i in order:
            if slope[i] >= 0.01:
                reach = abs(mid[i]) + step / 2
            else:
                break
        ranges.append(reach)
    finite = ~np.all(np.isnan(norm), axis=1)  # a specimen without readings is left out
    if finite.any():
        sharpest_abs_z = np.abs(z[np.nanargmin(norm[finite], axis=1)])
        sharpest_at = float(np.median(sharpest_abs_z))
        at_focus = float(np.mean(sharpest_abs_z <= 1.0 + 1e-9))
    else:
        sharpest_at = at_focus = float("nan")
    return {
        "sd_5dof": float(sd[near].mean()),
        "cond_entropy_bits": cond_entropy,
        "depth_range_dof": float(min(ranges)),
        "sharpest_at_dof": sharpest_at,
        "peaks_at_focus": at_focus,
    }


def evaluate_invariance(
    scorer: Any,
    objective: Objective | str = "10x-0.3-air",
    specimens: Sequence[str] = (
        "nuclei",
        "actin",
        "microtubules",
        "tissue",
        "calibration_slide",
        "beads",
    ),
    seeds_per_specimen: int = 4,
    range_dof: float = 12.0,
    n_z: int = 49,
    shape: tuple[int, int] = (256, 256),
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Score through-focus series of many specimens with b and every classic metric."""
    from autofocus.metrics import METRICS
    from autofocus.training.data import EVAL_SEED_OFFSET
    from simulators.camera import CameraModel
    from simulators.series import render_series
    from simulators.specimens import make_specimen

    obj = get_objective(objective)
    z_dof = np.linspace(-range_dof, range_dof, n_z)
    dz = z_dof * obj.dof_um
    names = ["blur_score_b", *METRICS]
    curves: dict[str, list[np.ndarray]] = {n: [] for n in names}
    labels = []
    total = len(specimens) * seeds_per_specimen
    k = 0
    for spec_name in specimens:
        for s in range(seeds_per_specimen):
            sp_seed = EVAL_SEED_OFFSET + 1000 * seed + s
            spec = make_specimen(spec_name, seed=sp_seed)
            series = render_series(
                spec,
                obj,
                dz,
                shape=shape,
                camera=CameraModel(),
                seed=sp_seed,
                x_um=float(137 * s),
                y_um=float(-71 * s),
            )
            sc = scorer.score_batch(list(series.frames), obj)
            curves["blur_score_b"].append(np.array([x.blur_px for x in sc]))
            for mname, fn in METRICS.items():
                curves[mname].append(np.array([fn(f) for f in series.frames]))
            labels.append(f"{spec_name}#{s}")
            k += 1
            if progress:
                progress(k, total)
    results: dict[str, dict[str, float]] = {}
    normed: dict[str, np.ndarray] = {}
    for n in names:
        arr = np.stack(curves[n])
        norm = normalise_curves(arr, higher_is_sharper=(n != "blur_score_b"))
        normed[n] = norm
        results[n] = invariance_figures(norm, z_dof)
    return results, {"z_dof": z_dof, "normalised": normed, "labels": labels, "objective": obj.name}


# ---------------------------------------------------------------------------
# plots and reports
# ---------------------------------------------------------------------------
def plot_confusion(cm: Sequence[Sequence[int]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > m.max() / 2 else "black",
            )
    ax.set_xlabel("predicted level")
    ax.set_ylabel("true level")
    ax.set_xticks(range(N_LEVELS))
    ax.set_yticks(range(N_LEVELS))
    fig.colorbar(im, ax=ax)
    ax.set_title("Defocus classifier: held-out synthetic images")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_curves(detail: dict[str, Any], results: dict[str, dict[str, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(detail["normalised"])
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    z = detail["z_dof"]
    for ax in axes.ravel():
        ax.axis("off")
    for ax, n in zip(axes.ravel(), names, strict=False):
        ax.axis("on")
        for c in detail["normalised"][n]:
            ax.plot(z, c, lw=0.6, alpha=0.6)
        r = results[n]
        ax.set_title(f"{n}\nSD {r['sd_5dof']:.3f}  H {r['cond_entropy_bits']:.2f}", fontsize=8)
        ax.set_xlabel("z (DOF)", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"Normalised score vs z ({detail['objective']}), one line per specimen")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def invariance_table(results: dict[str, dict[str, float]]) -> str:
    rows = [
        [
            n,
            r["sd_5dof"],
            r["cond_entropy_bits"],
            r["depth_range_dof"],
            r["sharpest_at_dof"],
            r["peaks_at_focus"],
        ]
        for n, r in sorted(results.items(), key=lambda kv: kv[1]["sd_5dof"])
    ]
    return markdown_table(
        [
            "score",
            "SD within ±5 DOF",
            "H(Z|S) bits",
            "depth range (DOF)",
            "sharpest reading at |z| (DOF, median)",
            "share sharpest within 1 DOF of focus",
        ],
        rows,
    )


def write_reports(out_dir: Path, payload: dict[str, Any], markdown: str) -> None:
    from autofocus.io import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "evaluation.json", payload)
    atomic_write_text(out_dir / "evaluation.md", markdown)
