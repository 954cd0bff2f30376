import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from autofocus.cli import main


def test_help_lists_commands(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("simulate", "train", "score", "evaluate", "bench"):
        assert cmd in out


def test_simulate_writes_ome_tiff_and_montage(tmp_path: Path) -> None:
    out = tmp_path / "series.ome.tif"
    code = main(
        [
            "simulate",
            "--specimen",
            "beads",
            "--objective",
            "20X",
            "--slices",
            "5",
            "--size",
            "96",
            "--z-range-um",
            "6",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    stack = tifffile.imread(out)
    assert stack.shape == (5, 96, 96) and stack.dtype == np.uint16
    # frames differ with z and the middle one (focus) is the sharpest
    lap = [float(np.var(np.diff(f.astype(float), 2, axis=1))) for f in stack]
    assert int(np.argmax(lap)) == 2
    with tifffile.TiffFile(out) as tf:
        assert tf.is_ome
    assert (tmp_path / "series_montage.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_simulate_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.ome.tif"
    assert main(["simulate", "--specimen", "unicorns", "--output", str(out)]) == 2
    assert "unknown specimen" in capsys.readouterr().err.lower()
    assert main(["simulate", "--objective", "5X", "--output", str(out)]) == 2
    assert (
        main(["simulate", "--output", str(tmp_path / "x.jpg"), "--size", "64", "--slices", "2"])
        == 2
    )
    small = ["--size", "64", "--slices", "2"]
    assert main(["simulate", "-o", str(out), "--montage", str(out), *small]) == 2
    assert "must not replace the tiff" in capsys.readouterr().err.lower()
    assert main(["simulate", "-o", str(out), "--montage", str(tmp_path / "m.txt"), *small]) == 2
    assert not out.exists()
    # default montage names keep everything but the TIFF suffix, so they do not clash
    for name in ("run.1.tif", "run.2.tif"):
        assert main(["simulate", "-o", str(tmp_path / name), *small]) == 0
    assert (tmp_path / "run.1_montage.png").is_file() and (tmp_path / "run.2_montage.png").is_file()


def test_render_benchmark_writes_json(tmp_path: Path) -> None:
    from simulators.bench import run_render_benchmark

    payload = run_render_benchmark(
        tmp_path / "r.json", sizes=(64,), repeats=1, specimens=("beads",)
    )
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["rows"][0]["size"] == "64x64"
    assert payload["rows"][0]["render_ms"] > 0


def test_import_is_light() -> None:
    code = (
        "import sys, autofocus, autofocus.score, autofocus.metrics; "
        "bad = [m for m in ('torch', 'zmq', 'pycromanager', 'pymmcore_plus') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ bad input at the CLI
@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["simulate", "--list"],
        ["simulate", "--output", "x.tif", "--slices", "0"],
        ["simulate", "--output", "x.tif", "--exposure-ms", "nan"],
        ["train"],
        ["ping", "--timeout-s", "0"],
        ["bench", "scoring", "--repeats", "abc"],
    ],
)
def test_usage_errors_exit_2_without_a_traceback(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_unwritable_outputs_fail_before_any_work(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    cases = [
        ["simulate", "--output", str(a_file / "x.ome.tif")],
        ["simulate", "--output", str(tmp_path / "ok.ome.tif"), "--montage", str(a_file / "m.png")],
        ["score", str(tmp_path), "--csv", str(tmp_path)],
        ["evaluate", "--output", str(a_file / "ev")],
        ["bench", "scoring", "--output", str(a_file / "s.json")],
        ["bench", "autofocus", "--output", str(a_file)],
        ["demo", "--output", str(a_file / "out")],
        ["train", "regressor", "--output", str(a_file)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error: cannot write" in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written


def test_service_endpoints_and_devices_are_checked(tmp_path: Path, capsys) -> None:
    for argv in (
        ["serve", "--bind", "tcp://127.0.0.1:99999"],
        ["serve", "--bind", "127.0.0.1:5557"],
        ["serve", "--device", "foo"],
        ["serve", "--curve-secret-key", str(tmp_path / "nosuch.key")],
        ["ping", "garbage"],
        ["evaluate", "regressor", "--weights", str(tmp_path / "nosuch")],
        [
            "bench",
            "scoring",
            "--weights",
            str(tmp_path / "nosuch"),
            "--output",
            str(tmp_path / "s"),
        ],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (argv, err)


def test_demo_and_benchmark_names_checked_before_calibrating(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert main(["demo", "--output", str(out), "--drift", "garbage"]) == 2
    assert main(["bench", "autofocus", "--output", str(out), "--specimens", "unicorn"]) == 2
    assert main(["bench", "autofocus", "--output", str(out), "--objectives", ""]) == 2
    assert main(["train", "classifier", "--n-fields", "10", "--output", str(out)]) == 2
    assert "use at least" in capsys.readouterr().err
    assert not out.exists()


def test_labelled_csv_is_checked_before_scoring(tmp_path: Path, capsys) -> None:
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.random.default_rng(0).integers(0, 4000, (128, 128), np.uint16))
    stack = np.random.default_rng(0).integers(0, 4000, (3, 128, 128), np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "small.tif", np.ones((50, 50), np.uint16))
    out = tmp_path / "ev"
    for body, why in (
        ("file,level\na.tif,nan\n", "level must be an integer"),
        ("file,level\na.tif,-4\n", "level must be an integer"),
        ("file,level\nmissing.tif,3\n", "no such image"),
        ("file,level\n", "no rows"),
        ("file,level\na.tif,3\na.tif,\n", "bad in/out label"),
        ("file,level\na.tif,3\nstack.tif,3\n", "line 3: 'stack.tif' holds 3 pages"),
        ("file,level\na.tif,\u00b2\n", "level must be an integer"),  # isdigit() says yes
        ("file,level\na.tif,3\nsmall.tif,3\n", "line 3 ('small.tif'): frame of 50x50 px"),
    ):
        csv_path = tmp_path / "labels.csv"
        csv_path.write_text(body, encoding="utf-8")
        assert main(["evaluate", "--labelled", str(csv_path), "--output", str(out)]) == 2
        assert why in capsys.readouterr().err
    assert not out.exists()


def test_labelled_evaluation_reads_excel_csv_and_writes_strict_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Excel's "CSV UTF-8" starts with a BOM; undefined figures are null in the JSON (not
    a bare NaN); the default folder is not the held-out report's."""
    frame = np.random.default_rng(0).integers(0, 4000, (128, 128), np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", frame)
    tifffile.imwrite(tmp_path / "b.tif", frame)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes("\ufefffile,level\na.tif,0\nb.tif,1\n".encode())
    held_out = tmp_path / "bench-results" / "evaluation"
    held_out.mkdir(parents=True)
    (held_out / "evaluation.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--labelled", str(csv_path)]) == 0
    assert (held_out / "evaluation.json").read_text() == "{}"
    text = (tmp_path / "bench-results" / "evaluation-labelled" / "evaluation.json").read_text()
    assert "NaN" not in text
    figs = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))["labelled"]
    # white noise has no texture: both undetermined, so no accuracy (null, not NaN)
    assert figs["n_images"] == figs["n_undetermined"] == 2
    assert figs["within_one_accuracy"] is None and figs["in_out_f1"] is None


def test_score_gives_every_page_of_a_stack_its_own_row(tmp_path: Path) -> None:
    """A through-focus OME-TIFF: one row and one overlay per page, levels rising off focus."""
    import csv

    from autofocus.scoring_cli import CSV_COLUMNS

    stack = tmp_path / "st.ome.tif"
    sim = ["simulate", "--specimen", "tissue", "--objective", "20X", "--slices", "5"]
    assert main([*sim, "--size", "256", "--output", str(stack)]) == 0
    single = tmp_path / "one.tif"
    tifffile.imwrite(single, tifffile.imread(stack)[2])
    dark = tmp_path / "dark.tif"
    tifffile.imwrite(dark, np.zeros((128, 128), np.uint16))
    out, ov = tmp_path / "s.csv", tmp_path / "ov"
    argv = ["score", str(stack), str(single), str(dark), "--csv", str(out)]
    assert main([*argv, "--overlays", str(ov), "--objective", "20X"]) == 0
    rows = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in list(csv.reader(out.open()))[1:]]
    assert [(Path(r["file"]).name, int(r["page"])) for r in rows] == [
        *[("st.ome.tif", k) for k in range(5)],
        ("one.tif", 0),
        ("dark.tif", 0),
    ]
    # why an image got no verdict; empty for the others
    assert (rows[6]["verdict"], rows[6]["undetermined_reason"]) == ("undetermined", "no_signal")
    assert all(r["undetermined_reason"] == "" for r in rows[:6])
    rows = rows[:6]
    assert all(r["axes"] == "" for r in rows)  # not a Pycro-Manager dataset
    # the stack runs -z..+z through focus: the middle page is the sharpest
    levels = [int(r["predicted_level"]) for r in rows[:5]]
    assert levels[2] <= 2 < min(levels[1], levels[3])
    assert max(levels[1], levels[3]) < min(levels[0], levels[4])
    verdicts = [r["verdict"] for r in rows[:5]]
    assert verdicts == ["out_of_focus", "out_of_focus", "in_focus", "out_of_focus", "out_of_focus"]
    # the middle page written alone scores as it did inside the stack
    assert rows[5]["blur_px"] == rows[2]["blur_px"]
    pages = [f"st.ome_p{k:04d}_overlay.png" for k in range(5)]
    assert sorted(p.name for p in ov.iterdir()) == sorted(
        ["one_overlay.png", "dark_overlay.png", *pages]
    )


def test_unreadable_images_are_one_line_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    for name, why in (("text.png", "not a valid .png image"), ("empty.png", "the file is empty")):
        assert main(["score", str(tmp_path / name), "--csv", str(tmp_path / "s.csv")]) == 2
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1


def test_score_writes_one_row_per_image_and_overlays(tmp_path: Path) -> None:
    """``autofocus score`` end to end with the shipped models on rendered frames."""
    import csv

    from autofocus.optics import get_objective
    from autofocus.registry import load_card
    from autofocus.scoring_cli import CSV_COLUMNS
    from simulators.camera import CameraModel
    from simulators.render import render_field
    from simulators.specimens import make_specimen

    obj = get_objective("20X")
    spec = make_specimen("tissue", seed=5)
    images = tmp_path / "images"
    images.mkdir()
    for name, dz in (("sharp", 0.0), ("blurred", obj.level_to_dz_um(8.0))):
        sig = render_field(spec, obj, dz, 0.0, 0.0, (256, 256))
        tifffile.imwrite(
            images / f"{name}.tif", CameraModel().expose(sig, np.random.default_rng(1))
        )
    out = tmp_path / "s.csv"
    ov = tmp_path / "ov"
    assert (
        main(["score", str(images), "--csv", str(out), "--overlays", str(ov), "--objective", "20X"])
        == 0
    )
    rows = list(csv.reader(out.open()))
    assert rows[0] == CSV_COLUMNS
    by_file = {Path(r[0]).stem: dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]}
    assert set(by_file) == {"sharp", "blurred"}
    assert by_file["sharp"]["verdict"] == "in_focus"
    assert by_file["blurred"]["verdict"] == "out_of_focus"
    assert int(by_file["blurred"]["predicted_level"]) >= 6
    for r in by_file.values():
        assert sum(float(r[f"p{k}"]) for k in range(11)) == pytest.approx(1.0, abs=1e-3)
        # the 20X preset's own classifier scored it
        own = load_card("classifier", objective="20X").sha256[:12]
        assert r["model_version"].startswith(f"classifier-1.0-{own}+regressor-")
    assert sorted(p.name for p in ov.iterdir()) == ["blurred_overlay.png", "sharp_overlay.png"]
    # without an objective: the general classifier, and no |dz|
    assert main(["score", str(images), "--csv", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    general = load_card("classifier").sha256[:12]
    assert all(r[-1].startswith(f"classifier-1.0-{general}+") for r in rows[1:])
    assert all(r[CSV_COLUMNS.index("abs_dz_um")] == "" for r in rows[1:])
    # an objective of the user's own (the 20X optics under another name): the general
    # classifier, told its optics, and |dz| in um
    own_20x = "name=my20x, magnification=20, na=0.5, camera_pixel_size_um=10"
    assert main(["score", str(images), "--csv", str(out), "--objective", own_20x]) == 0
    rows = list(csv.reader(out.open()))
    by_file = {Path(r[0]).stem: dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]}
    assert by_file["sharp"]["verdict"] == "in_focus"
    assert by_file["blurred"]["verdict"] == "out_of_focus"
    assert float(by_file["blurred"]["abs_dz_um"]) > float(by_file["sharp"]["abs_dz_um"])
    assert all(
        r["model_version"].startswith(f"classifier-1.0-{general}+") for r in by_file.values()
    )


def test_score_checks_every_file_before_scoring_any(tmp_path: Path) -> None:
    """A bad file last in the list fails at once: nothing scored, no CSV written."""
    from autofocus.errors import InvalidFrameError
    from autofocus.scorer import LocalScorer
    from autofocus.scoring_cli import score_files

    class Counting(LocalScorer):
        calls = 0

        def score(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().score(*args, **kwargs)

    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.random.default_rng(0).integers(0, 4000, (2, 96, 96), np.uint16))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    seen: list[tuple[int, int]] = []
    out = tmp_path / "s.csv"
    with pytest.raises(InvalidFrameError, match=r"bad\.tif"):
        score_files([good, bad], out, scorer=Counting(), progress=lambda *a: seen.append(a))
    assert Counting.calls == 0 and not out.exists() and not seen
    assert score_files([good, good], out, scorer=Counting(), progress=lambda *a: seen.append(a))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] and Counting.calls == 4


def test_score_never_overwrites_its_inputs_and_overlay_names_do_not_clash(
    tmp_path: Path,
) -> None:
    from autofocus.errors import InvalidInputError
    from autofocus.scoring_cli import overlay_names, score_files

    frame = np.random.default_rng(0).integers(0, 4000, (96, 96), np.uint16)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = [tmp_path / "a" / "x.tif", tmp_path / "a" / "x.png", tmp_path / "b" / "x.tif"]
    tifffile.imwrite(files[0], frame)
    import imagecodecs

    files[1].write_bytes(imagecodecs.png_encode(frame))
    tifffile.imwrite(files[2], frame)
    before = files[0].read_bytes()
    with pytest.raises(InvalidInputError, match="is one of the images"):
        score_files(files, tmp_path / "a" / ".." / "a" / "x.tif")
    shot = tmp_path / "a" / "x_overlay.png"  # an earlier overlay, now scored itself
    shot.write_bytes(imagecodecs.png_encode(frame))
    with pytest.raises(InvalidInputError, match="would replace an input"):
        score_files([files[0], shot], tmp_path / "s.csv", overlays=tmp_path / "a")
    assert files[0].read_bytes() == before
    names = overlay_names(files, [1, 1, 1])
    assert len(set(names.values())) == 3
    assert names[(1, 0)] == "x_png_overlay.png" and names[(0, 0)] == "x_tif_0_overlay.png"
    ov = tmp_path / "ov"
    assert score_files(files, tmp_path / "s.csv", overlays=ov) == 3
    assert sorted(p.name for p in ov.iterdir()) == sorted(names.values())


def test_more_options_are_checked_before_any_work(tmp_path: Path, capsys) -> None:
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.random.default_rng(0).integers(0, 4000, (96, 96), np.uint16))
    out = tmp_path / "o"
    for argv, why in (
        (["score", str(img), "--csv", str(out / "s.csv"), "--objective", ""], "unknown objective"),
        (["bench", "autofocus", "--output", str(out), "--max-offset-dof", "inf"], "finite"),
        (
            ["calibrate", "--objective", "magnification=20,na=0.5", "--yes", "--output", str(out)],
            "name your objective",
        ),
        (["bench", "autofocus", "--output", str(out), "--z-step-um", "2"], "with --replay"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert why in err and "Traceback" not in err, (argv, err)
    assert not out.exists()


def test_the_service_benchmark_says_why_its_server_did_not_start(tmp_path: Path) -> None:
    from autofocus.errors import ServiceError
    from autofocus.service.bench import run_service_benchmark

    with pytest.raises(ServiceError, match=r"exited with code 2 while starting: .*is missing"):
        run_service_benchmark(tmp_path / "s.json", weights_dir=tmp_path / "nosuch")


def test_a_replayed_stack_is_benchmarked_with_the_users_objective(tmp_path: Path) -> None:
    """``bench autofocus --replay`` with an objective given by its fields: calibrated and
    searched under that name, within a DOF of the recorded focus."""
    import json

    from autofocus.optics import get_objective
    from simulators.camera import CameraModel
    from simulators.series import render_series
    from simulators.specimens import make_specimen

    obj = get_objective("10X")
    z_um = np.arange(-30.0, 31.0, 3.0)
    series = render_series(
        make_specimen("tissue", seed=3), obj, z_um, shape=(256, 256), camera=CameraModel(), seed=1
    )
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack(series.frames))
    out = tmp_path / "bench"
    argv = ["bench", "autofocus", "--replay", str(stack), "--z-step-um", "3"]
    argv += ["--true-focus-um", "30", "--trials", "1", "--output", str(out)]
    own = "name=my10x,magnification=10,na=0.3,camera_pixel_size_um=10"
    assert main([*argv, "--objective", own]) == 0
    report = json.loads((out / "autofocus.json").read_text())
    assert list(report["calibrations"]) == ["my10x"]
    search = [r for r in report["rows"] if r["method"] == "search"]
    assert search and all(r["objective"] == "my10x" for r in search)
    assert abs(search[0]["error_um"]) < obj.dof_um
    assert main([*argv, "--objective", "99X"]) == 2
