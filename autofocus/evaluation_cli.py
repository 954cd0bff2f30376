"""``autofocus evaluate``: runs the evaluations and writes markdown, JSON and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autofocus.evaluation import (
    evaluate_classifier_synthetic,
    evaluate_invariance,
    evaluate_labelled_folder,
    invariance_table,
    plot_confusion,
    plot_curves,
    write_reports,
)
from autofocus.reporting import markdown_table
from autofocus.training.data import HELD_OUT_SPECIMENS

__all__ = ["run_evaluation"]


def run_evaluation(
    what: str,
    out_dir: Path,
    *,
    labelled: Path | None = None,
    objective: str | None = None,
    n_images: int = 600,
    seeds_per_specimen: int = 4,
    seed: int = 0,
    scorer: Any = None,
    condenser_fill: tuple[float, float] | None = (0.6, 0.8),
    untold: bool = False,
) -> str:
    from rich.progress import Progress

    from autofocus.optics import parse_objective
    from autofocus.scorer import LocalScorer

    sc = scorer or LocalScorer()
    obj = parse_objective(objective) if objective is not None else None
    version = sc.model_version_for(obj)
    payload: dict[str, Any] = {
        "model_version": version,
        "objective": None if obj is None else obj.name,
        "objective_fields": None if obj is None else obj.model_dump(),
        "seed": seed,
    }
    synthetic = labelled is None and seed != 0
    held_out = f" (validation stream {seed}, not the reported set)" if synthetic else ""
    md = [f"# Evaluation of {version}{held_out}\n"]
    if labelled is not None:
        figs = evaluate_labelled_folder(sc, labelled, obj)
        payload["labelled"] = figs
        md.append(
            markdown_table(
                ["figure", "value"],
                [[k, v] for k, v in figs.items() if not isinstance(v, list | dict)],
            )
        )
        write_reports(out_dir, payload, "\n".join(md))
        return "\n".join(md)
    out_dir.mkdir(parents=True, exist_ok=True)
    with Progress(transient=True) as progress:
        if what in ("classifier", "all"):
            t = progress.add_task("classifier: held-out images", total=n_images)
            figs, rows = evaluate_classifier_synthetic(
                sc,
                n_images=n_images,
                seed=seed,
                progress=lambda i, n: progress.update(t, completed=i),
                objective=obj,
                condenser_fill=condenser_fill,
                tell_objective=not untold,
            )
            payload["classifier"] = figs
            payload["objective_told"] = not untold
            payload["condenser_fill"] = None if condenser_fill is None else list(condenser_fill)
            payload["classifier_rows"] = rows
            plot_confusion(figs["confusion_matrix"], out_dir / "confusion_matrix.png")
            seen = (
                f"all through {obj.name} (NA {obj.na:g}, {obj.pixel_size_um:.3g} um pixels)"
                if obj
                else "random objectives"
            )
            light = (
                "brightfield lit by a point source"
                if condenser_fill is None
                else "brightfield under Koehler illumination, condenser NA "
                f"{condenser_fill[0]:g}-{condenser_fill[1]:g} x NA"
            )
            told = ", the scorer not told the objective" if untold else ""
            md.append(
                f"## Classifier (held-out synthetic images, {seen}, {light}, "
                f"full scoring pipeline{told})\n"
            )
            keys = [
                "n_images",
                "n_undetermined",
                "exact_accuracy",
                "within_one_accuracy",
                "argmax_exact_accuracy",
                "argmax_within_one_accuracy",
                "out_of_focus_precision",
                "out_of_focus_recall",
                "in_out_f1",
            ]
            md.append(markdown_table(["figure", "value"], [[k, figs[k]] for k in keys]))
            held = ", ".join(HELD_OUT_SPECIMENS)
            md.append(f"\nPer specimen (held out from training: {held}):\n")
            md.append(
                markdown_table(
                    ["specimen", "n", "within one", "exact", "F1 in/out"],
                    [
                        [
                            k,
                            v["n_images"],
                            v["within_one_accuracy"],
                            v["exact_accuracy"],
                            v["in_out_f1"],
                        ]
                        for k, v in figs["per_specimen"].items()
                    ],
                )
            )
            if figs.get("per_na"):
                md.append(
                    f"\nWithin one level per objective NA (determined images; held out: {held}):\n"
                )
                md.append(
                    markdown_table(
                        [
                            "NA",
                            "n",
                            "within one",
                            "trained types",
                            "n trained",
                            "held out",
                            "n held out",
                        ],
                        [
                            [
                                f"{r['na'][0]:.1f}-{r['na'][1]:.1f}",
                                r["n_all"],
                                r["within_one_all"],
                                r["within_one_trained"],
                                r["n_trained"],
                                r["within_one_held_out"],
                                r["n_held_out"],
                            ]
                            for r in figs["per_na"]
                        ],
                    )
                )
            md.append("\nCertainty calibration:\n")
            md.append(
                markdown_table(
                    ["certainty bin", "n", "exact accuracy", "within one"],
                    [
                        [
                            f"{c['bin'][0]:.1f}-{c['bin'][1]:.1f}",
                            c["n"],
                            c["accuracy"],
                            c["within_one"],
                        ]
                        for c in figs["certainty_calibration"]
                    ],
                )
            )
        if what in ("regressor", "all"):
            total = 6 * seeds_per_specimen
            t = progress.add_task("blur score vs metrics: through-focus series", total=total)
            results, detail = evaluate_invariance(
                sc,
                seeds_per_specimen=seeds_per_specimen,
                seed=seed,
                progress=lambda i, n: progress.update(t, completed=i),
            )
            payload["invariance"] = results
            payload["invariance_setup"] = {
                "objective": detail["objective"],
                "z_dof": detail["z_dof"],
                "specimens": detail["labels"],
            }
            plot_curves(detail, results, out_dir / "score_vs_z.png")
            md.append(
                f"\n## Blur score b vs classic metrics ({detail['objective']}, "
                f"{len(detail['labels'])} specimens)\n"
            )
            md.append(invariance_table(results))
    text = "\n".join(md)
    write_reports(out_dir, payload, text)
    return text
