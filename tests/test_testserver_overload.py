"""Overload is never a slow line (issue 22 items 3 and 4), without the lab: a saturated server marks its
tests, the check and the collector do not judge them, a busy server is retried later or another one
used, the nearest server with room is chosen, and what a server says about itself is bounded."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from agent.checks.base import CheckContext, LineInfo
from agent.checks.throughput import ThroughputConfig, judge
from agent.checks.throughput import run as run_check
from agent.reasons import english
from agent.throughput.result import METRICS
from agent.throughput.select import Candidate, rank
from agent.throughput.serverinfo import has_room, server_limited, status
from collector.promises.criterion import SpeedCriterion
from collector.promises.model import SpeedPromise
from collector.promises.speed import evaluate_speed, sample_from_metrics
from linecheck import speed
from linecheck.throughput.sessions import Limits
from linecheck.wire import Status
from testserver.http import ThroughputServer


def ctx(plan: float | None = None, deadline_s: float = 60) -> CheckContext:
    return CheckContext(line=LineInfo("lo", [], plan, plan, None), state={}, deadline=time.monotonic() + deadline_s)


def limited_metrics() -> dict:
    m = dict.fromkeys(METRICS)
    m.update(down_mbps=40.0, up_mbps=45.0, stable_down_flag=1, stable_up_flag=1, cross_traffic_high_flag=0,
             latency_idle_ms=2.0, latency_loaded_down_ms=300.0, server_limited_flag=1)
    return m


def test_a_server_limited_test_is_never_below_plan() -> None:
    notes = ["the server was saturated during the test (the server's link was at capacity): its figures ..."]
    m = judge(ThroughputConfig(), ctx(plan=100.0), limited_metrics(), "linecheck://x:1", notes)
    assert m.status is Status.ERROR and not m.findings  # no throughput_below_plan, no latency_under_load
    assert english(m.reason).startswith("the test server was saturated during the test (the server's link")
    unlimited = {**limited_metrics(), "server_limited_flag": 0}
    m = judge(ThroughputConfig(), ctx(plan=100.0), unlimited, "linecheck://x:1", [])
    assert {f.code for f in m.findings} == {"throughput_below_plan", "latency_under_load"}  # the same figures, judged
    assert speed.untrusted_reason(limited_metrics(), "up") == "server_limited"
    assert speed.untrusted_reason({**limited_metrics(), "server_limited_flag": None}, "up") is None  # old server


def test_the_promise_ledger_excludes_server_limited_tests() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    promise = SpeedPromise(id="p", line_id="l", effective=now.date() - timedelta(days=90), down_mbps=100, up_mbps=100)
    good = [sample_from_metrics(f"g{i}", now - timedelta(days=i + 1), {"down_mbps": 95.0, "up_mbps": 95.0})
            for i in range(12)]
    busy = [sample_from_metrics(f"s{i}", now - timedelta(hours=i + 1), limited_metrics()) for i in range(6)]
    v = evaluate_speed(promise, good + busy, SpeedCriterion(), now, grace_days=0)
    assert v.down.excluded == {"server_limited": 6} and v.down.all.valid == 12
    assert all("measured the server" in (t.detail or "") for t in v.down.tests if t.excluded)
    bare = [sample_from_metrics(f"s{i}", now - timedelta(hours=i + 1),
                                {**limited_metrics(), "server_limited_flag": 0}) for i in range(6)]
    # Counted, the same six would be failed tests.
    assert evaluate_speed(promise, good + bare, SpeedCriterion(), now, grace_days=0).down.all.valid == 18


def test_a_saturated_server_marks_the_test_it_served() -> None:
    """--capacity-mbps 1: a loopback download fills it; the engine's question after the test gets the mark."""
    with ThroughputServer("127.0.0.1", 0, Limits(capacity_mbps=1, idle_s=30)) as srv:
        host, port = srv.address
        conn = http.client.HTTPConnection(host, port, timeout=10)
        deadline = time.monotonic() + 1.5  # a test of a few samples: the server samples every 0.5 s
        while time.monotonic() < deadline:
            conn.request("GET", "/download?bytes=2000000&test=t1")
            conn.getresponse().read()
        conn.close()
        limited, why = server_limited(host, port, None, "t1")
        # The link's mark is the point; the CPU's may come too: the server's "own" CPU here is this whole
        # process, the client loop above included (a fresh-clone run saw both).
        assert limited == 1 and "the server's link was at capacity" in why, why
        assert status(host, port)["limited_tests"] == 1  # type: ignore[index]
    with ThroughputServer("127.0.0.1", 0, Limits(capacity_mbps=100_000, idle_s=30)) as srv:
        conn = http.client.HTTPConnection(*srv.address, timeout=10)
        conn.request("GET", "/download?bytes=1000&test=t2")
        conn.getresponse().read()
        assert server_limited(*srv.address, None, "t2") == (0, [])
        assert server_limited(*srv.address, None, "never-ran") == (None, [])


@pytest.fixture
def two_servers() -> Iterator[tuple[ThroughputServer, ThroughputServer]]:
    with ThroughputServer("127.0.0.1", 0, Limits(max_tests=1, idle_s=60)) as near, \
            ThroughputServer("127.0.0.1", 0, Limits(max_tests=4, idle_s=60)) as other:
        yield near, other


def hold_slot(srv: ThroughputServer) -> None:
    conn = http.client.HTTPConnection(*srv.address, timeout=5)
    conn.request("GET", "/download?bytes=10&test=someone-else")
    assert conn.getresponse().read() and conn.close() is None


def test_the_check_uses_the_server_with_room_and_says_which(two_servers) -> None:  # type: ignore[no-untyped-def]
    near, other = two_servers
    hold_slot(near)
    cfg = ThroughputConfig(servers=[f"127.0.0.1:{near.address[1]}", f"127.0.0.1:{other.address[1]}"],
                           directions=["down"], max_test_bytes=20_000_000, max_direction_s=2)
    m = run_check(cfg, ctx())
    assert m.target == f"linecheck://127.0.0.1:{other.address[1]}", m
    assert m.metrics["down_mbps"] is not None
    assert near.status()["refused_busy"] == 0  # its /status said full: never asked for a slot


def test_every_server_busy_is_retried_with_backoff_then_reported_busy(two_servers) -> None:  # type: ignore[no-untyped-def]
    near, _ = two_servers
    hold_slot(near)
    cfg = ThroughputConfig(server=f"127.0.0.1:{near.address[1]}", busy_retries=2, busy_backoff_s=0.2,
                           directions=["down"], max_direction_s=1)
    t0 = time.monotonic()
    m = run_check(cfg, ctx(deadline_s=120))
    took = time.monotonic() - t0
    assert m.status is Status.ERROR and english(m.reason).startswith("server busy: 1 tests running")
    assert m.target == f"linecheck://127.0.0.1:{near.address[1]}" and all(v is None for v in m.metrics.values())
    assert near.status()["refused_busy"] == 3  # the first try and two retries
    assert took >= 0.15 + 0.3  # 0.2 s then 0.4 s, each ±25 %: it waited, it did not hammer


def test_rank_prefers_room_then_the_lowest_idle_round_trip() -> None:
    far = Candidate("a", "linecheck://a:1", 30.0, True)
    near_busy = Candidate("b", "linecheck://b:1", 1.0, False)
    near = Candidate("c", "linecheck://c:1", 5.0, None)  # an old server that does not say
    silent = Candidate("d", "linecheck://d:1", None, None)
    assert [c.spec for c in rank([far, near_busy, near, silent])] == ["c", "a", "b"]


class _Hostile(threading.Thread):
    """A 'test server' whose /status answers are hostile: the agent must bound and type-check them."""

    def __init__(self, body: bytes, length: int | None = None) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.head = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(body) if length is None else length))
        self.body = body

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(4096)
            with contextlib.suppress(OSError):
                conn.sendall(self.head + self.body)
            conn.close()


@pytest.mark.parametrize("body,length", [
    (b"x" * 100, 10**9),  # a gigabyte announced
    (b"not json", None),
    (b"[1, 2]", None),
    (json.dumps({"test": {"server_limited": "yes"}}).encode(), None),  # not a bool
    (json.dumps({"tests_running": True, "limits": {"max_tests": 2}}).encode(), None),
])
def test_hostile_status_answers_say_nothing(body: bytes, length: int | None) -> None:
    srv = _Hostile(body, length)
    srv.start()
    try:
        assert server_limited("127.0.0.1", srv.port, None, "t") == (None, [])
        assert has_room(status("127.0.0.1", srv.port)) is None
    finally:
        srv.sock.close()


def test_hostile_reasons_are_bounded() -> None:
    body = json.dumps({"test": {"server_limited": True, "server_limited_reasons": ["<b>" + "x" * 3000] * 10}})
    srv = _Hostile(body.encode())
    srv.start()
    try:
        limited, why = server_limited("127.0.0.1", srv.port, None, "t")
        assert limited == 1 and len(why) == 4 and all(len(w) == 80 for w in why)
    finally:
        srv.sock.close()


def test_asking_for_reports_in_a_burst_does_not_mark_tests() -> None:
    """Hostile: anyone may ask GET /status?test=..., and each question takes a look. A burst of them a
    millisecond apart must not measure one 100 kB step over a millisecond (a momentary 'full link')
    and mark every running test server-limited."""
    with ThroughputServer("127.0.0.1", 0, Limits(capacity_mbps=500, idle_s=30)) as srv:
        host, port = srv.address
        conn = http.client.HTTPConnection(host, port, timeout=10)
        for _ in range(60):  # ~100 kB each, interleaved with the reports: well under 450 Mbit/s on average
            conn.request("GET", "/download?bytes=100000&test=victim")
            conn.getresponse().read()
            conn.request("GET", "/status?test=victim")
            conn.getresponse().read()
        conn.close()
        assert server_limited(host, port, None, "victim") == (0, [])
        assert srv.status()["limited_tests"] == 0
