"""The shipped weights: present, small, loadable, and they behave on simulated data."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autofocus.optics import OBJECTIVE_PRESETS, get_objective
from autofocus.registry import MODEL_NAMES, load_card, sha256_file

WEIGHTS = Path(__file__).resolve().parents[2] / "autofocus" / "weights"
MAX_BYTES = 4_000_000
OBJECTIVE_CLASSIFIERS = tuple(OBJECTIVE_PRESETS)
"""Every preset ships its own classifier (``classifier-<preset>``)."""


@pytest.fixture(scope="module")
def scorer():
    from autofocus.scorer import LocalScorer

    return LocalScorer()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_weights_and_cards_ship_small_and_consistent(name: str) -> None:
    pt = WEIGHTS / f"{name}.pt"
    assert pt.is_file() and pt.stat().st_size < MAX_BYTES
    card = load_card(name)
    assert card.sha256 == sha256_file(pt)
    assert card.training["command"].startswith("autofocus train " + name)
    assert card.training["recipe"]["seed"] == card.data["train_seed"]
    assert card.evaluation  # evaluation figures recorded


@pytest.mark.parametrize("objective", OBJECTIVE_CLASSIFIERS)
def test_per_objective_classifiers_ship_small_and_consistent(objective: str) -> None:
    pt = WEIGHTS / f"classifier-{objective}.pt"
    assert pt.is_file() and pt.stat().st_size < MAX_BYTES
    card = load_card("classifier", objective=objective)
    assert card.sha256 == sha256_file(pt)
    assert card.training["command"].startswith(
        f"autofocus train classifier --objective {objective} "
    )
    assert card.training["recipe"]["objective"] == card.data["objective"] == objective
    assert card.evaluation


def test_weights_are_in_the_built_wheel(tmp_path: Path) -> None:
    repo = WEIGHTS.parents[1]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(repo),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    stems = [*MODEL_NAMES, *(f"classifier-{o}" for o in OBJECTIVE_CLASSIFIERS)]
    for stem in stems:
        assert f"autofocus/weights/{stem}.pt" in names
        assert f"autofocus/weights/{stem}.json" in names
    assert "simulators/demo.cfg" in names


def _series(specimen: str, objective: str, levels: np.ndarray, seed: int = 11):
    from simulators.camera import CameraModel
    from simulators.series import render_series
    from simulators.specimens import make_specimen

    obj = get_objective(objective)
    dz = obj.level_to_dz_um(levels)
    return obj, render_series(
        make_specimen(specimen, seed=10**9 + seed),
        obj,
        dz,
        shape=(256, 256),
        camera=CameraModel(),
        seed=seed,
    )


@pytest.mark.parametrize("classifier", ["20X", "general", "general told the optics"])
@pytest.mark.parametrize(
    ("specimen", "trained_on"),
    [("nuclei", True), ("calibration_slide", True), ("microtubules", False)],
)
def test_level_ordering_through_focus(
    scorer, specimen: str, trained_on: bool, classifier: str
) -> None:
    """Levels and b rise monotonically away from focus; for specimen types seen in
    training they are also within a level of the truth.  Microtubules are held out of
    training and read about 1.5 levels too blurry at focus (reported, not hidden).
    Checked with the 20X preset's own classifier and with the general one (a frame
    whose objective the scorer is not told, or told as a custom objective with the
    20X optics: no preset, so the general classifier, given the optics)."""
    levels = np.arange(0, 11, 2.0)
    obj, series = _series(specimen, "20X", levels)
    told = {
        "20X": obj,
        "general": None,
        "general told the optics": obj.model_copy(update={"name": "my-20x"}),
    }[classifier]
    scores = scorer.score_batch(list(series.frames), told)
    if classifier == "general told the optics":  # the optics reach the classifier
        untold = scorer.score_batch(list(series.frames[:1]), None)[0]
        assert not np.allclose(scores[0].probabilities, untold.probabilities)
    assert scores[0].model_version.startswith(
        "classifier-1.0-" + load_card("classifier", objective=obj.name).sha256[:12]
        if classifier == "20X"
        else scorer.model_version
    )
    expected = np.array([s.expected_level for s in scores])
    assert all(s.determined for s in scores[:4])
    # monotone (non-decreasing up to a small tolerance) and close to the truth
    assert np.all(np.diff(expected) > -0.5), expected
    b = np.array([s.blur_px for s in scores[:4]])
    assert np.all(np.diff(b) > 0), b
    assert scores[3].verdict == "out_of_focus"
    if trained_on:
        assert abs(expected[0] - levels[0]) <= 1.0 and abs(expected[3] - levels[3]) <= 1.5
        assert scores[0].verdict == "in_focus"


def test_blank_and_noise_frames_are_undetermined(scorer) -> None:
    rng = np.random.default_rng(0)
    flat = rng.poisson(500, size=(512, 512)).astype(np.uint16) + 100  # shot noise only
    for frame in (flat, np.zeros((512, 512), np.uint16), np.full((300, 300), 65535, np.uint16)):
        s = scorer.score(frame, get_objective("10X"))
        assert s.verdict == "undetermined", s
        assert s.abs_dz_um is None


def test_blank_fields_with_illumination_or_hot_pixels_are_undetermined(scorer) -> None:
    """A vignetted or ramped empty field and a dark frame with hot pixels have no
    specimen.  The networks alone read the first as extreme blur (level ~9.5 with
    certainty ~0.6) and the last as in focus; the blank-field check makes them
    undetermined, in the full score and in the search's blur score alike."""
    from autofocus.scorer import LocalScorer

    rng = np.random.default_rng(1)
    y, x = np.mgrid[-1:1:1024j, -1:1:1024j]
    vignetted = (rng.poisson(800 * (1 - 0.35 * (x**2 + y**2))) + 100).astype(np.uint16)
    ramp = (rng.poisson(800 * (1 + 0.3 * x + 0.1 * y)) + 100).astype(np.uint16)
    dark = rng.normal(100, 2, (1024, 1024))
    hot = rng.integers(0, 1024, size=(30, 2))
    dark[hot[:, 0], hot[:, 1]] = 4000
    dark = dark.astype(np.uint16)
    obj = get_objective("20X")
    unchecked = LocalScorer(detect_blank_fields=False)
    assert unchecked.score(vignetted, obj).verdict == "out_of_focus"  # why the check exists
    assert unchecked.score(dark, obj).verdict == "in_focus"
    for frame in (vignetted, ramp, dark):
        s = scorer.score(frame, obj)
        assert s.verdict == "undetermined" and s.abs_dz_um is None, s
        assert s.textured_fraction == 0.0 and np.isnan(s.blur_px)
        assert not scorer.blur_score(frame, obj).determined
    # a specimen under the same vignetting is still scored
    _, series = _series("nuclei", "20X", np.array([1.0]))
    ys, xs = np.mgrid[-1:1:256j, -1:1:256j]
    lit = (series.frames[0] * (1 - 0.35 * (xs**2 + ys**2))).astype(np.uint16)
    assert scorer.score(lit, obj).determined


def test_cards_are_json(tmp_path: Path) -> None:
    for name in MODEL_NAMES:
        json.loads((WEIGHTS / f"{name}.json").read_text())
