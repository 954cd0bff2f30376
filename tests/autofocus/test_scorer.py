"""Scorer pipeline tests with tiny random weights (the shipped models are tested in
test_shipped_models.py)."""

from pathlib import Path

import numpy as np
import pytest

from autofocus.errors import InvalidFrameError, InvalidInputError, UnknownNameError
from autofocus.optics import N_LEVELS, get_objective
from autofocus.score import FocusScore
from autofocus.scorer import LocalScorer


def textured_frame(seed: int, shape: tuple[int, int], mean: float = 300.0) -> np.ndarray:
    """A specimen-like frame: smooth random structure (correlated over ~2 px) under shot
    noise.  Pure noise is a blank field, which the scorer calls undetermined."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    texture = gaussian_filter(rng.normal(size=shape), 2.0)
    expected = mean * (1.0 + 0.8 * texture / texture.std()).clip(0.05)
    return rng.poisson(expected).astype(np.uint16)


@pytest.fixture
def scorer(tiny_weights: Path) -> LocalScorer:
    return LocalScorer(weights_dir=str(tiny_weights))


def test_score_fields_and_patch_grids(scorer: LocalScorer) -> None:
    frame = textured_frame(0, (300, 200), 200.0)
    s = scorer.score(frame, get_objective("10X"), with_patches=True)
    assert isinstance(s, FocusScore)
    assert s.probabilities.shape == (N_LEVELS,)
    assert s.probabilities.sum() == pytest.approx(1.0)
    assert s.classifier_patches is not None and s.regressor_patches is not None
    assert s.classifier_patches.values["level"].shape == (4, 3)
    assert s.regressor_patches.values["blur_px"].shape == (3, 2)
    assert s.verdict in ("in_focus", "out_of_focus", "undetermined")
    d = s.to_dict(with_patches=True)
    back = FocusScore.from_dict(d)
    np.testing.assert_allclose(back.probabilities, s.probabilities)
    assert back.verdict == s.verdict


def test_constant_frames_are_undetermined(scorer: LocalScorer) -> None:
    for frame in (
        np.zeros((256, 256), np.uint16),
        np.full((256, 256), 65535, np.uint16),
        np.full((100, 100), 7.5, np.float32),
    ):
        s = scorer.score(frame)
        assert s.verdict == "undetermined"
        assert s.undetermined_reason == "no_signal"
        assert scorer.blur_score(frame).undetermined_reason == "no_signal"
        assert np.isnan(s.blur_px)
        assert s.textured_fraction == 0.0
        assert s.abs_dz_um is None
        # no level claimed: a uniform distribution, zero certainty, the median level 5
        np.testing.assert_allclose(s.probabilities, 1 / 11)
        assert s.certainty_aggregate == pytest.approx(0.0, abs=1e-9)
        assert s.predicted_level == 5


def test_undetermined_reasons(tiny_weights: Path) -> None:
    """Each way to get no verdict is named, in score and blur_score alike; a determined
    frame has no reason.  Texture and weight thresholds out of reach (the tiny networks
    never give texture probability 1) force the last two reasons."""
    frame = textured_frame(3, (256, 256))
    noise = np.random.default_rng(4).poisson(500, (256, 256)).astype(np.uint16)
    s = LocalScorer(weights_dir=str(tiny_weights), texture_threshold=0.0, min_weight=0.0)
    assert s.score(frame).determined and s.score(frame).undetermined_reason is None
    assert s.blur_score(frame).determined and s.blur_score(frame).undetermined_reason is None
    assert s.score(noise).undetermined_reason == "blank_field"
    assert s.blur_score(noise).undetermined_reason == "blank_field"
    no_tex = LocalScorer(weights_dir=str(tiny_weights), texture_threshold=1.0)
    assert no_tex.score(frame).undetermined_reason == "no_texture"
    assert no_tex.blur_score(frame).undetermined_reason == "no_texture"
    unsure = LocalScorer(weights_dir=str(tiny_weights), texture_threshold=0.0, min_weight=1e9)
    r = unsure.score(frame)
    assert r.verdict == "undetermined" and r.undetermined_reason == "low_certainty"
    assert np.isfinite(r.blur_px) and r.abs_dz_um is None
    assert unsure.blur_score(frame).undetermined_reason is None  # b is determined
    # the reason survives the wire format; payloads without it (older servers) read None
    assert FocusScore.from_dict(r.to_dict()).undetermined_reason == "low_certainty"
    d = r.to_dict()
    d.pop("undetermined_reason")
    assert FocusScore.from_dict(d).undetermined_reason is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"texture_threshold": 1.5},
        {"texture_threshold": float("nan")},
        {"texture_threshold": "half"},
        {"min_weight": float("inf")},
        {"min_weight": -0.1},
        {"in_focus_max_level": 11},
        {"in_focus_max_level": 2.5},
        {"in_focus_max_level": True},
        {"batch_size": 0},
        {"num_threads": 0},
    ],
)
def test_bad_scorer_settings_are_typed_errors(tiny_weights: Path, kwargs: dict) -> None:
    with pytest.raises(InvalidInputError):
        LocalScorer(weights_dir=str(tiny_weights), **kwargs)


def test_an_undetermined_reason_must_fit_the_score(scorer: LocalScorer) -> None:
    from dataclasses import replace

    s = scorer.score(np.zeros((100, 100), np.uint16))
    with pytest.raises(InvalidInputError, match="one of"):
        replace(s, undetermined_reason="cloudy")
    with pytest.raises(InvalidInputError, match="determined score"):
        replace(s, verdict="in_focus")
    b = scorer.blur_score(textured_frame(5, (256, 256)))
    assert b.determined
    with pytest.raises(InvalidInputError, match="determined score"):
        replace(b, undetermined_reason="no_texture")
    # low_certainty is the classifier's: a blur score cannot have it
    with pytest.raises(InvalidInputError, match="one of"):
        replace(b, blur_px=float("nan"), undetermined_reason="low_certainty")


def test_no_signal_is_a_constant_frame_only(scorer: LocalScorer) -> None:
    """A step between two constant halves on the regressor's tile seam leaves every
    regressor patch constant, but the frame has structure: no texture, not no signal."""
    step = np.zeros((256, 256), np.uint16)
    step[:, 128:] = 1000
    assert scorer.score(step).undetermined_reason == "no_texture"
    assert scorer.blur_score(step).undetermined_reason == "no_texture"


def test_reason_on_the_wire_across_versions(scorer: LocalScorer) -> None:
    """Sent only when there is one (a determined reply is as before); a reply from a
    newer server with fields or reasons this client does not know still reads."""
    det = scorer.score(textured_frame(6, (256, 256)))
    assert "undetermined_reason" not in det.to_dict()
    und = scorer.score(np.zeros((128, 128), np.uint16)).to_dict()
    assert und["undetermined_reason"] == "no_signal"
    newer = {**und, "undetermined_reason": "too_dim", "some_new_field": 3}
    back = FocusScore.from_dict(newer)
    assert back.verdict == "undetermined" and back.undetermined_reason is None


@pytest.mark.parametrize(
    "bad",
    [
        np.full((128, 128), np.nan, np.float32),
        np.zeros((128, 128, 3), np.uint8),
        np.zeros((4, 128, 128), np.uint16),
        np.zeros((83, 200), np.uint16),
        np.zeros((128, 128), bool),
        np.zeros((128, 128), complex),
        "not an image",
    ],
)
def test_bad_frames_raise_typed_errors(scorer: LocalScorer, bad: object) -> None:
    with pytest.raises(InvalidFrameError):
        scorer.score(bad)  # type: ignore[arg-type]


def test_small_frame_and_batch_agree(scorer: LocalScorer) -> None:
    frames = [textured_frame(3, (84, 84), 100.0), textured_frame(4, (400, 260), 100.0)]
    batch = scorer.score_batch(frames)
    singles = [scorer.score(f) for f in frames]
    for a, b in zip(batch, singles, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert a.verdict == b.verdict


def test_gain_offset_invariance_of_the_verdict(scorer: LocalScorer) -> None:
    base = textured_frame(5, (256, 256)).astype(np.float64)
    a = scorer.score(base.astype(np.uint16))
    b = scorer.score((base * 3.0 + 500).astype(np.uint16))
    assert a.determined and b.determined
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
    assert a.blur_px == pytest.approx(b.blur_px, rel=1e-3)


def test_aggregation_formulas_hand_computed() -> None:
    from autofocus.scorer import aggregate_distribution, image_certainties

    p = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    w = np.array([3.0, 1.0, 0.0])  # third patch (e.g. background) carries no weight
    np.testing.assert_allclose(aggregate_distribution(p, w), [0.75, 0.125, 0.125])
    np.testing.assert_allclose(aggregate_distribution(p, np.zeros(3)), [1 / 3] * 3)
    c = np.array([0.9, 0.3, 0.6])
    mean, mx, weighted = image_certainties(c, np.array([True, True, False]))
    assert mean == pytest.approx(0.6)
    assert mx == pytest.approx(0.9)
    assert weighted == pytest.approx((0.81 + 0.09) / 1.2)
    assert image_certainties(c, np.zeros(3, bool)) == (0.0, 0.0, 0.0)


def test_blur_score_is_the_regressor_part_of_score(scorer: LocalScorer) -> None:
    """The search's cheaper score: same b, spread, texture and patch grid, no classifier."""
    from autofocus.score import BlurScore, measure_blur

    frame = textured_frame(5, (300, 260), 2000.0)
    full = scorer.score(frame, with_patches=True)
    fast = scorer.blur_score(frame, with_patches=True)
    assert isinstance(fast, BlurScore)
    assert full.determined and fast.determined
    assert fast.blur_px == full.blur_px
    assert fast.blur_spread_px == full.blur_spread_px
    assert fast.textured_fraction == full.textured_fraction
    assert fast.model_version == full.model_version
    assert full.regressor_patches is not None and fast.regressor_patches is not None
    for k, v in full.regressor_patches.values.items():
        np.testing.assert_array_equal(fast.regressor_patches.values[k], v)
    assert scorer.blur_score(frame).regressor_patches is None
    assert isinstance(measure_blur(scorer, frame, None, with_patches=False), BlurScore)
    blank = scorer.blur_score(np.full((128, 128), 500, np.uint16))
    assert not blank.determined and np.isnan(blank.blur_px)
    with pytest.raises(InvalidFrameError):
        scorer.blur_score(np.zeros((10, 10), np.uint16))


def test_a_preset_with_its_own_classifier_is_scored_by_it(
    tiny_weights: Path, add_objective_classifier
) -> None:
    add_objective_classifier(tiny_weights, "20X")
    scorer = LocalScorer(weights_dir=str(tiny_weights))
    frame = textured_frame(2, (256, 256), 500.0)
    preset = get_objective("20X")
    own = scorer.score(frame, preset)
    general = scorer.score(frame, None)
    assert own.model_version.startswith("classifier-test-") and own.model_version != (
        general.model_version
    )
    assert own.model_version == scorer.model_version_for(preset)
    assert scorer.blur_score(frame, preset).model_version == own.model_version
    assert not np.allclose(own.probabilities, general.probabilities)
    assert own.blur_px == general.blur_px  # one regressor for every objective
    # same name, other optics: not that preset, so the general classifier
    other = preset.model_copy(update={"na": 0.6})
    assert scorer.score(frame, other).model_version == general.model_version
    # a preset without its own classifier: the general one
    assert scorer.score(frame, get_objective("40X")).model_version == general.model_version
    np.testing.assert_allclose(
        scorer.score_batch([frame, frame], preset)[1].probabilities, own.probabilities
    )
    # a preset's name (what a RemoteScorer also accepts) is that preset
    assert scorer.score(frame, "20x").model_version == own.model_version
    assert scorer.blur_score(frame, "20X").model_version == own.model_version


@pytest.mark.parametrize(
    ("objective", "error"), [("999X", UnknownNameError), (123, InvalidInputError)]
)
def test_an_unknown_objective_is_a_typed_error(
    scorer: LocalScorer, objective: object, error: type
) -> None:
    frame = np.random.default_rng(2).poisson(500.0, (128, 128)).astype(np.uint16)
    for call in (scorer.score, scorer.blur_score):
        with pytest.raises(error):
            call(frame, objective)
    with pytest.raises(error):
        scorer.score_batch([frame], objective)


def test_abs_dz_from_b_follows_the_regressors_blur_ray(scorer: LocalScorer) -> None:
    from autofocus.optics import blur_px_per_um

    obj = get_objective("60x-1.4-oil")  # mean ray 0.60 x the marginal one
    frame = textured_frame(3, (256, 256))
    card = scorer.regressor_card
    assert card.blur_ray == "marginal"  # a card that does not say: the old label
    s = scorer.score(frame, obj)
    assert s.abs_dz_um == pytest.approx(s.blur_px / blur_px_per_um(obj, "marginal"))
    data = {**card.data, "domain": {**card.data.get("domain", {}), "blur_ray": "mean"}}
    scorer.regressor_card = card.model_copy(update={"data": data})
    m = scorer.score(frame, obj)
    assert m.blur_px == s.blur_px
    assert m.abs_dz_um == pytest.approx(s.abs_dz_um / 0.5997, rel=1e-3)


def test_channels_last_forward_matches_the_plain_network(scorer: LocalScorer) -> None:
    """The scorer runs its folded networks on channels-last feature maps (faster
    convolutions on CPU); the outputs are the plain networks' to float32 rounding."""
    import torch

    from autofocus.registry import load_model

    rng = np.random.default_rng(8)
    for name, net, size in (("classifier", scorer._cls, 84), ("regressor", scorer._reg, 128)):
        plain, _ = load_model(name, scorer._weights_dir)
        x = rng.normal(size=(5, size, size)).astype(np.float32)
        with torch.inference_mode():
            want = plain.eval()(torch.from_numpy(x)[:, None]).numpy()
        assert next(net.parameters()).is_contiguous(memory_format=torch.channels_last)
        np.testing.assert_allclose(scorer._run(net, x), want, rtol=1e-4, atol=1e-4)
