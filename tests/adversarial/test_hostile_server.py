"""Servers the agent measures against are not trusted to be quick, small or honest (issue 16, item 7).

Each test runs a real server on a free loopback port that misbehaves on purpose — drips one byte at
a time, streams without end, lies in its headers, echoes forged STAMP timestamps — and checks that
the agent's check ends within its own time bound with a failed (or degraded) record and a reason,
reads a bounded amount, and never reports a zero or absurd figure as a measurement.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.checks import http as http_check
from agent.checks.http import HttpConfig, fetch
from agent.reasons import english
from linecheck import stamp
from linecheck.wire import Status
from tests.checkctx import make_ctx

Serve = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """A TCP server on a free loopback port that hands every connection to `serve` (in a thread)."""

    def __init__(self, serve: Serve):
        self.serve = serve
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.serve(conn, self.stop)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        self.listener.close()
        self._thread.join(5)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _drip(conn: socket.socket, stop: threading.Event, data: bytes, every_s: float) -> None:
    for byte in data:
        if stop.wait(every_s):
            return
        conn.sendall(bytes([byte]))


def drip_status_line(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    _drip(conn, stop, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b" " * 200, 0.5)


def drip_body(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")  # close-delimited: no length to check
    _drip(conn, stop, b"x" * 200, 0.5)


def endless_headers(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    n = 0
    while not stop.wait(0.2):  # a new header line every 0.2 s, never the blank line
        conn.sendall(f"X-Filler-{n}: {'y' * 50}\r\n".encode())
        n += 1


def endless_body(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    chunk = b"z" * 16384
    while not stop.wait(0.02):  # ~800 KB/s without end
        conn.sendall(chunk)


def garbage_status_line(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"\x16\x03\x01garbage that is not HTTP at all\r\n\r\n")


def short_body(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100)  # then closes


def hold_after_short_body(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100)
    _drip(conn, stop, b"a" * 200, 0.5)  # the rest never quite comes


TIMEOUT_S = 2.0
SLACK_S = 1.5  # thread start-up, DNS of 127.0.0.1, a loaded CI machine


@pytest.fixture
def serve() -> Iterator[Callable[[Serve], RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Serve) -> RawServer:
        server = RawServer(behaviour).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.mark.parametrize("behaviour", [drip_status_line, drip_body, endless_headers, hold_after_short_body],
                         ids=lambda b: b.__name__)
def test_http_timeout_is_a_total_deadline(serve: Callable[[Serve], RawServer], behaviour: Serve) -> None:
    """Before: each recv had the whole timeout, so a server dripping a byte every 0.5 s held the URL
    for as long as it liked (the reported case: 1 byte/s held a URL 100 s)."""
    server = serve(behaviour)
    url = f"http://127.0.0.1:{server.port}/"
    started = time.monotonic()
    [m] = http_check.run(HttpConfig(urls=[url], request_timeout_s=TIMEOUT_S), make_ctx())
    took = time.monotonic() - started
    assert took < TIMEOUT_S + SLACK_S, f"{behaviour.__name__} held the check {took:.1f} s"
    assert m.status is Status.FAILED and "deadline" in english(m.reason), english(m.reason)
    assert m.findings and m.findings[0].code == "http_failure"
    assert m.metrics["total_ms"] is None  # no figure for a fetch that did not complete


def test_endless_body_is_read_bounded_in_bytes_and_time(serve: Callable[[Serve], RawServer]) -> None:
    server = serve(endless_body)
    started = time.monotonic()
    f = fetch(f"http://127.0.0.1:{server.port}/", TIMEOUT_S, max_body=50_000_000)
    took = time.monotonic() - started
    assert took < TIMEOUT_S + SLACK_S
    assert f.error is not None and "deadline" in f.error
    assert len(f.body) <= 50_000_000
    # With a small body limit the read stops at the limit, long before the deadline, and succeeds.
    f = fetch(f"http://127.0.0.1:{server.port}/", TIMEOUT_S, max_body=100_000)
    assert f.error is None and len(f.body) == 100_000 and f.status_code == 200


@pytest.mark.parametrize("behaviour", [garbage_status_line, short_body], ids=lambda b: b.__name__)
def test_lying_http_server_is_a_failure_with_a_reason(serve: Callable[[Serve], RawServer], behaviour: Serve) -> None:
    server = serve(behaviour)
    started = time.monotonic()
    [m] = http_check.run(HttpConfig(urls=[f"http://127.0.0.1:{server.port}/"], request_timeout_s=TIMEOUT_S),
                         make_ctx())
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S
    assert m.status is Status.FAILED and "http:" in english(m.reason)
    assert m.metrics["total_ms"] is None


# --- the STAMP reflector ---------------------------------------------------------------------------
class ForgingReflector:
    """A UDP reflector on a free loopback port that answers each probe with `answer(packet)`."""

    def __init__(self, answer: Callable[[bytes], list[bytes]]):
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            for reply in self.answer(data):
                self.sock.sendto(reply, peer)

    def __enter__(self) -> ForgingReflector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(5)
        self.sock.close()


def _turnaround(claimed_s: float) -> Callable[[bytes], list[bytes]]:
    def answer(data: bytes) -> list[bytes]:
        sent = stamp.unpack_sender(data)
        now = time.time()
        received, transmitted = (now, now + claimed_s) if claimed_s >= 0 else (now - claimed_s, now)
        return [stamp.pack_reflected(sent.seq, stamp.to_ntp(transmitted), stamp.to_ntp(received), sent, 64,
                                     len(data))]

    answer.__name__ = f"turnaround_{claimed_s:g}s"
    return answer


@pytest.mark.parametrize("claimed_s", [3600.0, -3600.0], ids=["turnaround_1h", "negative_turnaround"])
def test_reflector_with_forged_timestamps_gives_no_zero_rtt(claimed_s: float) -> None:
    """Before: a reflector claiming a turnaround longer than the round trip made every RTT 0 ms and
    the line look perfect; a negative one passed unnoticed."""
    from agent.checks import udp_latency
    from agent.checks.udp_latency import UdpLatencyConfig

    with ForgingReflector(_turnaround(claimed_s)) as refl:
        cfg = UdpLatencyConfig(server="127.0.0.1", port=refl.port, count=20, interval_s=0.005, reply_timeout_s=0.5)
        started = time.monotonic()
        m = udp_latency.run(cfg, make_ctx(timeout_s=10))
        assert time.monotonic() - started < 5
    assert m.metrics["received_count"] == 20
    assert m.metrics["rtt_min_ms"] is not None and m.metrics["rtt_min_ms"] > 0
    assert m.metrics["rtt_max_ms"] < 1000  # the round trip as measured, not the claimed hour
    assert m.status is Status.DEGRADED and "implausible reflector timestamps" in english(m.reason)
    assert m.metrics["implausible_timestamps_count"] == 20


# --- the carrier's measurement server (linecheck-testserver protocol) ------------------------------
def _requests(conn: socket.socket) -> Iterator[str]:
    """The request lines of a keep-alive connection (the agent sends no request bodies here)."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        yield head.split(b"\r\n")[0].decode("latin-1")


def _measurement_server(download: Callable[[socket.socket, threading.Event, str], None],
                        latency: Callable[[socket.socket, threading.Event], None] | None = None) -> Serve:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        for line in _requests(conn):
            if line.startswith("GET /latency"):
                if latency is not None:
                    latency(conn, stop)
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif line.startswith("GET /download"):
                download(conn, stop, line)
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    return serve


def _admit_then(rest: Callable[[socket.socket, threading.Event], None]) -> Callable[..., None]:
    def download(conn: socket.socket, stop: threading.Event, line: str) -> None:
        if "bytes=1&" in line:  # the admission request
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        else:
            rest(conn, stop)

    return download


def _drip_latency(conn: socket.socket, stop: threading.Event) -> None:
    _drip(conn, stop, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b" " * 400, 0.5)


def _huge_refusal(conn: socket.socket, stop: threading.Event, _line: str) -> None:
    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000000000000\r\n\r\n")
    chunk = b"{" * 65536
    until = time.monotonic() + 30
    while time.monotonic() < until and not stop.wait(0.03):  # ~2 MB/s for at most 30 s
        conn.sendall(chunk)


def _empty_download(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def _throughput(port: int, **cfg: object):  # type: ignore[no-untyped-def]
    from agent.checks import throughput
    from agent.checks.throughput import ThroughputConfig

    config = ThroughputConfig.model_validate({"server": f"127.0.0.1:{port}", "directions": ["down"],
                                              "max_direction_s": 4, "min_measure_s": 0.5, **cfg})
    started = time.monotonic()
    m = throughput.run(config, make_ctx(timeout_s=60, wan=None, plan_down=100.0))
    return m, time.monotonic() - started


def test_measurement_server_dripping_its_answers_is_a_failure_in_time(serve: Callable[[Serve], RawServer]) -> None:
    """Before: the idle latency probe waited 2 s per recv, so a byte every 0.5 s held it for minutes."""
    server = serve(_measurement_server(_admit_then(_empty_download), latency=_drip_latency))
    m, took = _throughput(server.port)
    assert took < 2.0 + SLACK_S + 1, f"held {took:.1f} s"
    assert m.status is Status.FAILED and ("too slow" in english(m.reason) or "timed out" in english(m.reason)), english(m.reason)
    assert m.metrics["down_mbps"] is None and not m.findings


def test_measurement_server_announcing_a_huge_refusal_is_not_read(serve: Callable[[Serve], RawServer]) -> None:
    """Before: a 503 announcing a terabyte body was read into memory for as long as it came."""
    server = serve(_measurement_server(_huge_refusal))
    m, took = _throughput(server.port)
    assert took < 5, f"held {took:.1f} s"
    assert m.status is Status.FAILED and "1000000000000-byte answer" in english(m.reason), english(m.reason)
    assert m.metrics["down_mbps"] is None


def test_measurement_server_sending_empty_downloads_gives_no_zero_rate(serve: Callable[[Serve], RawServer]) -> None:
    """Before: empty 200 answers made a rate of almost nothing out of a loopback line, and with a
    plan configured a `throughput_below_plan` finding blamed the line for the server's lie."""
    server = serve(_measurement_server(_admit_then(_empty_download)))
    m, took = _throughput(server.port)
    assert took < 10
    assert m.status is Status.FAILED and "empty body" in english(m.reason), english(m.reason)
    assert m.metrics["down_mbps"] is None and not m.findings


@pytest.mark.parametrize("lie", ["more_bytes_than_sent", "rate_beyond_its_bytes"])
def test_iperf3_server_report_that_cannot_be_true_is_refused(lie: str) -> None:
    """In an upload, iperf3's `sum_received` is the server's own word. Before: a server claiming ten
    times the bytes the agent sent (or a rate its byte count cannot make) became the line's speed."""
    import json
    from pathlib import Path

    from agent.throughput.errors import MeasurementFailed
    from agent.throughput.iperf import parse

    doc = json.loads((Path(__file__).parent.parent / "data" / "iperf3" / "reverse_p2.json").read_text())
    received = doc["end"]["sum_received"]
    if lie == "more_bytes_than_sent":
        received["bytes"] = doc["end"]["sum_sent"]["bytes"] * 10
        received["bits_per_second"] = received["bytes"] * 8 / received["seconds"]
    else:
        received["bits_per_second"] *= 100
    with pytest.raises(MeasurementFailed, match="cannot be trusted"):
        parse(json.dumps(doc))
