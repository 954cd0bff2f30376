"""``autofocus serve``: the focus scoring service (pyzmq ROUTER).

Threads
-------
* The **I/O loop** (the thread that calls :meth:`FocusServer.serve_forever`, or a
  background thread from :meth:`FocusServer.start`) owns the ROUTER socket.  It decodes
  and validates every request, answers the cheap commands itself (``health``,
  ``version``, ``calibrations.*``, ``autofocus.start/cancel``) and queues the ones that
  need the models (``score``, ``autofocus.step``).  So ``health`` answers while a model
  is busy.
* One **worker** thread takes queued jobs, scores them and hands the reply back to the
  I/O loop (a thread-safe queue plus an inproc wake-up socket; ZMQ sockets never cross
  threads).  When several plain ``score`` jobs with the same objective are waiting, it
  scores them as one batch (``Scorer.score_batch``): no added latency, since it only
  takes what is already queued.  If a batch fails, its jobs are rescored one by one so a
  bad frame only fails its own request.

Envelopes: DEALER clients send ``[header, pixels?]``; REQ clients (``[b"", header,
pixels?]`` after the identity) are answered with the same empty delimiter, so plain REQ
sockets in any language work.

Safety: loopback by default; binding anywhere else needs CurveZMQ keys or an explicit
``insecure=True`` (logged as a warning).  Header and payload sizes are checked before
use, ``ZMQ_MAXMSGSIZE`` caps each frame, the job queue is bounded (``busy`` replies when
full), errors become error replies and never stop the loop.  SIGINT/SIGTERM (via
:func:`serve`) stop it gracefully: queued jobs are finished and answered first.

Logging: one DEBUG line per request (command, id, outcome, milliseconds) and an INFO
summary every ``summary_interval_s`` (requests, requests/s, errors, p50/p99 latency).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autofocus.contrast import contrast_signature
from autofocus.errors import (
    AutofocusError,
    CalibrationError,
    FocusSearchError,
    InvalidFrameError,
    InvalidInputError,
    ProtocolError,
    ServiceError,
    UnknownNameError,
)
from autofocus.optics import Objective, get_objective
from autofocus.score import FocusScore, Scorer
from autofocus.service import protocol as P
from autofocus.service.sessions import (
    CalibrationSource,
    FolderCalibrations,
    SessionManager,
    default_search_factory,
)

__all__ = ["FocusServer", "ServiceConfig", "is_loopback", "rss_mb", "serve"]

log = logging.getLogger(__name__)

DEFAULT_BIND = "tcp://127.0.0.1:5557"


class ServiceConfig(BaseModel):
    """Settings of ``autofocus serve`` (all validated)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bind: str = Field(default=DEFAULT_BIND, description="ZMQ endpoint; port 0 or * = any free")
    insecure: bool = Field(default=False, description="allow a non-loopback bind without CURVE")
    curve_secret_key: Path | None = Field(
        default=None, description="server secret key file (zmq.auth certificate format)"
    )
    curve_clients_dir: Path | None = Field(
        default=None, description="folder of authorised client public keys (else any client)"
    )
    session_ttl_s: float = Field(default=300.0, gt=0)
    max_sessions: int = Field(default=256, ge=1)
    max_payload_bytes: int = Field(default=P.DEFAULT_MAX_PAYLOAD_BYTES, ge=1024)
    queue_size: int = Field(default=32, ge=1)
    batch_max_frames: int = Field(default=16, ge=1, le=P.MAX_BATCH)
    summary_interval_s: float = Field(default=60.0, gt=0)
    shutdown_grace_s: float = Field(default=5.0, ge=0)


def is_loopback(endpoint: str) -> bool:
    """True for ``ipc://``/``inproc://`` and ``tcp://`` on a loopback address."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', an interface name or a host name
        return False


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc; else peak RSS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class _Job:
    envelope: list[Any]
    request_id: str
    cmd: str
    t0: float
    frames: list[np.ndarray]
    objective: Objective | None
    with_patches: bool
    finish: Callable[[list[FocusScore]], dict[str, Any]]
    on_error: Callable[[], None] | None = None
    keep: Any = None  # the zmq frame whose buffer ``frames`` view

    @property
    def batch_key(self) -> tuple[Any, ...] | None:
        return None if self.with_patches else (self.objective,)


@dataclass
class _Stats:
    started_s: float = field(default_factory=time.monotonic)
    requests: int = 0
    errors: int = 0
    window_start_s: float = field(default_factory=time.monotonic)
    window_ms: list[float] = field(default_factory=list)
    window_errors: int = 0

    def record(self, ms: float, ok: bool) -> None:
        self.requests += 1
        self.errors += 0 if ok else 1
        self.window_errors += 0 if ok else 1
        if len(self.window_ms) < 1_000_000:
            self.window_ms.append(ms)


class FocusServer:
    """The service.  Pass ``scorer`` (any :class:`Scorer`) to serve it instead of
    loading the shipped models (``weights_dir``/``device`` are then ignored).

    Use ``with FocusServer(...) as srv:`` (background thread) or :func:`serve`
    (foreground, signal handling).  ``endpoint`` is the bound address (with the real
    port when the bind asked for any free port).
    """

    def __init__(
        self,
        config: ServiceConfig | None = None,
        *,
        scorer: Scorer | None = None,
        weights_dir: str | Path | None = None,
        device: str = "cpu",
        calibrations: CalibrationSource | None = None,
        search_factory: Any = default_search_factory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or ServiceConfig()
        _check_security(self.config)
        if scorer is None:
            from autofocus.scorer import LocalScorer

            scorer = LocalScorer(
                weights_dir=None if weights_dir is None else str(weights_dir), device=device
            )
        self.scorer = scorer
        self.sessions = SessionManager(
            calibrations,
            ttl_s=self.config.session_ttl_s,
            max_sessions=self.config.max_sessions,
            search_factory=search_factory,
            clock=clock,
        )
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=self.config.queue_size)
        self._outbox: queue.SimpleQueue[
            tuple[list[Any], bytes, float, str, str | None, str | None]
        ] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._worker_stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._stats = _Stats()
        self._wake_addr = f"inproc://autofocus-wake-{id(self):x}"
        self.endpoint: str | None = None
        self._ctx: Any = None
        self._auth: Any = None

    # ---- lifecycle ----
    def start(self) -> str:
        """Run the I/O loop in a background thread; returns the bound endpoint."""
        self._thread = threading.Thread(target=self._serve_thread, name="autofocus-io", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._start_error is not None:
            raise self._start_error
        if self.endpoint is None:
            raise ServiceError("the service did not start within 30 s")
        return self.endpoint

    def _serve_thread(self) -> None:
        try:
            self.serve_forever()
        except BaseException:
            if self._start_error is None:
                raise
            # a start error reaches start()'s caller; do not report it twice

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the loop to stop and wait for it (when it runs in a background thread)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def request_stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler)."""
        self._stop.set()

    def __enter__(self) -> FocusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Bind, then answer requests until :meth:`request_stop` (runs in this thread)."""
        import zmq

        try:
            router, wake = self._open()
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            self._close_context()
            raise
        self._ready.set()
        log.info("autofocus service listening on %s (models %s)", self.endpoint, self._model_id())
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        next_sweep = next_summary = time.monotonic()
        next_summary += self.config.summary_interval_s
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if wake in events:
                    _drain(wake)
                self._flush(router)
                if router in events:
                    for _ in range(256):
                        try:
                            parts = router.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle(router, parts)
                    self._flush(router)
                now = time.monotonic()
                if now >= next_sweep:
                    n = self.sessions.expire()
                    if n:
                        log.info("expired %d idle autofocus session(s)", n)
                    next_sweep = now + 1.0
                if now >= next_summary:
                    self._summary(now)
                    next_summary = now + self.config.summary_interval_s
        finally:
            self._shutdown(router, wake)

    # ---- sockets ----
    def _open(self) -> tuple[Any, Any]:
        import zmq

        self._ctx = zmq.Context()
        cfg = self.config
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.MAXMSGSIZE, cfg.max_payload_bytes + P.MAX_HEADER_BYTES)
        router.setsockopt(zmq.RCVHWM, 1000)
        router.setsockopt(zmq.SNDHWM, 1000)
        try:
            self._secure(router)
        except BaseException:
            router.close(0)  # an open socket would block the context's term() for ever
            raise
        bind = cfg.bind
        if bind.startswith("tcp://") and bind.endswith(":0"):
            bind = bind[:-2] + ":*"
        try:
            router.bind(bind)
        except zmq.ZMQError as exc:
            router.close(0)
            raise ServiceError(f"cannot bind {cfg.bind}: {exc}") from exc
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        wake = self._ctx.socket(zmq.PULL)
        wake.bind(self._wake_addr)
        self._worker_stop.clear()
        self._worker = threading.Thread(target=self._work, name="autofocus-worker", daemon=True)
        self._worker.start()
        return router, wake

    def _secure(self, router: Any) -> None:
        """CurveZMQ on the router socket when the config gives the server's keys."""
        cfg = self.config
        if cfg.curve_secret_key is None:
            return
        key = Path(cfg.curve_secret_key)
        if not key.is_file():
            raise InvalidInputError(f"no such CurveZMQ key file: {key}")
        import zmq.auth

        try:
            public, secret = zmq.auth.load_certificate(str(key))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read the CurveZMQ key file {key}: {exc}") from exc
        if secret is None:
            raise InvalidInputError(f"{cfg.curve_secret_key} holds no secret key")
        if cfg.curve_clients_dir is not None:
            from zmq.auth.thread import ThreadAuthenticator

            if not Path(cfg.curve_clients_dir).is_dir():
                raise InvalidInputError(f"no such client key folder: {cfg.curve_clients_dir}")

            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(cfg.curve_clients_dir))
        router.curve_secretkey = secret
        router.curve_publickey = public
        router.curve_server = True

    def _shutdown(self, router: Any, wake: Any) -> None:
        import zmq

        log.info("autofocus service stopping: finishing %d queued job(s)", self._jobs.qsize())
        self._worker_stop.set()
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while self._worker is not None and self._worker.is_alive():
            self._flush(router)
            # answer newcomers with 'shutting_down' instead of leaving them hanging
            try:
                parts = router.recv_multipart(zmq.NOBLOCK, copy=False)
                env, rest = _split_envelope(parts)
                rid, cmd = _peek_ids(rest)
                reply = P.error_reply(rid, cmd, "shutting_down", "the server is stopping")
                self._send(router, env, reply, time.monotonic(), cmd or "?", "shutting_down", rid)
            except zmq.Again:
                pass
            if time.monotonic() > deadline:
                log.warning("worker did not finish within %.1f s", self.config.shutdown_grace_s)
                break
            self._worker.join(0.02)
        self._flush(router)
        wake.close(0)
        router.close(linger=500)
        self._close_context()
        self._summary(time.monotonic())
        log.info("autofocus service stopped")

    def _close_context(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ---- request handling ----
    def _handle(self, router: Any, parts: list[Any]) -> None:
        t0 = time.monotonic()
        env, rest = _split_envelope(parts)
        try:
            req, payload = P.decode_request(rest, max_payload_bytes=self.config.max_payload_bytes)
        except ProtocolError as exc:
            reply = P.error_reply(exc.request_id, exc.cmd, exc.code, str(exc))
            self._send(router, env, reply, t0, exc.cmd or "?", exc.code, exc.request_id)
            return
        except Exception as exc:  # never let one message take the service down
            log.exception("could not decode a request")
            reply = P.error_reply(None, None, "internal", f"could not decode the request: {exc}")
            self._send(router, env, reply, t0, "?", "internal", None)
            return
        try:
            result = self._dispatch(env, req, payload, t0)
        except Exception as exc:
            code, msg = _error_code(exc)
            reply = P.error_reply(req.id, req.cmd, code, msg)
            self._send(router, env, reply, t0, req.cmd, code, req.id)
            return
        if result is not None:
            reply = P.encode_reply(req.id, req.cmd, result)
            self._send(router, env, reply, t0, req.cmd, None, req.id)

    def _dispatch(
        self, env: list[Any], req: Any, payload: memoryview | None, t0: float
    ) -> dict[str, Any] | None:
        """Answer inline (returns the result) or queue a job (returns None)."""
        cmd = req.cmd
        if cmd == "health":
            return self._health()
        if cmd == "version":
            return self._version()
        if cmd == "calibrations.list":
            cals = self.sessions.calibrations
            return {"calibrations": [] if cals is None else cals.list()}
        if cmd == "calibrations.get":
            if self.sessions.calibrations is None:
                raise UnknownNameError("this server has no calibrations folder")
            return {"calibration": self.sessions.calibrations.get(req.calibration_id)}
        if cmd == "autofocus.start":
            return self.sessions.open(
                req.calibration_id,
                req.z_start_um,
                req.z_limits_um,
                _objective(req.objective),
                req.options,
            )
        if cmd == "autofocus.cancel":
            return self.sessions.cancel(req.session_id)
        if cmd == "score":
            arr = P.decode_pixels(req.dtype, req.shape, payload)  # type: ignore[arg-type]
            frames = [arr] if arr.ndim == 2 else list(arr)
            batch = arr.ndim == 3
            wp = req.with_patches

            def finish(scores: list[FocusScore]) -> dict[str, Any]:
                d = [s.to_dict(with_patches=wp) for s in scores]
                return {"scores": d} if batch else {"score": d[0]}

            self._queue(
                _Job(
                    env,
                    req.id,
                    cmd,
                    t0,
                    frames,
                    _objective(req.objective),
                    wp,
                    finish,
                    keep=payload,
                )
            )
            return None
        if cmd == "autofocus.step":
            arr = P.decode_pixels(req.dtype, req.shape, payload)  # type: ignore[arg-type]
            s = self.sessions.begin_step(req.session_id)
            z_um = req.z_um

            def finish_step(scores: list[FocusScore]) -> dict[str, Any]:
                # the frame's low-pass contrast: the search's phase-object cue
                score = replace(scores[0], contrast_signature=contrast_signature(arr))
                return self.sessions.finish_step(s, z_um, score)

            def abort() -> None:
                self.sessions.abort(s, "closed after an error")

            try:
                self._queue(
                    _Job(
                        env,
                        req.id,
                        cmd,
                        t0,
                        [arr],
                        s.objective,
                        s.with_patches,
                        finish_step,
                        on_error=abort,
                        keep=payload,
                    )
                )
            except ProtocolError as exc:
                if exc.code == "busy":  # nothing happened yet: the client may resend
                    self.sessions.release(s)
                else:  # pragma: no cover - _queue raises only 'busy'
                    abort()
                raise
            return None
        raise ProtocolError(f"unknown command {cmd!r}", "unknown_command")  # pragma: no cover

    def _queue(self, job: _Job) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise ProtocolError(
                f"{self.config.queue_size} requests are already waiting; retry later", "busy"
            ) from None

    def _send(
        self,
        router: Any,
        env: list[Any],
        reply: bytes,
        t0: float,
        cmd: str,
        code: str | None,
        rid: str | None = None,
    ) -> None:
        import zmq

        ms = (time.monotonic() - t0) * 1e3
        self._stats.record(ms, code is None)
        try:
            router.send_multipart([*env, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone / HWM: the reply is dropped, not the server
            log.debug("reply to a vanished client dropped: %s", exc)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s id=%s %s %.1f ms", cmd, rid, "ok" if code is None else code, ms)

    def _flush(self, router: Any) -> None:
        while True:
            try:
                env, reply, t0, cmd, code, rid = self._outbox.get_nowait()
            except queue.Empty:
                return
            self._send(router, env, reply, t0, cmd, code, rid)

    # ---- worker ----
    def _work(self) -> None:
        import zmq

        wake = self._ctx.socket(zmq.PUSH)
        wake.connect(self._wake_addr)
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=0.05)
                except queue.Empty:
                    if self._worker_stop.is_set():
                        return
                    continue
                jobs = [job]
                n = len(job.frames)
                while n < self.config.batch_max_frames:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    jobs.append(more)
                    n += len(more.frames)
                groups: dict[Any, list[_Job]] = {}
                for j in jobs:
                    key = j.batch_key
                    groups.setdefault(key if key is not None else id(j), []).append(j)
                for group in groups.values():
                    self._run_group(group)
                    try:
                        wake.send(b"", zmq.NOBLOCK)
                    except zmq.Again:  # pragma: no cover - the loop polls anyway
                        pass
        finally:
            wake.close(0)

    def _run_group(self, group: list[_Job]) -> None:
        frames = [f for j in group for f in j.frames]
        first = group[0]
        try:
            if len(frames) == 1:
                scores = [
                    self.scorer.score(frames[0], first.objective, with_patches=first.with_patches)
                ]
            elif first.with_patches:
                scores = [self.scorer.score(f, first.objective, with_patches=True) for f in frames]
            else:
                scores = list(self.scorer.score_batch(frames, first.objective))
        except Exception as exc:
            if len(group) > 1:  # isolate the bad frame: rescore one by one
                for j in group:
                    self._run_group([j])
                return
            self._fail(first, exc)
            return
        i = 0
        for j in group:
            part = scores[i : i + len(j.frames)]
            i += len(j.frames)
            try:
                reply = P.encode_reply(j.request_id, j.cmd, j.finish(part))
            except Exception as exc:
                self._fail(j, exc)
                continue
            self._outbox.put((j.envelope, reply, j.t0, j.cmd, None, j.request_id))

    def _fail(self, job: _Job, exc: BaseException) -> None:
        if job.on_error is not None:
            job.on_error()
        code, msg = _error_code(exc)
        self._outbox.put(
            (
                job.envelope,
                P.error_reply(job.request_id, job.cmd, code, msg),
                job.t0,
                job.cmd,
                code,
                job.request_id,
            )
        )

    # ---- inline answers ----
    def _model_id(self) -> str:
        try:
            return str(self.scorer.model_version)
        except Exception:  # pragma: no cover - a broken injected scorer
            return "unknown"

    def _health(self) -> dict[str, Any]:
        alive = self._worker is not None and self._worker.is_alive()
        return {
            "status": "ok" if alive else "degraded",
            "uptime_s": time.monotonic() - self._stats.started_s,
            "requests": self._stats.requests,
            "errors": self._stats.errors,
            "sessions": len(self.sessions),
            "queue_depth": self._jobs.qsize(),
            "worker_alive": alive,
            "rss_mb": rss_mb(),
        }

    def _version(self) -> dict[str, Any]:
        from autofocus import __version__

        models = []
        for attr in ("classifier_card", "regressor_card"):
            card = getattr(self.scorer, attr, None)
            if card is not None:
                models.append(
                    {
                        "name": card.name,
                        "version": card.version,
                        "model_id": card.model_id,
                        "sha256": card.sha256,
                    }
                )
        return {
            "protocol": P.PROTOCOL_VERSION,
            "package": __version__,
            "model_version": self._model_id(),
            "models": models,
            "commands": list(P.COMMANDS),
            "max_payload_bytes": self.config.max_payload_bytes,
        }

    def _summary(self, now: float) -> None:
        st = self._stats
        span = max(now - st.window_start_s, 1e-9)
        ms = np.asarray(st.window_ms) if st.window_ms else np.zeros(1)
        log.info(
            "requests %d (%.1f/s), errors %d, latency p50 %.1f ms p99 %.1f ms, "
            "sessions %d, queue %d, rss %.0f MiB",
            len(st.window_ms),
            len(st.window_ms) / span,
            st.window_errors,
            float(np.percentile(ms, 50)),
            float(np.percentile(ms, 99)),
            len(self.sessions),
            self._jobs.qsize(),
            rss_mb(),
        )
        st.window_ms = []
        st.window_errors = 0
        st.window_start_s = now


def serve(
    config: ServiceConfig | None = None,
    *,
    scorer: Scorer | None = None,
    weights_dir: str | Path | None = None,
    device: str = "cpu",
    calibrations: CalibrationSource | None = None,
    calibrations_dir: str | Path | None = None,
) -> None:
    """Run the service in this (main) thread until SIGINT or SIGTERM.

    ``calibrations_dir``: a calibration store folder (ids are file names without
    ``.json``); calibrations made with another blur model than the server's are refused.
    """
    import signal

    server = FocusServer(
        config, scorer=scorer, weights_dir=weights_dir, device=device, calibrations=calibrations
    )
    if calibrations_dir is not None:
        server.sessions.calibrations = FolderCalibrations(calibrations_dir, scorer=server.scorer)

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        server.request_stop()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ---- helpers ----
def _check_security(cfg: ServiceConfig) -> None:
    P.check_endpoint(cfg.bind)
    if cfg.curve_clients_dir is not None and cfg.curve_secret_key is None:
        raise InvalidInputError("curve_clients_dir needs curve_secret_key (the server's keys)")
    if is_loopback(cfg.bind):
        return
    if cfg.curve_secret_key is not None:
        return
    if not cfg.insecure:
        raise InvalidInputError(
            f"binding {cfg.bind} would expose the service beyond this machine without "
            "encryption; give CurveZMQ keys (--curve-secret-key) or pass --insecure"
        )
    log.warning(
        "INSECURE: serving on %s without CurveZMQ; anyone who can reach this port can use "
        "the service and read the images",
        cfg.bind,
    )


def _split_envelope(parts: list[Any]) -> tuple[list[Any], list[Any]]:
    """(routing envelope, message frames): the identity plus an empty delimiter for REQ."""
    env, rest = list(parts[:1]), list(parts[1:])
    if rest and len(rest[0]) == 0:
        env.append(b"")
        rest = rest[1:]
    return env, rest


def _peek_ids(rest: list[Any]) -> tuple[str | None, str | None]:
    """Best-effort (id, cmd) of a request, for replies that do not process it."""
    if not rest or len(rest[0]) > P.MAX_HEADER_BYTES:
        return None, None
    try:
        head = json.loads(bytes(getattr(rest[0], "buffer", rest[0])))
    except (ValueError, TypeError, RecursionError):
        return None, None
    if not isinstance(head, dict):
        return None, None
    rid, cmd = head.get("id"), head.get("cmd")
    return (
        rid[:64] if isinstance(rid, str) else None,
        cmd[:40] if isinstance(cmd, str) else None,
    )


def _objective(spec: str | dict[str, Any] | None) -> Objective | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return get_objective(spec)
    try:
        return Objective.model_validate(spec)
    except Exception as exc:
        raise ProtocolError(f"invalid objective: {exc}", "invalid_request") from None


def _error_code(exc: BaseException) -> tuple[str, str]:
    """Reply code and message for an exception (unexpected ones are logged)."""
    if isinstance(exc, ProtocolError):
        return exc.code, str(exc)
    if isinstance(exc, InvalidFrameError):
        return "invalid_frame", str(exc)
    if isinstance(exc, UnknownNameError):
        return "unknown_name", str(exc)
    if isinstance(exc, CalibrationError):
        return "calibration_error", str(exc)
    if isinstance(exc, FocusSearchError):
        return "search_failed", str(exc)
    if isinstance(exc, InvalidInputError):
        return "invalid_request", str(exc)
    if isinstance(exc, AutofocusError):
        return "internal", f"{type(exc).__name__}: {exc}"
    log.exception("unexpected error while answering a request", exc_info=exc)
    return "internal", f"{type(exc).__name__}: {exc}"


def _drain(sock: Any) -> None:
    import zmq

    while True:
        try:
            sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
