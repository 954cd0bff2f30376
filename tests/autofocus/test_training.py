"""A tiny end-to-end training run: recipe -> weights + card -> registry load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from autofocus.cli import main
from autofocus.errors import InvalidInputError
from autofocus.registry import load_model
from autofocus.training.train import Recipe, train


def _tiny(**changes) -> Recipe:
    """A recipe that trains in seconds: one epoch of a two-block trunk on a few fields."""
    base = {
        "model": "classifier",
        "n_fields": 29,
        "n_eval_fields": 2,
        "epochs": 1,
        "threads": 1,
        "workers": 1,
        "widths": (8, 16),
        "hidden": 8,
    }
    return Recipe(**{**base, **changes})


def test_tiny_recipe_writes_loadable_weights_with_its_architecture(tmp_path: Path) -> None:
    recipe = Recipe(
        model="classifier",
        n_fields=29,
        n_eval_fields=2,
        epochs=1,
        threads=1,
        workers=1,
        widths=(8, 16, 24),
        hidden=12,
        depths=(1, 2),
        spectral_bins=6,
        specimens=("procedural", "tissue"),
    )
    card = train(recipe, tmp_path, command="autofocus train classifier (test)")
    assert card["architecture"] == {
        "class": "DefocusClassifier",
        "widths": [8, 16, 24],
        "hidden": 12,
        "depths": [1, 2],
        "spectral_bins": 6,
    }
    on_disk = json.loads((tmp_path / "classifier.json").read_text())
    assert on_disk["training"]["recipe"]["widths"] == [8, 16, 24]
    assert on_disk["data"]["train_specimens"] == ["procedural", "tissue"]
    assert on_disk["data"]["domain"]["specimens"] == ["procedural", "tissue"]
    # the held-out set keeps its named types whatever the training mix
    assert set(card["evaluation"]["held_out_patches"]["per_specimen_within_one"]) <= {
        "nuclei",
        "actin",
        "beads",
        "tissue",
        "calibration_slide",
        "phase",
        "microtubules",
    }
    assert on_disk["sha256"] == card["sha256"]
    model, loaded = load_model("classifier", tmp_path)
    assert model.widths == (8, 16, 24)
    assert model.depths == (1, 2)
    assert model.spectral_bins == 6 and model.spectrum is not None
    assert loaded.sha256 == card["sha256"]
    assert 0.0 <= card["evaluation"]["held_out_patches"]["within_one_accuracy"] <= 1.0


@pytest.mark.parametrize(
    "changes",
    [
        {"widths": (8,)},
        {"widths": (8, 0)},
        {"hidden": 0},
        {"epochs": 0},
        {"depths": (1,)},
        {"depths": (1, 0)},
        {"widths": (8, 16), "depths": (1, 2)},
        {"spectral_bins": 1},
        {"spectral_bins": 43},  # more rings than an 84 px patch has
        {"specimens": ()},
        {"specimens": ("microtubules",)},  # held out: never trained on
        {"specimens": ("empty",)},
        {"specimens": ("tissue", "nope")},
        {"specimens": ("tissue", "tissue")},
        {"max_blur_px": 130.0},  # classifier levels are fixed; the range is the regressor's
        {"model": "regressor", "max_blur_px": 30.0},
        {"model": "regressor", "max_blur_px": 257.0},
        {"near_share": 0.0},  # the blur range is the regressor's
        {"model": "regressor", "near_share": 1.5},
        {"model": "regressor", "near_share": float("nan")},
        {"model": "regressor", "near_share": "half"},
        {"patch_px": 256},  # the classifier's 84 px patches are fixed
        {"model": "regressor", "patch_px": 192},  # must tile the 256 px field exactly
        {"model": "regressor", "patch_px": "256"},
        {"model": "regressor", "objective": "20X"},  # one regressor serves every objective
        {"condenser_fill": (0.8, 0.6)},
        {"condenser_fill": (0.0, 0.6)},  # a closed aperture is the point source: None
        {"condenser_fill": (0.6, 1.2)},  # the condenser cannot fill more than the pupil
        {"condenser_fill": (0.6,)},
        {"model": "regressor", "condenser_fill": (0.6, 0.8)},
        {"blur_ray": "mean"},  # the classifier's levels are always the mean ray's
        {"model": "regressor", "blur_ray": "chief"},
        {"objective": "20X", "optics_input": True},  # one preset: its optics never vary
        {"objective": "20X", "immersion": "mixed"},
        {"na_range": (0.2, 2.0)},  # no immersion reaches NA 2
        {"na_range": (1.0, 0.5)},
        {"sampling_range": (0.1, 1.0)},
        {"immersion": "honey"},
    ],
)
def test_bad_recipes_are_refused_before_rendering(tmp_path: Path, changes: dict) -> None:
    recipe = Recipe(
        **{"model": "classifier", "n_fields": 29, "workers": 1, "threads": 1, **changes}
    )
    with pytest.raises(InvalidInputError):
        train(recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--widths", "--depths"])
def test_cli_lists_must_be_integers(tmp_path: Path, capsys, flag: str) -> None:
    out = tmp_path / "o"
    assert main(["train", "classifier", flag, "8,x", "--output", str(out)]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert not out.exists()


def test_regressor_blur_range_is_recorded_in_the_card(tmp_path: Path) -> None:
    recipe = _tiny(
        model="regressor", n_fields=64, n_eval_fields=4, max_blur_px=140.0, blur_ray="mean"
    )
    card = train(recipe, tmp_path, command="autofocus train regressor (test)")
    assert card["training"]["recipe"]["max_blur_px"] == 140.0
    assert card["data"]["domain"]["max_blur_px"] == 140.0
    assert card["data"]["domain"]["blur_ray"] == "mean"
    _, loaded = load_model("regressor", tmp_path)
    assert loaded.blur_ray == "mean"


def test_cli_refuses_a_blur_range_for_the_classifier(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["train", "classifier", "--max-blur-px", "130", "--output", str(out)]) == 2
    assert "regressor only" in capsys.readouterr().err
    assert not out.exists()


def test_patch_sets_are_the_fields_tiles_in_field_order() -> None:
    """A training set holds each field's raw tiles, whether one process or two built it."""
    import numpy as np

    from autofocus.tiling import TileGrid, extract_patches
    from autofocus.training.data import DomainConfig, render_field_sample
    from autofocus.training.dataset import build_patchset

    cfg = DomainConfig(field_px=252, specimens=("tissue",))
    ps = build_patchset(2, 0, cfg, 84, workers=1)
    assert ps.patches.shape == (18, 84, 84)
    fs = render_field_sample(1, 0, cfg)
    grid = TileGrid.for_shape(fs.frame.shape, 84)
    np.testing.assert_array_equal(ps.patches[9:], extract_patches(fs.frame, grid))
    # chunks from two processes are assembled in field order, into the same arrays
    two = build_patchset(2, 0, cfg, 84, workers=2, chunk=1)
    for name in ("patches", "level", "specimen", "field", "texture"):
        np.testing.assert_array_equal(getattr(two, name), getattr(ps, name))


def test_objective_recipe_writes_a_classifier_for_that_preset(tmp_path: Path) -> None:
    from autofocus.errors import UnknownNameError

    recipe = _tiny(objective="20x")  # the preset's own spelling is what gets recorded
    card = train(recipe, tmp_path, command="autofocus train classifier --objective 20x (test)")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "classifier-20X.json",
        "classifier-20X.pt",
    ]
    assert card["data"]["objective"] == card["data"]["domain"]["objective"] == "20X"
    _, loaded = load_model("classifier", tmp_path, "20X")
    assert loaded.sha256 == card["sha256"]
    with pytest.raises(UnknownNameError):
        train(Recipe(model="classifier", n_fields=29, objective="25X"), tmp_path / "no")
    assert not (tmp_path / "no").exists()


def test_objective_fields_are_seen_through_that_preset() -> None:
    from autofocus.optics import get_objective
    from autofocus.training.data import DomainConfig, render_field_sample

    fs = render_field_sample(3, 0, DomainConfig(field_px=84, objective="40X"))
    assert fs.objective == get_objective("40X")
    assert render_field_sample(3, 0, DomainConfig(field_px=84)).objective.name == "random"


def test_mean_ray_fields_label_the_blur_the_image_shows() -> None:
    from autofocus.optics import blur_px_per_um
    from autofocus.training.data import DomainConfig, render_field_sample, waves_per_blur_px

    marginal = DomainConfig(field_px=128, defocus="regressor")
    mean = DomainConfig(field_px=128, defocus="regressor", blur_ray="mean")
    for i in range(12):
        a, b = render_field_sample(i, 0, marginal), render_field_sample(i, 0, mean)
        obj = b.objective
        assert a.objective == obj and a.specimen == b.specimen
        # the marginal label is computed as every earlier recipe computed it, to the bit
        assert a.blur_px == 2 * abs(a.dz_um) * math.tan(obj.half_angle_rad) / obj.pixel_size_um
        # the same drawn diameter, now of the mean ray: further out at high NA
        assert b.blur_px == pytest.approx(a.blur_px)
        assert b.blur_px == pytest.approx(abs(b.dz_um) * blur_px_per_um(obj, "mean"))
        assert abs(b.dz_um) * obj.blur_slope == pytest.approx(
            abs(a.dz_um) * np.tan(obj.half_angle_rad)
        )
        # aberrations keep their waves; their pixel unit follows the label
        ratio = waves_per_blur_px(obj, "mean") / waves_per_blur_px(obj, "marginal")
        assert ratio == pytest.approx(np.tan(obj.half_angle_rad) / obj.blur_slope)
        np.testing.assert_allclose(np.array(b.aberrations_px) * ratio, a.aberrations_px, atol=1e-9)


def test_marginal_regressor_draws_are_those_of_every_earlier_recipe() -> None:
    """The shipped regressor's recipe must still reproduce it: the |dz| drawn for each
    field and the aberration unit, bit for bit as commit 36d4d9f computed them."""
    import hashlib

    from autofocus.training.data import (
        DomainConfig,
        _sample_abs_dz_um,
        random_objective,
        waves_per_blur_px,
    )

    cfg = DomainConfig(defocus="regressor")
    vals = []
    for i in range(2000):
        rng = np.random.default_rng([0, i])
        obj = random_objective(rng, cfg)
        vals += [_sample_abs_dz_um(rng, cfg, obj), waves_per_blur_px(obj)]
    a = np.array(vals, dtype=np.float64)
    assert float(a[::2].sum()).hex() == "0x1.bfd5760d447d8p+14"
    assert hashlib.sha256(a.tobytes()).hexdigest()[:16] == "e5c84927fe80ab77"


def test_near_share_sets_how_many_regressor_fields_are_drawn_below_30_px() -> None:
    """near_share 0 draws the blur uniformly over [0, max_blur_px]; 1 keeps every field
    in [0, 30] px; the default (0.5) is the shipped recipe's mix."""
    from autofocus.optics import ray_blur_slope
    from autofocus.training.data import DomainConfig, _sample_abs_dz_um, random_objective

    def blurs(cfg: DomainConfig) -> np.ndarray:
        out = []
        for i in range(3000):
            rng = np.random.default_rng([0, i])
            obj = random_objective(rng, cfg)
            dz = _sample_abs_dz_um(rng, cfg, obj)
            out.append(2 * dz * ray_blur_slope(obj, cfg.blur_ray) / obj.pixel_size_um)
        return np.array(out)

    flat = blurs(DomainConfig(defocus="regressor", near_share=0.0, max_blur_px=130.0))
    assert flat.max() <= 130.0 + 1e-9
    assert np.mean(flat < 30) == pytest.approx(30 / 130, abs=0.03)  # uniform: no step
    assert np.mean(flat > 100) == pytest.approx(30 / 130, abs=0.03)
    near = blurs(DomainConfig(defocus="regressor", near_share=1.0))
    assert near.max() <= 30.0 + 1e-9
    mixed = blurs(DomainConfig(defocus="regressor"))
    assert np.mean(mixed < 30) == pytest.approx(0.5 + 0.5 * 0.3, abs=0.03)


def test_near_share_is_recorded_in_the_card(tmp_path: Path) -> None:
    card = train(
        _tiny(model="regressor", n_fields=64, n_eval_fields=4, near_share=0.0),
        tmp_path,
        command="autofocus train regressor (test)",
    )
    assert card["training"]["recipe"]["near_share"] == 0.0
    assert card["data"]["domain"]["near_share"] == 0.0


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_domain_config_refuses_a_near_share_outside_0_1(share: float) -> None:
    from autofocus.training.data import DomainConfig

    with pytest.raises(InvalidInputError, match="near_share"):
        DomainConfig(defocus="regressor", near_share=share)


def test_domain_config_refuses_an_unknown_blur_ray() -> None:
    from autofocus.training.data import DomainConfig

    with pytest.raises(InvalidInputError, match="blur_ray"):
        DomainConfig(defocus="regressor", blur_ray="chief")  # type: ignore[arg-type]


def test_cli_refuses_a_blur_ray_for_the_classifier(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["train", "classifier", "--blur-ray", "mean", "--output", str(out)]) == 2
    assert "regressor only" in capsys.readouterr().err
    assert not out.exists()


def test_koehler_fields_change_only_brightfield_and_are_recorded(tmp_path: Path) -> None:
    from dataclasses import replace

    from autofocus.training.data import DomainConfig, render_field_sample

    point = DomainConfig(field_px=84)
    koehler = replace(point, condenser_fill=(0.6, 0.8))
    seen_phase = 0
    for i in range(40):
        a, b = render_field_sample(i, 0, point), render_field_sample(i, 0, koehler)
        assert (a.specimen, a.level) == (b.specimen, pytest.approx(b.level))
        assert a.meta["condenser_na"] is None
        if a.specimen != "phase":
            np.testing.assert_array_equal(a.frame, b.frame)
            assert b.meta["condenser_na"] is None and b.dz_um == a.dz_um
        else:
            seen_phase += 1
            na, na_c = b.objective.na, b.meta["condenser_na"]
            assert 0.6 * na <= na_c <= 0.8 * na
            # the level is the condenser cone's blur: the same level lies further out
            assert abs(b.dz_um) > abs(a.dz_um) and b.dz_um * a.dz_um > 0
            assert b.level == pytest.approx(b.objective.dz_to_level(b.dz_um, na_c))
    assert seen_phase >= 2
    train(_tiny(condenser_fill=(0.6, 0.8)), tmp_path, command="(test)")
    card = json.loads((tmp_path / "classifier.json").read_text())
    assert card["training"]["recipe"]["condenser_fill"] == [0.6, 0.8]
    assert card["data"]["domain"]["condenser_fill"] == [0.6, 0.8]


@pytest.mark.parametrize("text", ["0.6", "a,b", "0.9,0.5", "0,0.5"])
def test_cli_condenser_fill_is_checked(tmp_path: Path, capsys, text: str) -> None:
    out = tmp_path / "o"
    assert main(["train", "classifier", "--condenser-fill", text, "--output", str(out)]) == 2
    assert "condenser" in capsys.readouterr().err
    assert not out.exists()
    assert main(["evaluate", "classifier", "--condenser-fill", text, "--output", str(out)]) == 2
    assert not out.exists()


def test_cli_condenser_fill_parses_a_range_or_none() -> None:
    from autofocus.cli import _fill_range

    assert _fill_range("0.6,0.8") == (0.6, 0.8)
    assert _fill_range(" None ") is None
    assert _fill_range(None) is None


def _scorer_with_optics_model(kind: str, tmp_path: Path, **changes):
    """Train a tiny ``kind`` model with the optics input, check its card and rebuilt
    architecture, and return a scorer of it beside the other shipped model."""
    from autofocus.models import N_OPTICS_FEATURES
    from autofocus.scorer import LocalScorer

    card = train(_tiny(model=kind, optics_input=True, **changes), tmp_path)
    assert card["architecture"]["optics_features"] == N_OPTICS_FEATURES
    assert card["training"]["recipe"]["optics_input"] is True
    model, _ = load_model(kind, tmp_path)
    assert model.optics_features == N_OPTICS_FEATURES
    other = "regressor" if kind == "classifier" else "classifier"
    for suffix in (".pt", ".json"):
        src = Path(__file__).parents[2] / "autofocus" / "weights" / f"{other}{suffix}"
        (tmp_path / f"{other}{suffix}").write_bytes(src.read_bytes())
    return LocalScorer(weights_dir=str(tmp_path), detect_blank_fields=False)


def _textured_frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(200 + 100 * rng.random((256, 256))).astype(np.uint16)


def test_optics_recipe_records_its_architecture_and_the_scorer_feeds_the_optics(
    tmp_path: Path,
) -> None:
    """The recipe's card lists the optics input, the registry rebuilds it, and the scorer
    gives it the objective's optics (an untrained head: this tests the wiring, not what
    training makes of it)."""
    from autofocus.optics import get_objective

    scorer = _scorer_with_optics_model("classifier", tmp_path)
    frame = _textured_frame(3)
    # the scorer tells it the objective (a custom one: presets have their own classifier)
    custom = get_objective("20X").model_copy(update={"name": "my-20x"})
    told = scorer.score(frame, custom).probabilities
    untold = scorer.score(frame).probabilities
    assert not np.allclose(told, untold)


def test_a_regressor_with_optics_is_told_them_by_both_scoring_paths(tmp_path: Path) -> None:
    """The regressor recipe with optics input: its card lists them, and ``score`` and
    ``blur_score`` both hand the objective's optics to it (the same b either way)."""
    from autofocus.optics import get_objective

    scorer = _scorer_with_optics_model("regressor", tmp_path, n_fields=64)
    frame = _textured_frame(4)
    obj = get_objective("20X")
    told = scorer.score(frame, obj, with_patches=True).regressor_patches
    untold = scorer.score(frame, with_patches=True).regressor_patches
    # the head's texture output is never clipped: it shows the optics arrived
    assert not np.allclose(told.values["texture"], untold.values["texture"])
    fast = scorer.blur_score(frame, obj, with_patches=True).regressor_patches
    for key in ("texture", "blur_px"):
        np.testing.assert_array_equal(fast.values[key], told.values[key])


def test_mixed_immersion_draws_every_immersion_within_its_reach() -> None:
    """``immersion="mixed"``: water, silicone, glycerol and oil objectives as well as air,
    each only at NAs it can reach; the NA, wavelength and sampling draws are those of
    the ``by_na`` stream (the immersion has a side stream of its own)."""
    from autofocus.training.data import (
        IMMERSION_INDICES,
        MAX_NA_OVER_N,
        DomainConfig,
        random_objective,
    )

    mixed = DomainConfig(na_range=(0.1, 1.49), immersion="mixed")
    by_na = DomainConfig(na_range=(0.1, 1.49))
    seen = set()
    for i in range(400):
        a = random_objective(np.random.default_rng([0, i]), mixed, np.random.default_rng([0, i, 2]))
        b = random_objective(np.random.default_rng([0, i]), by_na)
        assert (a.na, a.wavelength_um, a.camera_pixel_size_um) == (
            b.na,
            b.wavelength_um,
            b.camera_pixel_size_um,
        )
        assert a.na / a.immersion_index <= MAX_NA_OVER_N
        seen.add(a.immersion_index)
    assert seen == set(IMMERSION_INDICES)


def test_mixed_immersion_needs_its_side_stream_and_leaves_every_other_draw() -> None:
    """The rendering path draws the immersion from ``(seed, i, 2)``: defocus, specimen,
    aberrations and camera of each field are those of the ``by_na`` stream."""
    from autofocus.training.data import DomainConfig, random_objective, render_field_sample

    mixed = DomainConfig(immersion="mixed", field_px=64)
    with pytest.raises(InvalidInputError, match="side"):
        random_objective(np.random.default_rng(0), mixed)
    by_na = DomainConfig(field_px=64)
    for i in range(6):
        a, b = render_field_sample(i, 0, mixed), render_field_sample(i, 0, by_na)
        assert (a.level, a.specimen, a.meta["aberrations"]) == (
            b.level,
            b.specimen,
            b.meta["aberrations"],
        )
        assert a.objective.na == b.objective.na


def test_a_256_px_regressor_trains_loads_and_scores_frames_in_256_px_tiles(
    tmp_path: Path,
) -> None:
    """patch_px 256: one patch per 256 px training field; the card records it (input
    size and architecture), the registry rebuilds it, and the scorer tiles frames with
    it: every pixel covered, frames smaller than a tile reflect-padded."""
    from autofocus.scorer import LocalScorer
    from autofocus.tiling import TileGrid

    card = train(
        _tiny(model="regressor", n_fields=12, n_eval_fields=2, batch_size=4, patch_px=256),
        tmp_path,
        command="autofocus train regressor (test)",
    )
    assert card["input_size"] == 256
    assert card["architecture"]["patch"] == 256
    assert card["data"]["n_train_patches"] == 12  # one per field
    assert card["data"]["domain"]["field_px"] == 256
    model, loaded = load_model("regressor", tmp_path)
    assert model.patch == 256 and loaded.input_size == 256
    # the default (128 px) card keeps its old architecture record, without "patch"
    default = train(
        _tiny(model="regressor", n_fields=8, n_eval_fields=1, batch_size=8), tmp_path / "d"
    )
    assert default["input_size"] == 128 and "patch" not in default["architecture"]

    train(_tiny(), tmp_path)  # a scorer loads both models
    scorer = LocalScorer(weights_dir=str(tmp_path), detect_blank_fields=False)
    assert scorer.regressor_patch == 256
    rng = np.random.default_rng(0)
    frame = rng.poisson(200, (300, 520)).astype(np.uint16)
    s = scorer.score(frame, with_patches=True)
    grid = s.regressor_patches
    assert grid is not None and grid.size == 256 and grid.values["blur_px"].shape == (2, 3)
    cover = TileGrid(np.asarray(grid.ys), np.asarray(grid.xs), 256).coverage(frame.shape)
    assert cover.min() >= 1
    small = scorer.score(frame[:100, :140], with_patches=True)  # padded up to one tile
    assert small.regressor_patches is not None
    assert small.regressor_patches.values["blur_px"].shape == (1, 1)


def test_input_asinh_is_recorded_and_rebuilt_from_the_card(tmp_path: Path) -> None:
    card = train(_tiny(input_asinh=True), tmp_path, command="autofocus train classifier (t)")
    assert card["architecture"]["input_asinh"] is True
    assert card["training"]["recipe"]["input_asinh"] is True
    model, _ = load_model("classifier", tmp_path)
    assert model.input_asinh
    plain = train(_tiny(), tmp_path / "plain")
    assert "input_asinh" not in plain["architecture"]  # older cards read the same
