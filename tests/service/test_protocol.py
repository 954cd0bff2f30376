"""Wire-format validation (no sockets): every malformed case maps to its error code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autofocus.errors import ProtocolError
from autofocus.service import protocol as P


def _head(**kw: object) -> bytes:
    return json.dumps({"protocol": 1, "id": "r1", **kw}).encode()


def _code(parts: list[bytes], **kw: object) -> str:
    with pytest.raises(ProtocolError) as ei:
        P.decode_request(parts, **kw)  # type: ignore[arg-type]
    return ei.value.code


@pytest.mark.parametrize("dtype", list(P.DTYPES))
def test_pixels_round_trip_every_dtype_little_endian(dtype: str) -> None:
    rng = np.random.default_rng(1)
    a = (rng.random((5, 7)) * 100).astype(dtype)
    name, shape, buf = P.encode_pixels(a.astype(a.dtype.newbyteorder(">")))  # big-endian in
    assert name == dtype and shape == [5, 7]
    assert bytes(buf) == a.astype(P.DTYPES[dtype]).tobytes()
    req, payload = P.decode_request([_head(cmd="score", dtype=name, shape=shape), bytes(buf)])
    back = P.decode_pixels(req.dtype, req.shape, payload)
    np.testing.assert_array_equal(back, a)


def test_non_contiguous_and_non_square_frames_keep_row_order() -> None:
    a = np.arange(6 * 10, dtype=np.uint16).reshape(6, 10)[:, ::2]  # (6, 5) view
    name, shape, buf = P.encode_pixels(a)
    back = P.decode_pixels(name, tuple(shape), memoryview(bytes(buf)))
    np.testing.assert_array_equal(back, a)
    assert back.shape == (6, 5)


def test_uint16_above_32767_stays_positive() -> None:
    a = np.array([[0, 40000], [65535, 1]], dtype=np.uint16)
    name, shape, buf = P.encode_pixels(a)
    back = P.decode_pixels(name, tuple(shape), memoryview(bytes(buf)))
    assert back.max() == 65535 and back.min() == 0


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([b"{not json"], "bad_message"),
        ([b"\xff\xfe"], "bad_message"),
        ([b"[1, 2]"], "bad_message"),
        ([], "bad_message"),
        ([b"{}", b"", b""], "bad_message"),
        ([b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"], "bad_message"),
        ([json.dumps({"protocol": 2, "id": "x", "cmd": "health"}).encode()], "unsupported_version"),
        ([json.dumps({"id": "x", "cmd": "health"}).encode()], "unsupported_version"),
        ([_head(cmd="explode")], "unknown_command"),
        ([_head(cmd="health", extra=1)], "invalid_request"),
        ([_head(cmd="autofocus.start", z_start_um=1.0)], "invalid_request"),
        ([_head(cmd="autofocus.start", calibration_id="c", z_start_um="nan")], "invalid_request"),
        (
            [_head(cmd="autofocus.start", calibration_id="c", z_start_um=0, z_limits_um=[5, 1])],
            "invalid_request",
        ),
        ([_head(cmd="score", dtype="int64", shape=[2, 2]), bytes(32)], "invalid_request"),
        ([_head(cmd="score", dtype="object", shape=[2, 2]), bytes(32)], "invalid_request"),
        ([_head(cmd="score", dtype="uint8", shape=[2, 2, 2, 2]), bytes(16)], "invalid_request"),
        ([_head(cmd="score", dtype="uint8", shape=[0, 2]), b""], "invalid_request"),
        ([_head(cmd="score", dtype="uint8", shape=[-3, 2]), b""], "invalid_request"),
        ([_head(cmd="score", dtype="uint8", shape=[999, 2, 2]), bytes(4)], "invalid_request"),
        ([_head(cmd="score", dtype="uint16", shape=[2, 2]), bytes(7)], "payload_mismatch"),
        ([_head(cmd="score", dtype="uint16", shape=[2, 2])], "payload_mismatch"),
        ([_head(cmd="health"), b"xx"], "payload_mismatch"),
        ([_head(cmd="score", dtype="float64", shape=[60000, 60000]), b""], "too_large"),
        ([b" " * (P.MAX_HEADER_BYTES + 1)], "too_large"),
        (
            [_head(cmd="autofocus.step", session_id="s", z_um=1, dtype="uint8", shape=[2, 2, 2])],
            "invalid_request",
        ),
    ],
)
def test_malformed_requests_have_precise_codes(parts: list[bytes], code: str) -> None:
    assert _code(parts) == code


def test_payload_cap_is_configurable_and_ids_are_echoed() -> None:
    with pytest.raises(ProtocolError) as ei:
        P.decode_request(
            [_head(cmd="score", dtype="uint8", shape=[64, 64]), bytes(4096)],
            max_payload_bytes=1024,
        )
    assert ei.value.code == "too_large"
    assert ei.value.request_id == "r1" and ei.value.cmd == "score"


def test_replies_are_strict_json_without_nan() -> None:
    raw = P.encode_reply("a", "score", {"x": float("nan"), "y": [1.0, float("inf")]})
    body = json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert body["ok"] is True and body["result"] == {"x": None, "y": [1.0, None]}
    err = P.parse_reply(P.error_reply("a", "score", "invalid_frame", "m" * 5000))
    assert not err.ok and err.error is not None and err.error.code == "invalid_frame"
    assert len(err.error.message) == 1000
