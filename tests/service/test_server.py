"""A real server on a free loopback port (background thread) with real clients."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from service_fixtures import CURVE, Z_FOCUS_UM, FakeClock, OracleScorer, frame_at

from autofocus.errors import AutofocusTimeoutError, InvalidInputError, RemoteError
from autofocus.optics import get_objective
from autofocus.search import SearchConfig, find_focus
from autofocus.service.client import (
    RemoteAutofocusSession,
    RemoteScorer,
    ServiceClient,
    ping,
)
from autofocus.service.server import FocusServer, ServiceConfig, is_loopback

LIMITS = (950.0, 1060.0)


def _raw(sock: Any, parts: list[bytes], timeout_ms: int = 5000) -> dict[str, Any]:
    sock.send_multipart(parts)
    assert sock.poll(timeout_ms), "no reply"
    return json.loads(sock.recv_multipart()[-1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- scoring -------------------------------------------------------------------------
def test_score_round_trip_equals_the_local_scorer(start_server: Any, tiny_scorer: Any) -> None:
    srv = start_server(tiny_scorer)
    remote = RemoteScorer(srv.endpoint, timeout_s=30)
    rng = np.random.default_rng(3)
    frame = rng.poisson(300, size=(200, 300)).astype(np.uint16)
    frame[:50, :50] = 60000  # > 32767: must not turn negative on the way
    obj = get_objective("20X")
    for kw in ({}, {"with_patches": True}):
        got = remote.score(frame, obj, **kw).to_dict(with_patches=True)
        want = tiny_scorer.score(frame, obj, **kw).to_dict(with_patches=True)
        assert got == want
    assert remote.model_version == tiny_scorer.model_version
    frames = [frame, frame[:150, :120].astype(np.float32), frame[:150, :120].astype(np.float32)]
    got_b = [s.to_dict() for s in remote.score_batch(frames, "10X")]
    want_b = [s.to_dict() for s in tiny_scorer.score_batch(frames, get_objective("10X"))]
    assert got_b == want_b
    remote.close()


def test_version_lists_models_with_checksums(start_server: Any, tiny_scorer: Any) -> None:
    srv = start_server(tiny_scorer)
    info = ping(srv.endpoint, timeout_s=10)
    v = info["version"]
    assert v["protocol"] == 1 and v["model_version"] == tiny_scorer.model_version
    assert {m["name"] for m in v["models"]} == {"classifier", "regressor"}
    assert all(len(m["sha256"]) == 64 for m in v["models"])
    assert info["health"]["status"] == "ok" and info["health"]["worker_alive"]


def test_bad_frames_get_error_replies_and_do_not_poison_a_batch(start_server: Any) -> None:
    oracle = OracleScorer(delay_s=0.05)
    srv = start_server(oracle)
    remote = RemoteScorer(srv.endpoint, timeout_s=10, retries=0)
    with pytest.raises(RemoteError) as ei:
        remote.score(np.zeros((4, 4)))  # below the oracle's 8x8 minimum
    assert ei.value.code == "invalid_frame"
    # concurrent requests, one of them bad: the good ones still succeed
    results: dict[int, Any] = {}

    def call(i: int) -> None:
        c = RemoteScorer(srv.endpoint, timeout_s=10, retries=0)
        try:
            f = np.zeros((4, 4)) if i == 0 else frame_at(1000.0 + i)
            results[i] = c.score(f).blur_px
        except RemoteError as e:
            results[i] = e.code
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results[0] == "invalid_frame"
    for i in range(1, 6):
        assert results[i] == pytest.approx(CURVE(1000.0 + i - Z_FOCUS_UM))
    assert remote.client.health()["status"] == "ok"


# ---- autofocus sessions -------------------------------------------------------------
def test_remote_session_converges_like_the_in_process_search(start_server: Any) -> None:
    oracle = OracleScorer()
    srv = start_server(oracle)
    z0 = 992.0
    local = find_focus(
        lambda z: oracle.score(frame_at(z)), z0, CURVE, SearchConfig(z_limits_um=LIMITS)
    )
    assert local.status == "converged"
    with RemoteAutofocusSession(
        ServiceClient(srv.endpoint, timeout_s=10), "test-cal", z0, z_limits_um=LIMITS
    ) as sess:
        done = sess.run(frame_at)
    assert done.done and done.status == "converged"
    assert done.z_um == pytest.approx(local.z_um, abs=1e-9)
    assert done.z_um == pytest.approx(Z_FOCUS_UM, abs=0.2)
    assert done.images_used == local.images_used
    assert done.trace == [tuple(t) for t in local.trace]  # exact: JSON floats round-trip
    assert ServiceClient(srv.endpoint).health()["sessions"] == 0  # closed when done


def test_concurrent_sessions_are_independent(start_server: Any) -> None:
    srv = start_server()
    client = ServiceClient(srv.endpoint, timeout_s=10)
    # session b sees a specimen whose focus is 12 um higher
    acquire = {"a": frame_at, "b": lambda z: frame_at(z - 12.0)}
    sess = {
        k: RemoteAutofocusSession(client, "test-cal", 1000.0, z_limits_um=LIMITS) for k in acquire
    }
    steps = {k: s.start() for k, s in sess.items()}
    assert steps["a"].session_id != steps["b"].session_id
    while not all(st.done for st in steps.values()):
        for k, s in sess.items():  # interleaved steps
            if not steps[k].done:
                steps[k] = s.step(steps[k].z_um, acquire[k](steps[k].z_um))
    assert steps["a"].z_um == pytest.approx(Z_FOCUS_UM, abs=0.2)
    assert steps["b"].z_um == pytest.approx(Z_FOCUS_UM + 12.0, abs=0.2)


def test_session_expiry_cancel_and_errors_close_the_session(start_server: Any) -> None:
    clock = FakeClock()
    srv = start_server(clock=clock, session_ttl_s=30.0)
    client = ServiceClient(srv.endpoint, timeout_s=10)

    s1 = RemoteAutofocusSession(client, "test-cal", 1000.0, z_limits_um=LIMITS)
    first = s1.start()
    clock.t += 31.0  # idle longer than the TTL
    with pytest.raises(RemoteError) as ei:
        s1.step(first.z_um, frame_at(first.z_um))
    assert ei.value.code == "session_expired"

    s2 = RemoteAutofocusSession(client, "test-cal", 1000.0, z_limits_um=LIMITS)
    st = s2.start()
    clock.t += 20.0
    st = s2.step(st.z_um, frame_at(st.z_um))  # activity renews the TTL
    clock.t += 20.0
    st = s2.step(st.z_um, frame_at(st.z_um))
    s2.cancel()
    with pytest.raises(RemoteError) as ei:
        s2.session_id = st.session_id
        s2.step(st.z_um, frame_at(st.z_um))
    assert ei.value.code == "unknown_session" and "cancelled" in str(ei.value)

    s3 = RemoteAutofocusSession(client, "test-cal", 1000.0, z_limits_um=LIMITS)
    st = s3.start()
    with pytest.raises(RemoteError) as ei:
        s3.step(st.z_um, np.zeros((4, 4)))  # unusable image: the session is reset
    assert ei.value.code == "invalid_frame"
    with pytest.raises(RemoteError) as ei:
        s3.step(st.z_um, frame_at(st.z_um))
    assert ei.value.code == "unknown_session"
    assert client.health()["sessions"] == 0


def test_session_start_errors(start_server: Any) -> None:
    srv = start_server()
    client = ServiceClient(srv.endpoint, timeout_s=10)
    cases = [
        ({"calibration_id": "nope"}, "unknown_name"),
        ({"options": {"max_images": 1}}, "invalid_request"),
        ({"options": {"typo_option": 1}}, "invalid_request"),
        ({"z_start_um": 2000.0}, "invalid_request"),  # outside the soft limits
    ]
    for change, code in cases:
        kw: dict[str, Any] = {"calibration_id": "test-cal", "z_start_um": 1000.0, **change}
        head = {"cmd": "autofocus.start", "z_limits_um": list(LIMITS), **kw}
        with pytest.raises(RemoteError) as ei:
            client.request(head)
        assert ei.value.code == code, change
    cals = client.calibrations()
    assert [c["id"] for c in cals] == ["test-cal"]
    assert client.calibration("test-cal")["curve"]["gamma_um"] == CURVE.gamma_um


# ---- reliability ----------------------------------------------------------------------
def test_timeout_when_no_server_is_listening() -> None:
    remote = RemoteScorer(f"tcp://127.0.0.1:{_free_port()}", timeout_s=0.3, retries=1)
    with pytest.raises(AutofocusTimeoutError, match="2 attempt"):
        remote.score(frame_at(1.0))
    with pytest.raises(TimeoutError):  # also a built-in TimeoutError
        remote.client.health(timeout_s=0.2)
    remote.close()


def test_client_reconnects_after_a_server_restart() -> None:
    port = _free_port()
    cfg = ServiceConfig(bind=f"tcp://127.0.0.1:{port}")
    remote = RemoteScorer(f"tcp://127.0.0.1:{port}", timeout_s=5, retries=0)
    with FocusServer(cfg, scorer=OracleScorer()):
        a = remote.score(frame_at(1000.0)).blur_px
    with pytest.raises(AutofocusTimeoutError):
        remote.client.health(timeout_s=0.3)
    with FocusServer(cfg, scorer=OracleScorer(focus_um=1000.0)):
        b = remote.score(frame_at(1000.0)).blur_px  # the same client object
    assert a == pytest.approx(CURVE(1000.0 - Z_FOCUS_UM))
    assert b == pytest.approx(CURVE(0.0))
    remote.close()


def test_graceful_stop_answers_queued_requests(start_server: Any) -> None:
    srv = start_server(OracleScorer(delay_s=0.2), batch_max_frames=1)
    out: list[Any] = []

    def call(i: int) -> None:
        c = RemoteScorer(srv.endpoint, timeout_s=10, retries=0)
        try:
            out.append(c.score(frame_at(1000.0 + i)).blur_px)
        except Exception as e:  # recorded, then asserted on
            out.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    while srv.sessions is not None and srv._stats.requests == 0 and srv._jobs.qsize() < 2:
        threading.Event().wait(0.01)
    srv.stop()
    for t in threads:
        t.join(30)
    assert len(out) == 3 and all(isinstance(v, float) for v in out), out


def test_malformed_messages_get_error_replies_and_server_stays_healthy(
    start_server: Any,
) -> None:
    srv = start_server()
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(srv.endpoint)

    def head(**kw: Any) -> bytes:
        return json.dumps({"protocol": 1, "id": "m", **kw}).encode()

    nan_pixels = np.full(100, np.nan, "<f4").tobytes()
    cases = [
        ([b"garbage"], "bad_message"),
        ([b"\x80\x04\x95pickle"], "bad_message"),
        ([head(cmd="nope")], "unknown_command"),
        ([head(cmd="score", dtype="uint16", shape=[10, 10]), bytes(3)], "payload_mismatch"),
        ([head(cmd="score", dtype="uint16", shape=[65536, 65536]), bytes(8)], "too_large"),
        ([head(cmd="score", dtype="complex64", shape=[10, 10]), bytes(800)], "invalid_request"),
        (
            [
                head(cmd="score", dtype="float32", shape=[10, 10]),
                nan_pixels,
            ],
            "invalid_frame",
        ),
        (
            [
                head(cmd="autofocus.step", session_id="zz", z_um=0, dtype="uint8", shape=[9, 9]),
                bytes(81),
            ],
            "unknown_session",
        ),
        ([head(cmd="autofocus.cancel", session_id="zz")], "unknown_session"),
        ([head(cmd="calibrations.get", calibration_id="zz")], "unknown_name"),
        ([head(cmd="health"), head(cmd="health"), b"x"], "bad_message"),
        # 3 KB of nesting made json.loads raise RecursionError, which killed the server
        (
            [b'{"protocol":1,"id":"a","cmd":"health","x":' + b"[" * 1500 + b"]" * 1500 + b"}"],
            "bad_message",
        ),
    ]
    for parts, code in cases:
        rep = _raw(sock, parts)
        assert rep["ok"] is False and rep["error"]["code"] == code, (parts[0][:60], rep)
    rep = _raw(sock, [head(cmd="score", dtype="uint16", shape=[10, 10]), bytes(3)])
    assert rep["id"] == "m" and rep["cmd"] == "score"  # ids are echoed on errors
    # a plain REQ socket (what a Java/JeroMQ script would use) works too
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(srv.endpoint)
    assert _raw(req, [head(cmd="health")])["result"]["status"] == "ok"
    assert _raw(req, [b"{"])["error"]["code"] == "bad_message"
    req.close()
    sock.close()
    h = ServiceClient(srv.endpoint, timeout_s=5).health()
    assert h["status"] == "ok" and h["errors"] >= len(cases)


def test_a_client_vanishing_mid_request_does_not_affect_others(start_server: Any) -> None:
    srv = start_server(OracleScorer(delay_s=0.1))
    ctx = zmq.Context.instance()
    for _ in range(3):  # send a request, then disappear before the reply
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(srv.endpoint)
        name, shape, buf = (
            "float64",
            [96, 96],
            frame_at(1001.0).tobytes(),
        )
        s.send_multipart(
            [
                json.dumps(
                    {"protocol": 1, "id": "x", "cmd": "score", "dtype": name, "shape": shape}
                ).encode(),
                buf,
            ]
        )
        s.close(0)
    remote = RemoteScorer(srv.endpoint, timeout_s=10, retries=0)
    got = [remote.score(frame_at(1000.0 + i)).blur_px for i in range(3)]
    assert got == pytest.approx([CURVE(1000.0 + i - Z_FOCUS_UM) for i in range(3)])
    assert remote.client.health()["status"] == "ok"


def test_batching_groups_queued_requests(start_server: Any) -> None:
    oracle = OracleScorer(delay_s=0.1)
    srv = start_server(oracle)
    barrier = threading.Barrier(6)
    out: dict[int, float] = {}

    def call(i: int) -> None:
        c = RemoteScorer(srv.endpoint, timeout_s=20, retries=0)
        barrier.wait()
        out[i] = c.score(frame_at(990.0 + i)).blur_px
        c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == pytest.approx({i: CURVE(990.0 + i - Z_FOCUS_UM) for i in range(6)})
    assert max(oracle.batch_sizes) > 1  # requests that waited were scored together


# ---- security ---------------------------------------------------------------------------
def test_binding_beyond_loopback_needs_keys_or_insecure(caplog: Any) -> None:
    assert is_loopback("tcp://127.0.0.1:5557") and is_loopback("tcp://[::1]:1")
    assert is_loopback("ipc:///tmp/x") and not is_loopback("tcp://*:5557")
    assert not is_loopback("tcp://0.0.0.0:5557") and not is_loopback("tcp://10.0.0.2:1")
    with pytest.raises(InvalidInputError, match="--insecure"):
        FocusServer(ServiceConfig(bind="tcp://0.0.0.0:5557"), scorer=OracleScorer())
    with caplog.at_level("WARNING", logger="autofocus.service.server"):
        FocusServer(ServiceConfig(bind="tcp://*:5557", insecure=True), scorer=OracleScorer())
    assert "INSECURE" in caplog.text


def test_curve_encryption_round_trip(start_server: Any, tmp_path: Path) -> None:
    from autofocus.service.keys import create_curve_keys

    pub, sec = create_curve_keys(tmp_path / "keys")
    srv = start_server(curve_secret_key=sec)
    remote = RemoteScorer(srv.endpoint, timeout_s=5, server_public_key=pub)
    assert remote.score(frame_at(1000.0)).blur_px == pytest.approx(CURVE(1000.0 - Z_FOCUS_UM))
    plain = ServiceClient(srv.endpoint, timeout_s=0.3)
    with pytest.raises(AutofocusTimeoutError):  # no handshake without the key
        plain.health()
    plain.close()
    remote.close()


class _FakeMicroscope:
    """A Microscope whose snap() encodes the stage z for the oracle scorer."""

    z_limits_um = LIMITS

    def __init__(self, z_um: float) -> None:
        self.z_um = z_um
        self.moves: list[float] = []

    def get_z_um(self) -> float:
        return self.z_um

    def set_z_um(self, z_um: float) -> None:
        self.moves.append(z_um)
        self.z_um = z_um

    def snap(self) -> np.ndarray:
        return frame_at(self.z_um)


def test_hooks_work_with_a_remote_scorer(start_server: Any, tiny_scorer: Any) -> None:
    from hooks.runtime import FocusController, FrameFlagger

    oracle = OracleScorer()
    srv = start_server(oracle)
    remote = RemoteScorer(srv.endpoint, timeout_s=10)
    runs = {}
    for name, scorer in (("local", oracle), ("remote", remote)):
        scope = _FakeMicroscope(995.0)
        ctl = FocusController(scorer, CURVE, microscope=scope, search=SearchConfig())
        runs[name] = (ctl.run(995.0), scope.z_um)
    (rec_l, z_l), (rec_r, z_r) = runs["local"], runs["remote"]
    assert rec_r.applied and rec_r.status == "converged"
    assert z_r == z_l == pytest.approx(Z_FOCUS_UM, abs=0.2)
    assert rec_r.trace == rec_l.trace

    # the flagging hook gives the same scores through the service
    srv2 = start_server(tiny_scorer)
    frame = np.random.default_rng(5).poisson(200, size=(256, 256)).astype(np.uint16)
    obj = get_objective("10X")
    s_remote, v_remote, _ = FrameFlagger(RemoteScorer(srv2.endpoint, timeout_s=30), obj).score(
        frame
    )
    s_local, v_local, _ = FrameFlagger(tiny_scorer, obj).score(frame)
    assert s_remote.to_dict() == s_local.to_dict() and v_remote == v_local

    # a dead server: the controller applies its policy (stage back at the start), no hang
    dead = RemoteScorer(f"tcp://127.0.0.1:{_free_port()}", timeout_s=0.2, retries=0)
    scope = _FakeMicroscope(1001.0)
    ctl = FocusController(dead, CURVE, microscope=scope, on_failure="warn")
    rec = ctl.run(1001.0)
    assert not rec.applied and rec.status == "failed" and scope.z_um == 1001.0
    assert ctl.errors()[0].error_type == "AutofocusTimeoutError"


def test_endpoints_are_checked() -> None:
    from autofocus.service.protocol import check_endpoint

    for ok in ("tcp://127.0.0.1:5557", "tcp://*:0", "tcp://[::1]:1", "tcp://host:*", "ipc:///x"):
        assert check_endpoint(ok) == ok
    for bad in ("127.0.0.1:5557", "tcp://127.0.0.1:99999", "tcp://:1", "tcp://1.2.3", "ipc://"):
        with pytest.raises(InvalidInputError, match="invalid endpoint"):
            check_endpoint(bad)
    with pytest.raises(InvalidInputError, match="invalid endpoint"):
        ServiceClient("localhost:5557")
    with pytest.raises(InvalidInputError, match="invalid endpoint"):
        FocusServer(ServiceConfig(bind="tcp://127.0.0.1:70000"), scorer=OracleScorer())


@pytest.mark.parametrize("which", ["missing", "public_only"])
def test_a_bad_server_key_is_an_error_not_a_hang(tmp_path: Path, which: str) -> None:
    """A key problem used to leave the socket open and block the ZMQ context for ever."""
    from autofocus.service.keys import create_curve_keys

    pub, _sec = create_curve_keys(tmp_path / "keys")
    key = tmp_path / "nosuch.key_secret" if which == "missing" else pub
    srv = FocusServer(
        ServiceConfig(bind="tcp://127.0.0.1:0", curve_secret_key=key), scorer=OracleScorer()
    )
    outcome: list[BaseException] = []

    def run() -> None:  # the foreground loop, as `autofocus serve` runs it
        try:
            srv.serve_forever()
        except BaseException as exc:  # recorded for the assertion
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the server hung on a bad key file"
    assert outcome and isinstance(outcome[0], InvalidInputError)
