import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert not out.exists()


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
