import numpy as np
import pytest

from autofocus.evaluation import (
    classifier_figures,
    invariance_figures,
    normalise_curves,
    per_na_figures,
)
from autofocus.score import FocusScore


def test_invariance_figures_reward_informative_invariant_scores() -> None:
    z = np.linspace(-12, 12, 49)
    keeps_changing = np.tile(np.abs(z) / 12, (10, 1))
    plateau = np.tile(np.minimum(np.abs(z) / 4, 1), (10, 1))
    rng = np.random.default_rng(0)
    noisy = np.clip(keeps_changing + rng.normal(0, 0.1, keeps_changing.shape), 0, 1)
    a, b, c = (invariance_figures(x, z) for x in (keeps_changing, plateau, noisy))
    assert a["sd_5dof"] == pytest.approx(0.0, abs=1e-12)
    assert c["sd_5dof"] == pytest.approx(0.1, rel=0.3)
    # H(Z|S): a plateau (many depths, one score) is less informative
    assert a["cond_entropy_bits"] < b["cond_entropy_bits"]
    assert a["cond_entropy_bits"] < c["cond_entropy_bits"]
    assert a["depth_range_dof"] == pytest.approx(12.0)
    assert b["depth_range_dof"] == pytest.approx(4.0)


def test_invariance_figures_say_where_the_sharpest_reading_is() -> None:
    z = np.linspace(-12, 12, 49)
    v_shaped = np.tile(np.abs(z) / 12, (4, 1))
    inverted = 1.0 - v_shaped  # just as consistent and informative, sharpest far out
    good, bad = invariance_figures(v_shaped, z), invariance_figures(inverted, z)
    # SD and H cannot tell them apart ...
    assert bad["sd_5dof"] == pytest.approx(good["sd_5dof"])
    assert bad["cond_entropy_bits"] == pytest.approx(good["cond_entropy_bits"])
    # ... where the sharpest reading lies can
    assert (good["sharpest_at_dof"], good["peaks_at_focus"]) == (0.0, 1.0)
    assert (bad["sharpest_at_dof"], bad["peaks_at_focus"]) == (12.0, 0.0)
    mixed = v_shaped.copy()
    mixed[0] = np.roll(v_shaped[0], 3)  # sharpest 1.5 DOF off focus
    mixed[1] = inverted[1]  # sharpest at 12 DOF
    mixed[2, :] = np.nan  # no reading at all: left out
    m = invariance_figures(mixed, z)
    assert m["sharpest_at_dof"] == 1.5  # median of 1.5, 12, 0
    assert m["peaks_at_focus"] == pytest.approx(1 / 3)


def test_normalisation_direction() -> None:
    curves = np.array([[3.0, 1.0, 5.0]])
    np.testing.assert_allclose(normalise_curves(curves, higher_is_sharper=False), [[0.5, 0, 1]])
    np.testing.assert_allclose(normalise_curves(curves, higher_is_sharper=True), [[0.5, 1, 0]])


def _score(level: int, verdict: str) -> FocusScore:
    p = np.zeros(11)
    p[level] = 1.0
    return FocusScore(
        p,
        float(level),
        level,
        1,
        1,
        1,
        1,
        float(level <= 2),
        1.0,
        0.0,
        0.0,
        1.0,
        verdict,
        None,
        None,
        "test",
    )  # type: ignore[arg-type]


def test_classifier_figures_hand_computed() -> None:
    true = [0, 1, 5, 7, 9]
    scores = [
        _score(0, "in_focus"),
        _score(3, "out_of_focus"),
        _score(5, "out_of_focus"),
        _score(6, "out_of_focus"),
        _score(9, "undetermined"),
    ]
    f = classifier_figures(true, scores)
    assert f["n_undetermined"] == 1
    assert f["exact_accuracy"] == pytest.approx(2 / 4)
    assert f["within_one_accuracy"] == pytest.approx(3 / 4)
    # out-of-focus positives: true levels > 2 -> {5, 7}; predicted out: {1, 5, 7}
    assert f["out_of_focus_precision"] == pytest.approx(2 / 3)
    assert f["out_of_focus_recall"] == pytest.approx(1.0)
    assert f["confusion_matrix"][1][3] == 1


def test_per_na_figures_hand_computed() -> None:
    # NA 0.3: two trained images (one 2 levels off) and one held-out (right);
    # NA 1.4: one held-out image, undetermined; no image in the bins between
    true = [4, 4, 4, 4]
    scores = [
        _score(4, "out_of_focus"),
        _score(6, "out_of_focus"),
        _score(5, "out_of_focus"),
        _score(4, "undetermined"),
    ]
    rows = per_na_figures(true, scores, [0.3, 0.3, 0.35, 1.4], ["a", "b", "mt", "mt"], ["mt"])
    assert [r["na"] for r in rows] == [[0.0, 0.4], [0.9, 1.6]]
    low, high = rows
    assert (low["n_all"], low["n_trained"], low["n_held_out"]) == (3, 2, 1)
    assert low["within_one_all"] == pytest.approx(2 / 3)
    assert low["within_one_trained"] == pytest.approx(0.5)
    assert low["within_one_held_out"] == pytest.approx(1.0)
    assert high["n_all"] == 0 and np.isnan(high["within_one_all"])


def test_classifier_figures_report_the_argmax_rule_beside_the_median() -> None:
    # one image, true class 1, distribution (0.4, 0.1, 0.5, 0, ...): median 1, argmax 2
    p = np.zeros(11)
    p[:3] = [0.4, 0.1, 0.5]
    s = FocusScore(p, 1.1, 1, 0.1, 0.1, 0.1, 0.1, 0.5, 1.0, 0, 0, 1, "in_focus", None, None, "t")
    f = classifier_figures([1], [s])
    assert f["exact_accuracy"] == 1.0 and f["within_one_accuracy"] == 1.0
    assert f["argmax_exact_accuracy"] == 0.0 and f["argmax_within_one_accuracy"] == 1.0


def test_cli_evaluates_a_weights_folder_before_it_is_shipped(tiny_weights, tmp_path) -> None:
    import json

    from autofocus.cli import main

    out = tmp_path / "ev"
    argv = ["evaluate", "classifier", "--weights", str(tiny_weights), "--n-images", "10"]
    assert main([*argv, "--output", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert "classifier-test-" in report["model_version"]  # the folder's models, not shipped
    assert report["classifier"]["n_images"] == 10
    assert report["seed"] == 0
    # another held-out stream (a validation set): other images, recorded as such
    assert main([*argv, "--seed", "3", "--output", str(tmp_path / "v")]) == 0
    val = json.loads((tmp_path / "v" / "evaluation.json").read_text())
    assert val["seed"] == 3
    assert val["classifier_rows"] != report["classifier_rows"]
    assert "validation stream 3" in (tmp_path / "v" / "evaluation.md").read_text()


def test_untold_evaluation_scores_without_the_objective(tmp_path) -> None:
    """``--untold`` gives the scorer no objective (as a caller who does not pass it);
    the default tells it each image's."""
    import json

    from autofocus.cli import main
    from autofocus.evaluation import evaluate_classifier_synthetic
    from autofocus.scorer import LocalScorer

    inner = LocalScorer()
    seen: list = []

    class Recording:
        def score(self, frame, objective=None):
            seen.append(objective)
            return inner.score(frame, objective)

    evaluate_classifier_synthetic(Recording(), n_images=10, tell_objective=False)
    assert seen == [None] * 10
    seen.clear()
    evaluate_classifier_synthetic(Recording(), n_images=10)
    assert all(o is not None for o in seen) and len(seen) == 10
    out = tmp_path / "ev"
    argv = ["evaluate", "classifier", "--n-images", "10", "--untold", "--output", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "evaluation.json").read_text())["objective_told"] is False
    assert "not told the objective" in (out / "evaluation.md").read_text()


def test_precision_recall_f1_are_nan_only_where_undefined() -> None:
    import math

    from autofocus.evaluation import precision_recall_f1

    p, r, f = precision_recall_f1(0, 0, 0)  # no out-of-focus image, none called so
    assert math.isnan(p) and math.isnan(r) and math.isnan(f)
    assert precision_recall_f1(0, 1, 0)[2] == 0.0  # one false alarm, nothing right
    assert precision_recall_f1(0, 0, 2)[2] == 0.0
    p, r, f = precision_recall_f1(2, 1, 1)
    assert (p, r) == (2 / 3, 2 / 3) and f == pytest.approx(2 / 3)


def test_json_reports_have_no_bare_nan(tmp_path) -> None:
    import json

    import numpy as np

    from autofocus.reporting import write_json

    path = write_json(
        tmp_path / "r.json",
        {"a": float("nan"), "b": [1.0, np.float32("inf")], "c": np.array([np.nan, 2.0])},
    )
    body = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert (body["a"], body["b"], body["c"]) == (None, [1.0, None], [None, 2.0])


def test_a_users_objective_is_evaluated_through_the_general_classifier(tmp_path) -> None:
    """``--objective`` fields: every held-out image is seen through that objective and
    the scorer is told it; the report names it and its optics."""
    import json

    from autofocus.cli import main
    from autofocus.registry import load_card

    out = tmp_path / "ev"
    spec = "name=my63x,magnification=63,na=1.4,immersion_index=1.515"
    argv = ["evaluate", "classifier", "--n-images", "10", "--objective", spec]
    assert main([*argv, "--output", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["objective"] == "my63x"
    assert report["objective_fields"]["na"] == 1.4
    assert all(r["na"] == 1.4 for r in report["classifier_rows"])
    general = load_card("classifier").sha256[:12]
    assert report["model_version"].startswith(f"classifier-1.0-{general}+")
    assert "all through my63x (NA 1.4" in (out / "evaluation.md").read_text()


def test_markdown_table_escapes_pipes_inside_cells() -> None:
    from autofocus.reporting import markdown_table

    text = markdown_table(["score", "H(Z|S) bits"], [["|z| rule", 2.5]])
    header, rule, row = text.strip().splitlines()
    assert header == "| score | H(Z\\|S) bits |"
    assert row == "| \\|z\\| rule | 2.5 |"
    # every line splits into the same number of cells on the unescaped pipes
    cells = [len([c for c in line.replace("\\|", "").split("|")]) for line in (header, rule, row)]
    assert len(set(cells)) == 1
