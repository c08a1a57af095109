"""Latency probes: small HTTP round trips on their own connection, idle and while the line is loaded.

Under load, the probe's answer queues behind the test's data in the bottleneck buffer, so the
loaded-minus-idle difference is the line's bufferbloat; RPM (round trips per minute) turns it
into one "responsiveness" figure, in the spirit of the IETF responsiveness draft.
"""

from __future__ import annotations

import threading
import time

from agent.throughput.errors import MeasurementFailed
from agent.throughput.streams import connect, read_head, read_small_body
from linecheck.throughput import protocol as p


class Prober(threading.Thread):
    """Sends `GET /latency` every `interval_s` on one persistent connection; keeps RTTs in ms."""

    def __init__(self, host: str, port: int, interval_s: float = 0.1, timeout_s: float = 2.0) -> None:
        super().__init__(daemon=True, name="latency-prober")
        self.host, self.port, self.interval_s, self.timeout_s = host, port, interval_s, timeout_s
        self.samples: list[tuple[float, float]] = []  # (monotonic time sent, rtt ms)
        self.lost = 0
        self._halt = threading.Event()

    def one(self, sock, buf) -> float:  # type: ignore[no-untyped-def]
        request = p.raw_request("GET", p.LATENCY, self.host)
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.timeout_s  # for the whole probe, however the server paces it
        sock.sendall(request)
        status, headers, early = read_head(sock, buf, deadline)
        read_small_body(sock, buf, headers, early, deadline)
        if status != p.OK:
            raise MeasurementFailed(f"latency probe answered HTTP {status}")
        return (time.perf_counter() - t0) * 1000.0

    def run(self) -> None:
        buf = memoryview(bytearray(8192))
        sock = None
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                if sock is None:
                    sock = connect(self.host, self.port)
                    sock.settimeout(self.timeout_s)
                self.samples.append((started, self.one(sock, buf)))
            except (OSError, MeasurementFailed):
                self.lost += 1
                if sock is not None:
                    sock.close()
                    sock = None
            self._halt.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(self.timeout_s + 1)

    def between(self, t0: float, t1: float) -> list[float]:
        return [rtt for t, rtt in list(self.samples) if t0 <= t <= t1]


def idle_latency(host: str, port: int, count: int = 10, interval_s: float = 0.05) -> list[float]:
    """`count` probes on an idle line; raises MeasurementFailed when the server does not answer."""
    prober = Prober(host, port, interval_s)
    buf = memoryview(bytearray(8192))
    sock = connect(host, port)
    sock.settimeout(prober.timeout_s)
    try:
        rtts = []
        for _ in range(count):
            rtts.append(prober.one(sock, buf))
            time.sleep(interval_s)  # pacing between probes, not synchronisation
        return rtts
    except OSError as exc:
        raise MeasurementFailed(f"latency probe to {host}:{port} failed: {exc}") from exc
    finally:
        sock.close()


def trimmed_mean(values: list[float], keep: float = 0.95) -> float | None:
    """Mean of the lowest `keep` share (the responsiveness draft trims the top 5 %)."""
    if not values:
        return None
    ordered = sorted(values)
    n = max(1, int(len(ordered) * keep))
    return sum(ordered[:n]) / n


def median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
