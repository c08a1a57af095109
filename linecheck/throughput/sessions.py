"""Admission control: how many tests run at once, and how much each may use.

A "test" is what one client does in one go: our engine names it (`test=` query parameter or
`X-Linecheck-Test` header); third-party clients (speedtest-cli, LibreSpeed) are grouped by
client address. A test ends when it has had no open transfer and no request for `idle_s`.
A new test beyond `max_tests` is refused with a clear "server busy"; a test past its byte or
time budget is refused further data (and an ongoing transfer is cut at the budget).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from linecheck.throughput.protocol import BUSY, BUSY_ERROR


@dataclass(frozen=True)
class Limits:
    max_tests: int = 4  # tests running at once; the next one is told "server busy"
    max_connections: int = 128  # open TCP connections; beyond this a connection is refused
    max_test_s: float = 60.0  # one test may last this long (from its first request)
    max_test_bytes: int = 4 * 1024**3  # one test may move this many bytes (down + up)
    max_request_bytes: int = 1024**3  # one download or upload request is clamped to this
    idle_s: float = 3.0  # a test with no activity for this long is over
    token: str | None = None  # when set, every request must carry it


class Refused(Exception):
    """A request the server will not serve; `status` is the HTTP status to answer."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


@dataclass
class TestSession:
    key: str
    started: float
    last_seen: float
    bytes_used: int = 0
    open_transfers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int) -> None:
        with self.lock:
            self.bytes_used += n


class Sessions:
    def __init__(self, limits: Limits, clock=time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._tests: dict[str, TestSession] = {}
        self._lock = threading.Lock()
        self.refused_busy = 0

    def _expire(self, now: float) -> None:
        for key, s in list(self._tests.items()):
            if s.open_transfers == 0 and now - s.last_seen > self.limits.idle_s:
                del self._tests[key]

    def begin(self, key: str) -> TestSession:
        """Admit one request of test `key` (raises Refused); pair with `end`."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            s = self._tests.get(key)
            if s is None:
                if len(self._tests) >= self.limits.max_tests:
                    self.refused_busy += 1
                    raise Refused(BUSY, BUSY_ERROR,
                                  f"{len(self._tests)} tests running, the limit is {self.limits.max_tests}; "
                                  f"retry in {self.limits.idle_s + 1:g} s or later")
                s = self._tests[key] = TestSession(key, now, now)
            if now - s.started > self.limits.max_test_s:
                raise Refused(429, "test too long", f"this test passed the server's {self.limits.max_test_s:g} s cap")
            if s.bytes_used >= self.limits.max_test_bytes:
                raise Refused(429, "test too large",
                              f"this test passed the server's {self.limits.max_test_bytes} byte cap")
            s.open_transfers += 1
            s.last_seen = now
            return s

    def end(self, s: TestSession) -> None:
        with self._lock:
            s.open_transfers -= 1
            s.last_seen = self._clock()

    def budget(self, s: TestSession, wanted: int) -> int:
        """How many of `wanted` bytes this test may still move in one request."""
        left = self.limits.max_test_bytes - s.bytes_used
        return max(0, min(wanted, left, self.limits.max_request_bytes))

    def expired(self, s: TestSession) -> bool:
        return self._clock() - s.started > self.limits.max_test_s

    def running(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._tests)
