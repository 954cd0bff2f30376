"""A step-wise autofocus session over a real ZMQ server, driving the virtual microscope
with the shipped models, converges like the in-process search on the same microscope."""

from typing import Any

import pytest

from autofocus.microscope import CoreMicroscope, autofocus_on
from autofocus.scorer import LocalScorer
from autofocus.search import SearchConfig
from autofocus.service.client import RemoteAutofocusSession, ServiceClient
from autofocus.service.sessions import InMemoryCalibrations
from calibration.wizard import calibrate
from simulators.core import create_demo_core, get_virtual_microscope, unload


@pytest.fixture(scope="module")
def scorer() -> LocalScorer:
    return LocalScorer()


def test_remote_session_on_the_virtual_microscope(start_server: Any, scorer: LocalScorer) -> None:
    core = create_demo_core(
        specimen="calibration_slide",
        objective="20X",
        sensor_shape=(256, 256),
        seed=2,
        focus_z_um=5.0,
    )
    try:
        vm = get_virtual_microscope(core)
        obj = vm.objective
        scope = CoreMicroscope(core, objective=obj)
        cal = calibrate(scope, scorer, obj, range_um=8 * obj.dof_um, step_um=obj.dof_um / 2)
        vm.set_specimen("nuclei", seed=7)
        limits = (-100.0, 100.0)
        srv = start_server(scorer, calibrations=InMemoryCalibrations({"20X": cal.curve}))

        start = 5.0 + 2.5 * obj.dof_um
        scope.set_z_um(start)
        local = autofocus_on(scope, scorer, cal, SearchConfig(z_limits_um=limits))
        z_local = scope.get_z_um()

        scope.set_z_um(start)

        def acquire(z_um: float):
            scope.set_z_um(z_um)
            return scope.snap()

        with RemoteAutofocusSession(
            ServiceClient(srv.endpoint, timeout_s=30), "20X", start, z_limits_um=limits
        ) as sess:
            done = sess.run(acquire)
        scope.set_z_um(done.z_um)

        assert local.status == "converged" and done.status == "converged"
        # same algorithm, same calibration; only the camera noise differs between runs
        assert abs(done.z_um - z_local) < obj.dof_um / 4
        assert abs(done.z_um - vm.true_focus_um()) < obj.dof_um / 4
        assert abs(done.images_used - local.images_used) <= 2
        assert limits[0] <= scope.get_z_um() <= limits[1]

        # a brightfield phase object: the server attaches each frame's contrast
        # signature, so the remote search sees the contrast inversion as well
        vm.set_specimen("phase", seed=7)
        scope.set_z_um(start)
        with RemoteAutofocusSession(
            ServiceClient(srv.endpoint, timeout_s=30), "20X", start, z_limits_um=limits
        ) as sess:
            phase = sess.run(acquire)
        assert phase.status == "converged" and "contrast inverts" in phase.reason
        assert abs(phase.z_um - vm.true_focus_um()) < obj.dof_um / 4
    finally:
        unload(core)
