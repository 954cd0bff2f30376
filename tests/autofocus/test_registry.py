from pathlib import Path

import pytest

from autofocus.errors import ModelWeightsError, UnknownNameError
from autofocus.registry import has_model, load_card, load_model


def test_loads_valid_weights(tiny_weights: Path) -> None:
    model, card = load_model("classifier", tiny_weights)
    assert card.name == "classifier"
    assert not model.training
    assert card.model_id.startswith("classifier-test-")


def test_checksum_mismatch_is_refused(tiny_weights: Path) -> None:
    pt = tiny_weights / "regressor.pt"
    data = bytearray(pt.read_bytes())
    data[-10] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(ModelWeightsError, match="corrupted"):
        load_model("regressor", tiny_weights)


def test_missing_files(tmp_path: Path, tiny_weights: Path) -> None:
    with pytest.raises(ModelWeightsError, match="missing"):
        load_card("classifier", tmp_path)
    (tiny_weights / "classifier.pt").unlink()
    with pytest.raises(ModelWeightsError, match="missing"):
        load_model("classifier", tiny_weights)
    with pytest.raises(UnknownNameError):
        load_model("resnet", tiny_weights)


def test_invalid_card(tiny_weights: Path) -> None:
    (tiny_weights / "classifier.json").write_text("{not json")
    with pytest.raises(ModelWeightsError, match="invalid"):
        load_card("classifier", tiny_weights)


def test_card_with_impossible_architecture_is_refused(tiny_weights: Path) -> None:
    import json

    path = tiny_weights / "classifier.json"
    card = json.loads(path.read_text())
    card["architecture"]["depths"] = [1]  # three blocks need three counts
    path.write_text(json.dumps(card))
    with pytest.raises(ModelWeightsError, match="architecture"):
        load_model("classifier", tiny_weights)


def test_a_card_whose_input_size_is_not_its_patch_is_refused(
    tiny_weights: Path,
) -> None:
    import json

    path = tiny_weights / "regressor.json"
    card = json.loads(path.read_text())
    card["input_size"] = 256  # the architecture (no "patch") is a 128 px model
    path.write_text(json.dumps(card))
    with pytest.raises(ModelWeightsError, match="input_size 256"):
        load_model("regressor", tiny_weights)
    path = tiny_weights / "classifier.json"
    card = json.loads(path.read_text())
    card["input_size"] = 96  # a classifier reads 84 px patches
    path.write_text(json.dumps(card))
    with pytest.raises(ModelWeightsError, match="input_size 96"):
        load_model("classifier", tiny_weights)


def test_a_classifier_for_one_objective_loads_beside_the_general_one(
    tiny_weights: Path, add_objective_classifier
) -> None:
    import json

    assert not has_model("classifier", tiny_weights, "20X")
    add_objective_classifier(tiny_weights, "20X")
    assert has_model("classifier", tiny_weights, "20X")
    general, _ = load_model("classifier", tiny_weights)
    own, card = load_model("classifier", tiny_weights, "20X")
    assert own is not general and card.data["objective"] == "20X"
    # a card must be for the objective its file name says
    card_json = json.loads((tiny_weights / "classifier-20X.json").read_text())
    (tiny_weights / "classifier-10X.json").write_text(json.dumps(card_json))
    with pytest.raises(ModelWeightsError, match="trained for objective '20X', not '10X'"):
        load_card("classifier", tiny_weights, "10X")


def test_regressor_card_says_which_blur_its_b_reads(tiny_weights: Path) -> None:
    import json

    card = load_card("regressor", tiny_weights)
    assert card.blur_ray == "marginal"  # not recorded: the label of every earlier card
    path = tiny_weights / "regressor.json"
    raw = json.loads(path.read_text())
    raw["data"] = {**raw["data"], "domain": {"blur_ray": "mean"}}
    path.write_text(json.dumps(raw))
    assert load_card("regressor", tiny_weights).blur_ray == "mean"
    raw["data"]["domain"] = None  # no domain recorded: the old label, not a crash
    path.write_text(json.dumps(raw))
    assert load_card("regressor", tiny_weights).blur_ray == "marginal"
    raw["data"]["domain"] = {"blur_ray": "chief"}
    path.write_text(json.dumps(raw))
    # refused when the card is loaded, not in the middle of an acquisition
    with pytest.raises(ModelWeightsError, match="blur_ray"):
        load_card("regressor", tiny_weights)
