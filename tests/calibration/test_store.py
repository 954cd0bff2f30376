"""Calibration store: golden-file round trip, listing, deleting, refusing mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autofocus.errors import CalibrationError, UnknownNameError
from autofocus.optics import get_objective
from calibration.store import (
    Calibration,
    CalibrationStore,
    ScorerIdentity,
    load_calibration_file,
    scorer_identity,
)

GOLDEN = Path(__file__).parent / "data" / "calibration_v1.json"
MODEL = ScorerIdentity(model_id="regressor-1.0-0123456789ab", sha256="0123456789ab" + "0" * 52)


def test_golden_file_round_trip() -> None:
    cal = load_calibration_file(GOLDEN)
    assert cal.schema_version == 1
    assert cal.objective == get_objective("10X")
    assert cal.curve.alpha == 0.75 and cal.curve.dz_range_um == (-96.0, 94.0)
    assert cal.samples[1].b_px == 2.25 and cal.samples[3].b_px is None
    assert cal.created_utc.year == 2025
    # serialising again gives the golden text byte for byte
    assert cal.model_dump_json(indent=2) + "\n" == GOLDEN.read_text("utf-8")


def test_store_save_list_load_delete(tmp_path: Path) -> None:
    cal = load_calibration_file(GOLDEN)
    store = CalibrationStore(tmp_path / "cals")
    path = store.save(cal)
    assert path.name == "scope-A__10X.json"
    assert [c.microscope for c in store.list()] == ["scope-A"]
    back = store.load(get_objective("10X"), "scope-A", scorer=MODEL)
    assert back == cal
    assert store.load("10x", "scope-A") == cal
    store.delete("10X", "scope-A")
    assert store.list() == []
    with pytest.raises(UnknownNameError):
        store.load("10X", "scope-A")


def test_refuses_other_objective(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path)
    store.save(load_calibration_file(GOLDEN))
    binned = get_objective("10X").with_binning(2)
    with pytest.raises(CalibrationError, match="different objective"):
        store.load(binned, "scope-A")
    cal = load_calibration_file(GOLDEN)
    with pytest.raises(CalibrationError, match="objective '10X'"):
        cal.check_compatible("40X", MODEL)


def test_refuses_other_scorer_model(tmp_path: Path) -> None:
    cal = load_calibration_file(GOLDEN)
    with pytest.raises(CalibrationError, match="recalibrate"):
        cal.check_compatible(get_objective("10X"), "regressor-2.0-ffffffffffff")

    class Remote:
        model_version = "classifier-1.0-aaaa+regressor-1.0-0123456789ab"

    cal.check_compatible(get_objective("10X"), Remote())  # same regressor: accepted
    assert scorer_identity(Remote()).model_id == "regressor-1.0-0123456789ab"


def test_invalid_files_give_calibration_errors(tmp_path: Path) -> None:
    data = json.loads(GOLDEN.read_text("utf-8"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration_file(bad)
    data2 = dict(data, schema_version=99)
    bad.write_text(json.dumps(data2))
    with pytest.raises(CalibrationError, match="schema version"):
        load_calibration_file(bad)
    data3 = dict(data, typo_field=1)
    bad.write_text(json.dumps(data3))
    with pytest.raises(CalibrationError, match="invalid"):
        load_calibration_file(bad)
    # a broken file in the folder is skipped by list(), not fatal
    store = CalibrationStore(tmp_path)
    store.save(Calibration.model_validate(data))
    assert len(store.list()) == 1


def test_default_folder_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    store = CalibrationStore()
    assert str(store.root).startswith(str(tmp_path))
    assert store.root.name == "calibrations"


@pytest.mark.parametrize(("a", "b"), [("顕微鏡", "倒立顕微鏡"), ("a/b", "a:b"), ("rig 1", "rig_1")])
def test_microscope_names_never_share_a_file(tmp_path: Path, a: str, b: str) -> None:
    store = CalibrationStore(tmp_path)
    golden = load_calibration_file(GOLDEN)
    pa = store.save(golden.model_copy(update={"microscope": a}))
    pb = store.save(golden.model_copy(update={"microscope": b}))
    assert pa != pb and pa.parent == pb.parent == tmp_path  # no path escapes either
    assert store.load("10X", a).microscope == a
    assert store.load("10X", b).microscope == b


def test_a_file_of_another_microscope_is_refused_and_old_names_still_load(
    tmp_path: Path,
) -> None:
    store = CalibrationStore(tmp_path)
    golden = load_calibration_file(GOLDEN)
    # a file written before names were hashed: "a/b" was stored as a_b__10X.json
    legacy = tmp_path / "a_b__10X.json"
    legacy.write_text(golden.model_copy(update={"microscope": "a/b"}).model_dump_json())
    assert store.load("10X", "a/b").microscope == "a/b"
    with pytest.raises(CalibrationError, match="microscope 'a/b', not 'a:b'"):
        store.load("10X", "a:b")  # same legacy file name, another microscope
    store.delete("10X", "a/b")
    assert not legacy.exists()
