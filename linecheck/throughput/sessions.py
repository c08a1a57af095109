"""Admission control: how many tests run at once, and how much each may use — across worker processes.

A "test" is what one client does in one go: our engine names it (`test=` query parameter or
`X-Linecheck-Test` header); third-party clients (speedtest-cli, LibreSpeed) are grouped by
client address. A test ends when it has had no open transfer and no request for `idle_s`.
A new test beyond `max_tests` is refused with a clear "server busy"; a test past its byte or
time budget is refused further data (and an ongoing transfer is cut at the budget).

The table of running tests lives in shared memory (an anonymous MAP_SHARED mapping) behind one
process-shared lock, created before the server forks its workers (testserver/workers.py): a
test's streams land on different workers (SO_REUSEPORT hashes each connection), yet its byte and
time budget, the number of tests and the connection count are one figure for the whole server.
One slot per admissible test: `max_tests` slots are all there is, so the limit cannot be
exceeded by a race between workers. The same table serves a single in-process server.

The table also carries the server's own saturation (saturation.py): every test running while the
server's link or CPU was full is marked, and the engine asks for that mark when its test ends.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import threading
import time
from dataclasses import dataclass
from typing import Any

from linecheck.throughput.protocol import BUSY, BUSY_ERROR, TEST_ID_MAX

KEY_BYTES = TEST_ID_MAX + 16  # "test:" / "client:" + the name or address
MAX_WORKERS = 256
RING = 8  # saturation samples kept (saturation.py reads a window over them)


@dataclass(frozen=True)
class Limits:
    max_tests: int = 4  # tests running at once; the next one is told "server busy"
    max_connections: int = 128  # open TCP connections; beyond this a connection is refused
    max_test_s: float = 60.0  # one test may last this long (from its first request)
    max_test_bytes: int = 4 * 1024**3  # one test may move this many bytes (down + up)
    max_request_bytes: int = 1024**3  # one download or upload request is clamped to this
    idle_s: float = 3.0  # a test with no activity for this long is over
    token: str | None = None  # when set, every request must carry it
    capacity_mbps: float | None = None  # the server's link, each way; None: judge saturation by CPU only


class Refused(Exception):
    """A request the server will not serve; `status` is the HTTP status to answer."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


# --- the shared layout ------------------------------------------------------------------------------
class _Slot(ctypes.Structure):
    _fields_ = [("used", ctypes.c_int32), ("open_transfers", ctypes.c_int32), ("limited", ctypes.c_int32),
                ("generation", ctypes.c_int32), ("started", ctypes.c_double), ("last_seen", ctypes.c_double),
                ("bytes_used", ctypes.c_int64), ("key", ctypes.c_char * KEY_BYTES)]


class _Sample(ctypes.Structure):
    _fields_ = [("at", ctypes.c_double), ("sent", ctypes.c_int64), ("received", ctypes.c_int64),
                ("cpu_s", ctypes.c_double)]


class _Header(ctypes.Structure):
    _fields_ = [("connections", ctypes.c_int64), ("refused_busy", ctypes.c_int64),
                ("refused_connections", ctypes.c_int64), ("sent", ctypes.c_int64), ("received", ctypes.c_int64),
                ("tests_started", ctypes.c_int64), ("limited_tests", ctypes.c_int64),
                ("samples", ctypes.c_int64), ("saturated", ctypes.c_int32), ("workers", ctypes.c_int32),
                ("out_bps", ctypes.c_double), ("in_bps", ctypes.c_double), ("cpu_share", ctypes.c_double),
                ("ring", _Sample * RING), ("worker_cpu_s", ctypes.c_double * MAX_WORKERS)]


class TestSession:
    """One admitted request's handle on its test's slot (valid from `begin` to `end`)."""

    __slots__ = ("_sessions", "_slot", "key")

    def __init__(self, sessions: Sessions, slot: _Slot, key: str) -> None:
        self._sessions, self._slot, self.key = sessions, slot, key

    @property
    def bytes_used(self) -> int:
        return int(self._slot.bytes_used)

    @property
    def started(self) -> float:
        return float(self._slot.started)

    def add(self, n: int, direction: str = "down") -> None:
        self._sessions.add(self, n, direction)


class Sessions:
    """The running tests and connection count, shared by every worker forked after it was made."""

    def __init__(self, limits: Limits, clock=time.monotonic, workers: int = 1) -> None:
        self.limits = limits
        self._clock = clock
        size = ctypes.sizeof(_Header) + ctypes.sizeof(_Slot) * limits.max_tests
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.header = _Header.from_buffer(self._map)
        self.header.workers = workers
        self.slots = (_Slot * limits.max_tests).from_buffer(self._map, ctypes.sizeof(_Header))
        # A POSIX semaphore in shared memory: it works between threads and between forked workers. A
        # single process (the gateway's LAN server) does without where sem_open is missing (no /dev/shm).
        try:
            self.lock: Any = multiprocessing.get_context("fork").Lock()
        except OSError:
            if workers > 1:
                raise
            self.lock = threading.Lock()

    # --- admission -------------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        for s in self.slots:
            if s.used and s.open_transfers == 0 and now - s.last_seen > self.limits.idle_s:
                s.used = 0

    def _find(self, key: bytes) -> _Slot | None:
        return next((s for s in self.slots if s.used and s.key == key), None)

    def begin(self, key: str) -> TestSession:
        """Admit one request of test `key` (raises Refused); pair with `end`."""
        raw = key.encode()[:KEY_BYTES]
        now = self._clock()
        with self.lock:
            self._expire(now)
            s = self._find(raw)
            if s is None:
                free = next((slot for slot in self.slots if not slot.used), None)
                if free is None:
                    self.header.refused_busy += 1
                    raise Refused(BUSY, BUSY_ERROR,
                                  f"{self.limits.max_tests} tests running, the limit is {self.limits.max_tests}; "
                                  f"retry in {self.limits.idle_s + 1:g} s or later")
                s = free
                s.used, s.open_transfers, s.limited, s.bytes_used = 1, 0, 0, 0
                s.generation += 1
                s.started = s.last_seen = now
                s.key = raw
                self.header.tests_started += 1
            if now - s.started > self.limits.max_test_s:
                raise Refused(429, "test too long", f"this test passed the server's {self.limits.max_test_s:g} s cap")
            if s.bytes_used >= self.limits.max_test_bytes:
                raise Refused(429, "test too large",
                              f"this test passed the server's {self.limits.max_test_bytes} byte cap")
            s.open_transfers += 1
            s.last_seen = now
            return TestSession(self, s, key)

    def end(self, t: TestSession) -> None:
        with self.lock:
            t._slot.open_transfers -= 1
            t._slot.last_seen = self._clock()

    def add(self, t: TestSession, n: int, direction: str = "down") -> None:
        with self.lock:
            t._slot.bytes_used += n
            if direction == "down":
                self.header.sent += n
            else:
                self.header.received += n

    def budget(self, t: TestSession, wanted: int) -> int:
        """How many of `wanted` bytes this test may still move in one request."""
        left = self.limits.max_test_bytes - t.bytes_used
        return max(0, min(wanted, left, self.limits.max_request_bytes))

    def expired(self, t: TestSession) -> bool:
        return self._clock() - t.started > self.limits.max_test_s

    def running(self) -> int:
        with self.lock:
            self._expire(self._clock())
            return sum(1 for s in self.slots if s.used)

    def test_report(self, key: str) -> dict[str, object] | None:
        """What the server knows of one running (or just finished, not yet idled out) test."""
        from linecheck.throughput.saturation import reasons  # saturation imports this module

        with self.lock:
            s = self._find(key.encode()[:KEY_BYTES])
            if s is None:
                return None
            return {"bytes": int(s.bytes_used), "server_limited": bool(s.limited),
                    "server_limited_reasons": reasons(s.limited)}

    # --- connections -----------------------------------------------------------------------------
    def connection_opened(self) -> bool:
        """Count a new connection; False (and counted as refused) when the server is full."""
        with self.lock:
            if self.header.connections >= self.limits.max_connections:
                self.header.refused_connections += 1
                return False
            self.header.connections += 1
            return True

    def connection_closed(self) -> None:
        with self.lock:
            self.header.connections -= 1

    @property
    def refused_busy(self) -> int:
        return int(self.header.refused_busy)

    @property
    def connections(self) -> int:
        return int(self.header.connections)

    @property
    def refused_connections(self) -> int:
        return int(self.header.refused_connections)
