"""The hooks with the real :class:`~autofocus.scorer.LocalScorer`.

Plumbing runs with tiny random weights; the demo targets need the shipped weights and are
opt-in (``-m slow``), skipped while the weights are missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hooks.metadata import read_focus_flags
from hooks.pycromanager import FlaggingHook

WEIGHTS = Path(__file__).resolve().parents[2] / "autofocus" / "weights"


def _tiny_weights(folder: Path) -> Path:
    path = Path(__file__).resolve().parents[1] / "autofocus" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_autofocus_test_conftest_hooks", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_tiny_weights(folder)


def test_flagging_hook_with_local_scorer_writes_saved_metadata(tmp_path: Path) -> None:
    from pycromanager import Acquisition, multi_d_acquisition_events

    from autofocus.scorer import LocalScorer
    from simulators.core import get_virtual_microscope, virtual_microscope

    scorer = LocalScorer(weights_dir=str(_tiny_weights(tmp_path / "w")))
    with virtual_microscope(sensor_shape=(128, 128), specimen="nuclei") as core:
        obj = get_virtual_microscope(core).objective
        flag = FlaggingHook(scorer, obj)
        with Acquisition(
            directory=str(tmp_path), name="tiny", image_process_fn=flag, show_display=False
        ) as acq:
            acq.acquire(multi_d_acquisition_events(z_start=-10, z_end=10, z_step=10))
        path = acq.get_dataset().path
        acq.get_dataset().close()
    flags = read_focus_flags(path)
    assert len(flags) == 3
    assert {f.scorer_version for f in flags} == {scorer.model_version}
    assert all(f.verdict in ("in_focus", "out_of_focus", "undetermined") for f in flags)
    assert flag.summary().frames_scored == 3 and flag.summary().errors == ()


@pytest.mark.slow
@pytest.mark.skipif(
    not (WEIGHTS / "classifier.pt").is_file() or not (WEIGHTS / "regressor.pt").is_file(),
    reason="the shipped weights are not trained yet",
)
def test_demo_with_the_shipped_models_meets_its_targets(tmp_path: Path) -> None:
    from hooks.demo import DemoOptions, run_demo

    res = run_demo(
        DemoOptions(output=tmp_path / "demo", calibration_dir=tmp_path / "cal", live=False)
    )
    assert res.errors == []
    assert res.in_focus_time_points >= 0.99 > res.in_focus_time_points_no_af
    assert res.mean_images_per_autofocus is not None and res.mean_images_per_autofocus <= 3.5
    assert res.flag_precision is not None and res.flag_precision >= 0.95
    assert res.flag_recall is not None and res.flag_recall >= 0.95
