"""Python clients of the focus service: :class:`ServiceClient` (one request at a time),
:class:`RemoteScorer` (the :class:`~autofocus.score.Scorer` protocol over the wire) and
:class:`RemoteAutofocusSession` (the step-wise autofocus protocol).

Reliability (a "lazy pirate" over a DEALER socket): every request carries a fresh id;
the client waits at most ``timeout_s`` for the reply with that id (stale replies from
earlier, timed-out requests are discarded) and then raises
:class:`~autofocus.errors.AutofocusTimeoutError`.  After a timeout the socket is closed
and a new one is made on the next call, so a restarted server is reached again without
any queued garbage.  ``retries`` resends idempotent requests (``score``, ``health``...)
that timed out; steps of an autofocus session are never resent.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import AutofocusTimeoutError, InvalidInputError, RemoteError, ServiceError
from autofocus.frames import as_frame
from autofocus.optics import Objective
from autofocus.score import FocusScore
from autofocus.service import protocol as P

__all__ = [
    "DEFAULT_ADDRESS",
    "RemoteAutofocusSession",
    "RemoteScorer",
    "ServiceClient",
    "SessionStep",
    "ping",
]

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
_BATCH_BYTES = 64 * 1024 * 1024  # split score_batch requests above this payload


class ServiceClient:
    """A connection to ``autofocus serve`` (thread-safe: calls are serialised).

    ``server_public_key``: the server's CurveZMQ public key (z85 text, bytes, or a key
    file from ``zmq.auth``) when the server uses CURVE; ``client_key_file``: this
    client's secret key file when the server only admits known clients (else an
    ephemeral key pair is used).
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_s: float = 10.0,
        retries: int = 0,
        server_public_key: str | bytes | Path | None = None,
        client_key_file: str | Path | None = None,
    ) -> None:
        if not (timeout_s > 0):
            raise InvalidInputError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise InvalidInputError(f"retries must be >= 0, got {retries}")
        self.address = P.check_endpoint(address)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self._server_key = _load_public_key(server_public_key)
        self._client_keys = _load_keypair(client_key_file) if client_key_file else None
        self._lock = threading.Lock()
        self._sock: Any = None
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-{id(self) & 0xFFFFFF:x}"

    # ---- socket management ----
    def _socket(self) -> Any:
        import zmq

        if self._sock is None:
            s: Any = zmq.Context.instance().socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            if self._server_key is not None:
                pub, sec = self._client_keys or zmq.curve_keypair()
                s.curve_serverkey = self._server_key
                s.curve_publickey = pub
                s.curve_secretkey = sec
            s.connect(self.address)
            self._sock = s
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._reset()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests ----
    def request(
        self,
        header: dict[str, Any],
        payload: Any = None,
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the reply's ``result``.

        Raises :class:`RemoteError` for an error reply and
        :class:`AutofocusTimeoutError` when no reply arrives in time.
        """
        import zmq

        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        tries = 1 + (self.retries if retries is None else int(retries))
        cmd = header.get("cmd")
        with self._lock:
            for attempt in range(tries):
                rid = f"{self._prefix}-{next(self._ids)}"
                head = {"protocol": P.PROTOCOL_VERSION, **header, "id": rid}
                frames: list[Any] = [json.dumps(head, separators=(",", ":")).encode()]
                if payload is not None:
                    frames.append(payload)
                sock = self._socket()
                try:
                    sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    self._reset()
                    continue
                reply = self._await(sock, rid, time.monotonic() + timeout)
                if reply is not None:
                    if not reply.ok:
                        err = reply.error
                        raise RemoteError(
                            err.code if err else "internal", err.message if err else "no detail"
                        )
                    return reply.result or {}
                self._reset()  # lazy pirate: drop the socket and anything queued on it
                if attempt + 1 < tries:
                    log.info("no reply from %s to %s; retrying", self.address, cmd)
        raise AutofocusTimeoutError(
            f"no reply from the focus service at {self.address} to {cmd!r} within "
            f"{timeout:g} s ({tries} attempt(s)); is 'autofocus serve' running?"
        )

    def _await(self, sock: Any, rid: str, deadline: float) -> P.Reply | None:
        while True:
            left_ms = (deadline - time.monotonic()) * 1e3
            if left_ms <= 0 or not sock.poll(max(1, int(left_ms))):
                return None
            parts = sock.recv_multipart()
            reply = P.parse_reply(parts[-1])
            if reply.id == rid:
                return reply
            log.debug("discarding a stale reply %s (waiting for %s)", reply.id, rid)

    # ---- simple commands ----
    def health(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        return self.request({"cmd": "health"}, timeout_s=timeout_s)

    def version(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        return self.request({"cmd": "version"}, timeout_s=timeout_s)

    def calibrations(self) -> list[dict[str, Any]]:
        return list(self.request({"cmd": "calibrations.list"})["calibrations"])

    def calibration(self, calibration_id: str) -> dict[str, Any]:
        return dict(
            self.request({"cmd": "calibrations.get", "calibration_id": calibration_id})[
                "calibration"
            ]
        )


def _objective_field(objective: Objective | str | None) -> str | dict[str, Any] | None:
    if objective is None or isinstance(objective, str):
        return objective
    return objective.model_dump(mode="json")


def _wire_frame(frame: Any) -> np.ndarray:
    """Validate a frame locally and bring it to a wire dtype (exact conversions only)."""
    arr = as_frame(frame)
    if arr.dtype.newbyteorder("<") in P.DTYPES.values():
        return arr
    if arr.dtype.kind == "f":
        return arr.astype(np.float32 if arr.dtype.itemsize <= 4 else np.float64)
    return arr.astype(np.float64)  # int8, int64, uint64...: exact below 2**53


class RemoteScorer:
    """The :class:`~autofocus.score.Scorer` protocol served by ``autofocus serve``.

    Pass an address (a :class:`ServiceClient` is made) or an existing client.  Every
    call raises :class:`AutofocusTimeoutError` after ``timeout_s`` rather than hang;
    timed-out scoring requests are resent ``retries`` times (they are idempotent).
    """

    def __init__(
        self,
        address: str | ServiceClient = DEFAULT_ADDRESS,
        *,
        timeout_s: float = 10.0,
        retries: int = 1,
        **client_options: Any,
    ) -> None:
        if isinstance(address, ServiceClient):
            self.client = address
        else:
            self.client = ServiceClient(
                address, timeout_s=timeout_s, retries=retries, **client_options
            )
        self._model_version: str | None = None

    def score(
        self,
        frame: np.ndarray,
        objective: Objective | str | None = None,
        *,
        with_patches: bool = False,
    ) -> FocusScore:
        arr = _wire_frame(frame)
        dtype, shape, buf = P.encode_pixels(arr)
        res = self.client.request(
            {
                "cmd": "score",
                "dtype": dtype,
                "shape": shape,
                "objective": _objective_field(objective),
                "with_patches": bool(with_patches),
            },
            buf,
        )
        return FocusScore.from_dict(res["score"])

    def score_batch(
        self, frames: Sequence[np.ndarray], objective: Objective | str | None = None
    ) -> list[FocusScore]:
        if isinstance(frames, np.ndarray) and frames.ndim == 2:
            raise InvalidInputError("score_batch takes a sequence of frames; use score()")
        arrs = [_wire_frame(f) for f in frames]
        out: list[FocusScore] = []
        i = 0
        while i < len(arrs):
            j = i + 1
            nbytes = arrs[i].nbytes
            while (
                j < len(arrs)
                and j - i < P.MAX_BATCH
                and arrs[j].shape == arrs[i].shape
                and arrs[j].dtype == arrs[i].dtype
                and nbytes + arrs[j].nbytes <= _BATCH_BYTES
            ):
                nbytes += arrs[j].nbytes
                j += 1
            if j - i == 1:
                out.append(self.score(arrs[i], objective))
            else:
                dtype, shape, buf = P.encode_pixels(np.stack(arrs[i:j]))
                res = self.client.request(
                    {
                        "cmd": "score",
                        "dtype": dtype,
                        "shape": shape,
                        "objective": _objective_field(objective),
                    },
                    buf,
                )
                out.extend(FocusScore.from_dict(d) for d in res["scores"])
            i = j
        return out

    @property
    def model_version(self) -> str:
        """The server's model identifier (asked once, then cached)."""
        if self._model_version is None:
            self._model_version = str(self.client.version()["model_version"])
        return self._model_version

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True)
class SessionStep:
    """A reply of the step-wise protocol: ``move`` to ``z_um`` and send an image, or
    ``done`` at ``z_um`` (with the search's status, confidence and trace)."""

    session_id: str
    action: str
    z_um: float
    images_used: int
    status: str | None = None
    confidence: float | None = None
    reason: str = ""
    trace: list[tuple[float, float]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.action == "done"

    @classmethod
    def from_result(cls, r: dict[str, Any]) -> SessionStep:
        return cls(
            session_id=str(r["session_id"]),
            action=str(r["action"]),
            z_um=float(r["z_um"]),
            images_used=int(r["images_used"]),
            status=r.get("status"),
            confidence=None if r.get("confidence") is None else float(r["confidence"]),
            reason=str(r.get("reason") or ""),
            trace=[
                (float(z), float("nan") if b is None else float(b)) for z, b in r.get("trace", [])
            ],
        )


class RemoteAutofocusSession:
    """One server-side autofocus: ``start()``, then ``step(z_um, frame)`` until done.

    ``run(acquire)`` drives the whole loop: ``acquire(z_um)`` must move the stage to
    ``z_um`` and return the image.  Leaving a ``with`` block cancels an unfinished
    session on the server.
    """

    def __init__(
        self,
        client: ServiceClient | str,
        calibration_id: str,
        z_start_um: float,
        *,
        z_limits_um: tuple[float, float] | None = None,
        objective: Objective | str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.client = client if isinstance(client, ServiceClient) else ServiceClient(client)
        self.calibration_id = calibration_id
        self.z_start_um = float(z_start_um)
        self.z_limits_um = z_limits_um
        self.objective = objective
        self.options = dict(options or {})
        self.session_id: str | None = None
        self.last: SessionStep | None = None

    def start(self) -> SessionStep:
        res = self.client.request(
            {
                "cmd": "autofocus.start",
                "calibration_id": self.calibration_id,
                "z_start_um": self.z_start_um,
                "z_limits_um": None if self.z_limits_um is None else list(self.z_limits_um),
                "objective": _objective_field(self.objective),
                "options": self.options,
            },
            retries=0,
        )
        self.last = SessionStep.from_result(res)
        self.session_id = self.last.session_id
        return self.last

    def step(self, z_um: float, frame: np.ndarray) -> SessionStep:
        if self.session_id is None:
            raise ServiceError("call start() before step()")
        dtype, shape, buf = P.encode_pixels(_wire_frame(frame))
        res = self.client.request(
            {
                "cmd": "autofocus.step",
                "session_id": self.session_id,
                "z_um": float(z_um),
                "dtype": dtype,
                "shape": shape,
            },
            buf,
            retries=0,
        )
        self.last = SessionStep.from_result(res)
        return self.last

    def cancel(self) -> None:
        if self.session_id is not None and not (self.last is not None and self.last.done):
            self.client.request(
                {"cmd": "autofocus.cancel", "session_id": self.session_id}, retries=0
            )
            self.session_id = None

    def run(self, acquire: Callable[[float], np.ndarray], *, max_steps: int = 100) -> SessionStep:
        """Start, then image wherever the server says until it says done."""
        step = self.start()
        for _ in range(max_steps):
            if step.done:
                return step
            frame = acquire(step.z_um)
            step = self.step(step.z_um, frame)
        if not step.done:
            self.cancel()
            raise ServiceError(f"autofocus session did not finish within {max_steps} steps")
        return step

    def __enter__(self) -> RemoteAutofocusSession:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.cancel()
        except ServiceError as e:  # the session may already be gone; never mask the error
            log.debug("cancel on exit failed: %s", e)


def ping(
    address: str = DEFAULT_ADDRESS, *, timeout_s: float = 3.0, **client_options: Any
) -> dict[str, Any]:
    """``{"version": ..., "health": ..., "round_trip_ms": ...}`` of a running server."""
    with ServiceClient(address, timeout_s=timeout_s, **client_options) as c:
        t0 = time.perf_counter()
        health = c.health()
        rtt = (time.perf_counter() - t0) * 1e3
        return {"version": c.version(), "health": health, "round_trip_ms": rtt}


def _load_public_key(key: str | bytes | Path | None) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        return key
    text = str(key)
    if len(text) == 40 and not Path(text).exists():
        return text.encode("ascii")
    import zmq.auth

    try:
        public, _ = zmq.auth.load_certificate(text)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read a CurveZMQ public key from {text}: {exc}") from exc
    return public


def _load_keypair(path: str | Path) -> tuple[bytes, bytes]:
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read CurveZMQ keys from {path}: {exc}") from exc
    if secret is None:
        raise InvalidInputError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret
