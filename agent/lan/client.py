"""`linecheck-agent lan-test`: the room test from a laptop's command line, against the agent's LAN
test server — the same phases as the browser page (latency, download, upload with parallel
streams, ramp-up discarded), then the figures are recorded for the room by the gateway.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from linecheck.throughput import protocol as p

# The gateway's own API beside the measurement endpoints (served by agent/lan/server.py).
STATION_PATH = "/api/station"
RESULT_PATH = "/api/result"

CHUNK = 256 * 1024
WARMUP_SHARE = 0.25  # the first quarter of each phase is TCP ramp-up: not counted


class LanTestError(Exception):
    """The server could not be used; the message says why in plain words."""


@dataclass
class Phase:
    mbps: float | None
    bytes: int
    error: str | None = None


@dataclass
class Counter:
    """Bytes moved, and when the count last changed: sampling (at, value) together stays exact
    even when the sampling thread is descheduled on a loaded machine while the streams count on."""

    value: int = 0
    at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int) -> None:
        with self.lock:
            self.value += n
            self.at = time.monotonic()

    def sample(self) -> tuple[float, int]:
        with self.lock:
            return self.at, self.value


class LanTestClient:
    def __init__(self, server: str, *, token: str | None = None, seconds: float = 8.0, streams: int = 4,
                 timeout_s: float = 10.0):
        parts = urlsplit(server if "://" in server else f"http://{server}")
        if parts.scheme != "http" or not parts.hostname:
            raise LanTestError(f"--server must look like http://HOST:PORT (got {server!r})")
        self.host, self.port = parts.hostname, parts.port or 80
        self.token, self.seconds, self.streams, self.timeout_s = token, seconds, streams, timeout_s
        self.test_id = "cli-" + uuid.uuid4().hex[:8]

    # --- plumbing --------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def _path(self, path: str, **query: Any) -> str:
        q = {**query, p.TEST_PARAM: self.test_id}
        if self.token:
            q[p.TOKEN_PARAM] = self.token
        return f"{path}?{urlencode(q)}"

    def _headers(self) -> dict[str, str]:
        return p.auth_header(self.token)

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        conn = self._conn()
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {**self._headers(), **({"Content-Type": "application/json"} if data else {})}
            conn.request(method, self._path(path), body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise LanTestError(f"cannot reach the gateway's test server at {self.host}:{self.port}: {exc}") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            raise LanTestError(f"{path}: the server answered {resp.status} without JSON (not a linecheck "
                               "agent's LAN test server?)") from None

    # --- phases ----------------------------------------------------------------------------------
    def station(self) -> dict[str, Any]:
        status, info = self._json("GET", STATION_PATH)
        if status != 200:
            raise LanTestError(f"the gateway refused: {info.get('detail') or info.get('error')}")
        return info

    def latency(self, count: int = 10) -> tuple[float, float]:
        conn = self._conn()
        rtts = []
        try:
            for i in range(count):
                t0 = time.perf_counter()
                conn.request("GET", self._path(p.LATENCY, n=i), headers=self._headers())
                conn.getresponse().read()
                rtts.append((time.perf_counter() - t0) * 1000)
        finally:
            conn.close()
        jitter = statistics.fmean(abs(b - a) for a, b in zip(rtts, rtts[1:], strict=False))
        return statistics.median(rtts), jitter

    def _phase(self, worker: Any) -> Phase:
        counter, stop, errors = Counter(), threading.Event(), []

        def run() -> None:
            try:
                worker(counter, stop)
            except Exception as exc:  # noqa: BLE001 - reported as the phase's error
                if not stop.is_set():
                    errors.append(str(exc))

        threads = [threading.Thread(target=run, daemon=True) for _ in range(self.streams)]
        start = time.monotonic()
        for t in threads:
            t.start()
        warm_end = start + self.seconds * WARMUP_SHARE
        stop.wait(max(0.0, warm_end - time.monotonic()))
        mark_t, mark_b = counter.sample()
        stop.wait(max(0.0, start + self.seconds - time.monotonic()))
        end_t, end_b = counter.sample()
        stop.set()
        for t in threads:
            t.join(self.timeout_s)
        if errors and end_b == mark_b:
            return Phase(None, end_b, errors[0])
        mbps = (end_b - mark_b) * 8 / 1e6 / (end_t - mark_t) if end_t > mark_t else None
        return Phase(mbps, end_b, errors[0] if errors and not mbps else None)

    def _download(self, counter: Counter, stop: threading.Event) -> None:
        conn = self._conn()
        buf = bytearray(CHUNK)
        try:
            while not stop.is_set():
                conn.request("GET", self._path(p.DOWNLOAD, **{p.BYTES_PARAM: p.REQUEST_BYTES}), headers=self._headers())
                resp = conn.getresponse()
                if resp.status != 200:
                    raise LanTestError(f"download refused: {resp.status} {resp.read()[:200]!r}")
                while not stop.is_set():
                    n = resp.readinto(buf)
                    if not n:
                        break
                    counter.add(n)
                if stop.is_set():
                    return  # the connection is closed mid-body below
        finally:
            conn.close()

    def _upload(self, counter: Counter, stop: threading.Event) -> None:
        block = os.urandom(CHUNK)  # incompressible
        conn = self._conn()

        def body() -> Any:
            while not stop.is_set():
                counter.add(len(block))
                yield block

        try:
            while not stop.is_set():
                headers = {**self._headers(), "Content-Type": p.CONTENT_TYPE_BYTES}
                conn.request("POST", self._path(p.UPLOAD), body=body(), headers=headers, encode_chunked=True)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise LanTestError(f"upload refused: {resp.status}")
        finally:
            conn.close()

    # --- the whole test --------------------------------------------------------------------------
    def run(self, room: str) -> dict[str, Any]:
        """Measure, record for `room`, return the gateway's answer (figures, station, findings)."""
        self.station()  # fail early, with the server's own words, when it refuses us
        started = time.monotonic()
        result: dict[str, Any] = {"room": room, "client": "cli"}
        try:
            result["latency_ms"], result["jitter_ms"] = self.latency()
            down = self._phase(self._download)
            up = self._phase(self._upload)
            result.update(down_mbps=down.mbps, down_bytes=down.bytes, up_mbps=up.mbps, up_bytes=up.bytes)
            failed = [f"{name}: {p.error}" for name, p in (("download", down), ("upload", up)) if p.error]
            if failed:
                result["error"] = "; ".join(failed)[:500]
        except (OSError, LanTestError) as exc:
            result["error"] = str(exc)[:500]
        result["duration_s"] = round(time.monotonic() - started, 2)
        status, answer = self._json("POST", RESULT_PATH, result)
        if status != 200:
            raise LanTestError(f"the gateway did not record the result: {answer.get('detail') or answer.get('error')}")
        return answer
