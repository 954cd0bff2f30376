"""Wire format of the focus service (protocol version 1).

A message is a ZMQ multipart message of one or two frames:

1. a UTF-8 JSON header (an object, at most :data:`MAX_HEADER_BYTES`);
2. optionally raw pixel bytes: C order (row-major, last axis fastest), little-endian,
   ``dtype`` and ``shape`` given in the header.  The byte count must equal
   ``prod(shape) * itemsize`` exactly; it is checked before the bytes are used.

Every request header carries ``protocol`` (the integer :data:`PROTOCOL_VERSION`), ``id``
(any string of 1..64 characters chosen by the client, echoed in the reply) and ``cmd``.
Every reply is a single JSON frame::

    {"protocol": 1, "id": "...", "cmd": "...", "ok": true, "result": {...}}
    {"protocol": 1, "id": "...", "cmd": "...", "ok": false,
     "error": {"code": "invalid_frame", "message": "..."}}

Nothing is ever unpickled; JSON is parsed with the standard library and validated with
the pydantic models below (``extra="forbid"``: a misspelt field is an error, not ignored).
Non-finite floats are sent as ``null`` so that any JSON parser can read the replies.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from autofocus.errors import InvalidInputError, ProtocolError
from autofocus.reporting import finite_json

__all__ = [
    "COMMANDS",
    "DTYPES",
    "MAX_BATCH",
    "MAX_HEADER_BYTES",
    "MAX_SIDE_PX",
    "PROTOCOL_VERSION",
    "AutofocusCancel",
    "AutofocusStart",
    "AutofocusStep",
    "CalibrationsGet",
    "CalibrationsList",
    "ErrorCode",
    "Health",
    "Request",
    "Score",
    "Version",
    "decode_pixels",
    "decode_request",
    "encode_pixels",
    "encode_reply",
    "error_reply",
    "expected_nbytes",
    "parse_reply",
]

PROTOCOL_VERSION: Literal[1] = 1
MAX_HEADER_BYTES = 64 * 1024
"""Largest accepted JSON header in bytes."""
MAX_SIDE_PX = 65536
"""Largest accepted image side in pixels."""
MAX_BATCH = 256
"""Largest number of frames in one ``score`` batch."""
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
"""Default cap on the pixel payload of one message (the server's ``max_payload_bytes``)."""

DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "int16": np.dtype("<i2"),
    "uint32": np.dtype("<u4"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
"""Pixel types on the wire (all little-endian)."""

DType = Literal["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
ErrorCode = Literal[
    "bad_message",  # framing or JSON broken
    "unsupported_version",
    "unknown_command",
    "invalid_request",  # header fails validation
    "payload_mismatch",  # pixel bytes absent, unexpected or of the wrong length
    "too_large",
    "invalid_frame",  # pixels rejected by the scorer (too small, NaN...)
    "unknown_name",  # objective or calibration id
    "unknown_session",
    "session_expired",
    "session_busy",
    "search_failed",
    "calibration_error",  # a calibration that does not apply (other blur model...)
    "busy",  # queue or session table full; retry later
    "shutting_down",
    "internal",
]


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal[1] = PROTOCOL_VERSION
    id: str = Field(min_length=1, max_length=64)


class _Pixels(BaseModel):
    """Fields of a request that carries pixel bytes."""

    dtype: DType
    shape: tuple[int, ...]

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 1 or s > MAX_SIDE_PX for s in v):
            raise ValueError(f"every shape entry must lie in [1, {MAX_SIDE_PX}], got {list(v)}")
        return v


ObjectiveField = str | dict[str, Any] | None
"""An objective preset name (``"10X"``) or the fields of an ``Objective``."""


class Score(_Header, _Pixels):
    """Score one frame (``shape [H, W]``) or a batch (``shape [N, H, W]``, N <= MAX_BATCH)."""

    cmd: Literal["score"]
    objective: ObjectiveField = None
    with_patches: bool = False

    @field_validator("shape")
    @classmethod
    def _check_rank(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) not in (2, 3):
            raise ValueError(f"shape must be [H, W] or [N, H, W], got {list(v)}")
        if len(v) == 3 and v[0] > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} frames, got {v[0]}")
        return v


class AutofocusStart(_Header):
    """Open a search session; the reply says where to take the first image."""

    cmd: Literal["autofocus.start"]
    calibration_id: str = Field(min_length=1, max_length=200)
    z_start_um: float = Field(allow_inf_nan=False)
    z_limits_um: tuple[float, float] | None = None
    objective: ObjectiveField = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("z_limits_um")
    @classmethod
    def _check_limits(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] < v[1]):
            raise ValueError(f"z_limits_um must be finite with low < high, got {list(v)}")
        return v


class AutofocusStep(_Header, _Pixels):
    """The image taken at ``z_um`` (the stage's actual position) for a session."""

    cmd: Literal["autofocus.step"]
    session_id: str = Field(min_length=1, max_length=64)
    z_um: float = Field(allow_inf_nan=False)

    @field_validator("shape")
    @classmethod
    def _check_rank(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) != 2:
            raise ValueError(f"shape must be [H, W], got {list(v)}")
        return v


class AutofocusCancel(_Header):
    cmd: Literal["autofocus.cancel"]
    session_id: str = Field(min_length=1, max_length=64)


class CalibrationsList(_Header):
    cmd: Literal["calibrations.list"]


class CalibrationsGet(_Header):
    cmd: Literal["calibrations.get"]
    calibration_id: str = Field(min_length=1, max_length=200)


class Health(_Header):
    cmd: Literal["health"]


class Version(_Header):
    cmd: Literal["version"]


Request = Annotated[
    Score
    | AutofocusStart
    | AutofocusStep
    | AutofocusCancel
    | CalibrationsList
    | CalibrationsGet
    | Health
    | Version,
    Field(discriminator="cmd"),
]
_REQUEST = TypeAdapter(Request)
COMMANDS = (
    "score",
    "autofocus.start",
    "autofocus.step",
    "autofocus.cancel",
    "calibrations.list",
    "calibrations.get",
    "health",
    "version",
)
PIXEL_COMMANDS = frozenset({"score", "autofocus.step"})


def check_endpoint(endpoint: str) -> str:
    """A ZMQ endpoint we can bind or connect: ``tcp://HOST:PORT`` (PORT 0-65535 or ``*``),
    ``ipc://PATH`` or ``inproc://NAME``; else :class:`InvalidInputError`."""
    if not isinstance(endpoint, str):
        raise InvalidInputError(f"endpoint must be a string, got {type(endpoint).__name__}")
    if endpoint.startswith(("ipc://", "inproc://")):
        if endpoint.split("://", 1)[1]:
            return endpoint
        raise InvalidInputError(f"invalid endpoint {endpoint!r}: no path or name")
    if not endpoint.startswith("tcp://"):
        raise InvalidInputError(
            f"invalid endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"
        )
    host, sep, port = endpoint[len("tcp://") :].rpartition(":")
    if not sep or not host.strip("[]"):
        raise InvalidInputError(f"invalid endpoint {endpoint!r}: expected tcp://HOST:PORT")
    if port != "*" and not (port.isdigit() and 0 <= int(port) <= 65535):
        raise InvalidInputError(f"invalid endpoint {endpoint!r}: port must be 0-65535 or *")
    bare = host.strip("[]")
    if all(part.isdigit() for part in bare.split(".")):  # dotted numbers: must be IPv4
        import ipaddress

        try:
            ipaddress.IPv4Address(bare)
        except ValueError:
            raise InvalidInputError(f"invalid endpoint {endpoint!r}: bad IPv4 address") from None
    return endpoint


def expected_nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    """``prod(shape) * itemsize`` in Python integers (no overflow)."""
    n = DTYPES[dtype].itemsize
    for s in shape:
        n *= int(s)
    return n


def decode_request(
    parts: list[Any], *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> tuple[Any, memoryview | None]:
    """Validate one request (header frame plus optional pixel frame).

    ``parts`` are bytes-like objects (``bytes`` or ``zmq.Frame``).  Returns the typed
    request and the payload as a memoryview (or None).  Raises :class:`ProtocolError`
    carrying the error code for the reply; the header's ``id`` and ``cmd`` are attached
    to the error when they could be read, so the reply can echo them.
    """
    if not parts or len(parts) > 2:
        raise ProtocolError(
            f"a request has 1 or 2 frames (header, pixels), got {len(parts)}", "bad_message"
        )
    raw = _buffer(parts[0])
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {raw.nbytes} bytes exceeds {MAX_HEADER_BYTES}", "too_large")
    try:
        head = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not UTF-8 JSON: {exc}", "bad_message") from exc
    except RecursionError:  # a few KB of "[[[[..." is enough to reach it
        raise ProtocolError("header JSON is nested too deeply", "bad_message") from None
    if not isinstance(head, dict):
        raise ProtocolError("header must be a JSON object", "bad_message")
    rid = head.get("id") if isinstance(head.get("id"), str) else None
    cmd = head.get("cmd") if isinstance(head.get("cmd"), str) else None
    ctx = {"request_id": rid[:64] if rid else None, "cmd": cmd[:40] if cmd else None}
    if head.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol {head.get('protocol')!r}; this server speaks {PROTOCOL_VERSION}",
            "unsupported_version",
            **ctx,
        )
    if cmd not in COMMANDS:
        raise ProtocolError(
            f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}", "unknown_command", **ctx
        )
    try:
        req: Any = _REQUEST.validate_python(head)
    except ValidationError as exc:
        raise ProtocolError(_summarise(exc), "invalid_request", **ctx) from None
    payload = _buffer(parts[1]) if len(parts) == 2 else None
    if cmd in PIXEL_COMMANDS:
        need = expected_nbytes(req.dtype, req.shape)
        if need > max_payload_bytes:
            raise ProtocolError(
                f"{req.dtype} {list(req.shape)} needs {need} bytes, more than the "
                f"{max_payload_bytes} this server accepts",
                "too_large",
                **ctx,
            )
        got = 0 if payload is None else payload.nbytes
        if got != need:
            raise ProtocolError(
                f"pixel frame has {got} bytes; {req.dtype} {list(req.shape)} needs {need}",
                "payload_mismatch",
                **ctx,
            )
    elif payload is not None:
        raise ProtocolError(f"{cmd} takes no pixel frame", "payload_mismatch", **ctx)
    return req, payload


def decode_pixels(dtype: str, shape: tuple[int, ...], payload: memoryview) -> np.ndarray:
    """View ``payload`` as an array (read-only, no copy); sizes must already be checked."""
    dt = DTYPES[dtype]
    if payload.nbytes != expected_nbytes(dtype, shape):
        raise ProtocolError("pixel byte count does not match dtype and shape", "payload_mismatch")
    arr = np.frombuffer(payload, dtype=dt).reshape(shape)
    return arr


def encode_pixels(frame: np.ndarray) -> tuple[str, list[int], memoryview]:
    """(dtype name, shape, C-order little-endian bytes) for an array of a wire dtype."""
    arr = np.asarray(frame)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    name = next((k for k, v in DTYPES.items() if v == arr.dtype.newbyteorder("<")), None)
    if name is None:
        raise ProtocolError(
            f"dtype {arr.dtype} cannot be sent; use one of {', '.join(DTYPES)}", "invalid_request"
        )
    arr = np.ascontiguousarray(arr, dtype=DTYPES[name])
    return name, list(arr.shape), arr.data.cast("B")


def encode_reply(
    request_id: str | None, cmd: str | None, result: dict[str, Any] | None = None
) -> bytes:
    """A success reply header."""
    body = {
        "protocol": PROTOCOL_VERSION,
        "id": request_id,
        "cmd": cmd,
        "ok": True,
        "result": result or {},
    }
    return _dumps(body)


def error_reply(request_id: str | None, cmd: str | None, code: str, message: str) -> bytes:
    """An error reply header (``message`` is truncated to 1000 characters)."""
    body = {
        "protocol": PROTOCOL_VERSION,
        "id": request_id,
        "cmd": cmd,
        "ok": False,
        "error": {"code": code, "message": message[:1000]},
    }
    return _dumps(body)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    message: str


class Reply(BaseModel):
    """A reply header as the client reads it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: int
    id: str | None
    cmd: str | None
    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None


def parse_reply(raw: bytes) -> Reply:
    """Parse a reply header; raises :class:`ProtocolError` when it is not one."""
    try:
        return Reply.model_validate_json(raw)
    except ValidationError as exc:
        raise ProtocolError(
            f"malformed reply from server: {_summarise(exc)}", "bad_message"
        ) from None


def _buffer(part: Any) -> memoryview:
    buf = getattr(part, "buffer", part)  # zmq.Frame exposes .buffer
    mv = memoryview(buf)
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


def _summarise(exc: ValidationError) -> str:
    items = []
    for e in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "header"
        items.append(f"{loc}: {e['msg']}")
    return "; ".join(items)


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(finite_json(body), separators=(",", ":"), allow_nan=False).encode("utf-8")
