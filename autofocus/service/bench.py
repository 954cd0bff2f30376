"""``autofocus bench service``: what the network hop costs and how the server holds up.

Runs ``autofocus serve`` in a subprocess on a free loopback port and measures, in one run:

1. **Overhead**: p50 of remote ``score`` minus p50 of the same ``LocalScorer`` in this
   process, on a 2048x2048 uint16 frame (calls interleaved so both see the same machine
   load), plus the median of the paired differences.
2. **Concurrency**: ``clients`` processes scoring 512x512 frames for ``duration_s``;
   throughput, errors and lost replies (requests without a reply within the timeout);
   meanwhile an extra client is SIGKILLed mid-request; the server's RSS before and after.
3. **Malformed input**: ``malformed`` bad messages (bad JSON, wrong byte counts, unknown
   commands, huge shapes, wrong dtypes, ...), each of which must get an error reply;
   then ``health``.
4. **Shutdown**: SIGTERM, and the server's exit code (0 = graceful).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import ServiceError
from autofocus.reporting import print_table, write_json

__all__ = ["run_service_benchmark"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _frame(size_px: int, seed: int) -> np.ndarray:
    """A textured uint16 frame (smoothed noise blobs on an offset, with shot noise)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    small = gaussian_filter(rng.random((size_px, size_px)), 3.0)
    small = (small - small.min()) / (np.ptp(small) + 1e-12)
    return rng.poisson(100 + 3000 * small).astype(np.uint16)


def _client_loop(address: str, duration_s: float, size_px: int, seed: int, out: Any) -> None:
    """One benchmark client process: score frames until the duration is over."""
    from autofocus.errors import AutofocusTimeoutError, RemoteError
    from autofocus.service.client import RemoteScorer

    frame = _frame(size_px, seed)
    remote = RemoteScorer(address, timeout_s=60.0, retries=0)
    ok = errors = lost = 0
    ms: list[float] = []
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            remote.score(frame)
            ok += 1
            ms.append((time.perf_counter() - t0) * 1e3)
        except AutofocusTimeoutError:
            lost += 1
        except (RemoteError, ServiceError):
            errors += 1
    remote.close()
    out.put({"seed": seed, "ok": ok, "errors": errors, "lost": lost, "ms": ms})


def _victim_loop(address: str, size_px: int) -> None:  # pragma: no cover - killed
    from autofocus.service.client import RemoteScorer

    remote = RemoteScorer(address, timeout_s=60.0, retries=0)
    frame = _frame(size_px, 99)
    while True:
        remote.score(frame)


class _NullScorer:
    """Validates the frame and returns a constant score: isolates the transport cost."""

    model_version = "null"

    def __init__(self) -> None:
        from autofocus.score import FocusScore

        self._score = FocusScore(
            probabilities=np.full(11, 1 / 11),
            expected_level=5.0,
            predicted_level=5,
            certainty_aggregate=0.0,
            certainty_mean=0.0,
            certainty_max=0.0,
            certainty_weighted=0.0,
            in_focus_probability=0.27,
            blur_px=1.0,
            blur_spread_px=0.0,
            astigmatism_px=0.0,
            textured_fraction=1.0,
            verdict="out_of_focus",
            abs_dz_um=None,
            abs_dz_um_from_level=None,
            model_version="null",
        )

    def score(self, frame: Any, objective: Any = None, *, with_patches: bool = False) -> Any:
        from autofocus.frames import as_frame

        as_frame(frame)
        return self._score

    def score_batch(self, frames: Any, objective: Any = None) -> list[Any]:
        return [self.score(f) for f in frames]


def _transport_round_trip(frame: np.ndarray, repeats: int) -> dict[str, float]:
    """p50 of a remote score against a no-op scorer (a server thread in this process)."""
    from autofocus.service.client import RemoteScorer
    from autofocus.service.server import FocusServer, ServiceConfig

    srv = FocusServer(ServiceConfig(bind="tcp://127.0.0.1:0"), scorer=_NullScorer())
    try:
        remote = RemoteScorer(srv.start(), timeout_s=60.0, retries=0)
        remote.score(frame)
        ms = []
        for _ in range(max(repeats, 10)):
            t0 = time.perf_counter()
            remote.score(frame)
            ms.append((time.perf_counter() - t0) * 1e3)
        remote.close()
    finally:
        srv.stop()
    return {"transport_round_trip_p50_ms": float(np.median(ms))}


def _malformed_messages(n: int) -> list[list[bytes]]:
    def head(**kw: Any) -> bytes:
        return json.dumps({"protocol": 1, "id": "bad", **kw}).encode()

    kinds: list[list[bytes]] = [
        [b"{not json"],
        [b"\xff\xfe\x00binary"],
        [b"[1, 2, 3]"],
        [head(cmd="no.such.command")],
        [json.dumps({"protocol": 99, "id": "v", "cmd": "health"}).encode()],
        [head(cmd="score", dtype="uint16", shape=[512, 512]), bytes(1000)],
        [head(cmd="score", dtype="uint16", shape=[512, 512])],
        [head(cmd="score", dtype="uint16", shape=[65536, 65536]), bytes(16)],
        [head(cmd="score", dtype="uint16", shape=[10**9, 10**9]), bytes(16)],
        [head(cmd="score", dtype="complex128", shape=[4, 4]), bytes(256)],
        [head(cmd="score", dtype="object", shape=[4, 4]), bytes(128)],
        [head(cmd="score", dtype="uint8", shape=[-1, 4]), bytes(4)],
        [head(cmd="health", unexpected=True)],
        [head(cmd="health"), b"pixels nobody asked for"],
        [
            head(
                cmd="autofocus.step", session_id="nope", z_um=0.0, dtype="uint8", shape=[100, 100]
            ),
            bytes(10000),
        ],
        [head(cmd="autofocus.start", calibration_id="none", z_start_um="high")],
        [head(cmd="score"), b"", b"three frames"],
        [
            head(cmd="score", dtype="float32", shape=[100, 100]),
            np.full(10000, np.nan, "<f4").tobytes(),
        ],
        [head(cmd="score", dtype="uint8", shape=[4, 4]), bytes(16)],  # below one patch
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def _last_error_line(proc: subprocess.Popen[bytes]) -> str:
    """The server's own error message (its last non-empty stderr line), if any."""
    try:
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    except (OSError, ValueError):
        return ""
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _wait_ready(address: str, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    from autofocus.service.client import ping

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            why = _last_error_line(proc)
            raise ServiceError(
                f"the server exited with code {proc.returncode} while starting"
                + (f": {why}" if why else "")
            )
        try:
            return ping(address, timeout_s=1.0)
        except ServiceError:
            time.sleep(0.5)
    raise ServiceError(f"the server did not answer within {timeout_s:g} s")


def run_service_benchmark(
    output: str | Path,
    *,
    duration_s: float = 60.0,
    clients: int = 4,
    malformed: int = 1000,
    repeats: int = 30,
    frame_px: int = 2048,
    client_frame_px: int = 512,
    weights_dir: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); prints a table, writes JSON."""
    import multiprocessing as mp

    import zmq

    from autofocus.scorer import LocalScorer
    from autofocus.service.client import RemoteScorer, ServiceClient

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "autofocus.cli", "serve", "--bind", address, "--device", device]
    if weights_dir is not None:
        cmd += ["--weights-dir", str(weights_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results: dict[str, Any] = {"address": address, "device": device}
    try:
        results["version"] = _wait_ready(address, proc, 180.0)["version"]

        # 1. overhead on a 2048x2048 uint16 frame
        local = LocalScorer(
            weights_dir=None if weights_dir is None else str(weights_dir), device=device
        )
        remote = RemoteScorer(address, timeout_s=120.0, retries=0)
        frame = _frame(frame_px, 0)
        for _ in range(2):
            local.score(frame)
            remote.score(frame)
        t_local, t_remote = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            local.score(frame)
            t1 = time.perf_counter()
            remote.score(frame)
            t2 = time.perf_counter()
            t_local.append((t1 - t0) * 1e3)
            t_remote.append((t2 - t1) * 1e3)
        tl, tr = np.asarray(t_local), np.asarray(t_remote)
        results["overhead"] = {
            "frame": f"{frame_px}x{frame_px} uint16",
            "repeats": repeats,
            "local_p50_ms": float(np.median(tl)),
            "remote_p50_ms": float(np.median(tr)),
            "overhead_p50_ms": float(np.median(tr) - np.median(tl)),
            "overhead_paired_median_ms": float(np.median(tr - tl)),
        }
        remote.close()
        del local
        results["overhead"].update(_transport_round_trip(frame, repeats))

        # 2. concurrent clients, one of them killed mid-request
        rss_before = _rss_mb(proc.pid)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [
            ctx.Process(target=_client_loop, args=(address, duration_s, client_frame_px, i, q))
            for i in range(clients)
        ]
        victim = ctx.Process(target=_victim_loop, args=(address, client_frame_px))
        for p in procs:
            p.start()
        victim.start()
        time.sleep(min(duration_s / 3, 10.0))
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        victim.join()
        stats = [q.get(timeout=duration_s + 300) for _ in procs]
        for p in procs:
            p.join()
        ms = np.concatenate([np.asarray(s["ms"]) for s in stats]) if stats else np.zeros(0)
        n_ok = sum(s["ok"] for s in stats)
        health = ServiceClient(address, timeout_s=10).health()
        results["concurrency"] = {
            "clients": clients,
            "frame": f"{client_frame_px}x{client_frame_px} uint16",
            "duration_s": duration_s,
            "requests_ok": n_ok,
            "errors": sum(s["errors"] for s in stats),
            "lost_replies": sum(s["lost"] for s in stats),
            "throughput_per_s": n_ok / duration_s,
            "latency_p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
            "latency_p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
            "killed_client": "SIGKILL mid-run",
            "server_rss_before_mb": rss_before,
            "server_rss_after_mb": _rss_mb(proc.pid),
            "health_after": health["status"],
        }

        # 3. malformed messages
        zctx: Any = zmq.Context.instance()
        sock = zctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        answered = error_replies = 0
        codes: dict[str, int] = {}
        for parts in _malformed_messages(malformed):
            sock.send_multipart(parts)
            if not sock.poll(10000):
                continue
            rep = json.loads(sock.recv_multipart()[-1])
            answered += 1
            if rep.get("ok") is False:
                error_replies += 1
                code = rep["error"]["code"]
                codes[code] = codes.get(code, 0) + 1
        sock.close()
        health = ServiceClient(address, timeout_s=10).health()
        results["malformed"] = {
            "sent": malformed,
            "answered": answered,
            "error_replies": error_replies,
            "codes": codes,
            "health_after": health["status"],
        }
    finally:
        # 4. graceful shutdown
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        results["shutdown_exit_code"] = proc.returncode
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode not in (0, None):
            results["server_stderr_tail"] = err[-2000:]
    _report(results)
    write_json(output, {"benchmark": "service", **results})
    return results


def _report(r: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = []
    o, c, m = r.get("overhead", {}), r.get("concurrency", {}), r.get("malformed", {})
    if o:
        rows += [
            (f"local score p50 ({o['frame']}), ms", o["local_p50_ms"]),
            ("remote score p50, ms", o["remote_p50_ms"]),
            ("overhead p50 (target <= 10 ms), ms", o["overhead_p50_ms"]),
            ("overhead, median of paired differences, ms", o["overhead_paired_median_ms"]),
            ("transport round trip p50 (no-op scorer), ms", o["transport_round_trip_p50_ms"]),
        ]
    if c:
        rows += [
            (f"{c['clients']} clients x {c['duration_s']:g} s: requests ok", c["requests_ok"]),
            ("throughput, requests/s", c["throughput_per_s"]),
            ("errors / lost replies", f"{c['errors']} / {c['lost_replies']}"),
            ("latency p50 / p99, ms", f"{c['latency_p50_ms']:.1f} / {c['latency_p99_ms']:.1f}"),
            (
                "server RSS before / after, MiB",
                f"{c['server_rss_before_mb']:.0f} / {c['server_rss_after_mb']:.0f}",
            ),
            ("health after a killed client", c["health_after"]),
        ]
    if m:
        rows += [
            ("malformed sent / error replies", f"{m['sent']} / {m['error_replies']}"),
            ("health after malformed", m["health_after"]),
        ]
    rows.append(("exit code after SIGTERM", r.get("shutdown_exit_code")))
    print_table("autofocus bench service", ["measure", "value"], rows)
