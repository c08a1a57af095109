"""Several test server processes on one port (testserver/workers.py): the limits hold for the whole server.

A test's connections land on different workers (SO_REUSEPORT hashes each connection), so a limit kept
per process would admit `max_tests` per worker and let a test's bytes run past its cap on each worker.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from linecheck.throughput.sessions import Limits
from tests.helpers import wait_for
from testserver.workers import Workers


@pytest.fixture
def workers() -> Iterator[Workers]:
    with Workers("127.0.0.1", 0, Limits(max_tests=3, idle_s=30, max_test_bytes=3_000_000,
                                        max_connections=64), workers=2) as srv:
        yield srv


def get(srv: Workers, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def spread(srv: Workers) -> None:
    """Fresh connections reach both workers (else the test below proves nothing)."""
    seen = {json.loads(get(srv, "/status")[1])["worker"] for _ in range(40)}
    assert seen == {0, 1}, seen


def test_max_tests_holds_across_workers(workers: Workers) -> None:
    spread(workers)
    answers = [get(workers, f"/download?bytes=10&test=t{i}")[0] for i in range(8)]
    assert answers.count(200) == 3 and answers.count(503) == 5, answers
    status = json.loads(get(workers, "/status")[1])
    assert status["tests_running"] == 3 and status["refused_busy"] == 5 and status["workers"] == 2
    # A running test goes on whichever worker its next connection lands on.
    assert all(get(workers, "/download?bytes=10&test=t0")[0] == 200 for _ in range(6))


def test_byte_cap_of_one_test_holds_across_workers(workers: Workers) -> None:
    spread(workers)
    got = 0
    for _ in range(10):  # ten connections, both workers: 3 MB in all, never 3 MB per worker
        status, body = get(workers, "/download?bytes=1000000&test=capped")
        got += len(body) if status == 200 else 0
    assert got == 3_000_000
    status = json.loads(get(workers, "/status?test=capped")[1])
    assert status["test"]["bytes"] == 3_000_000


def test_connection_limit_holds_across_workers() -> None:
    with Workers("127.0.0.1", 0, Limits(max_connections=4), workers=2) as srv:
        held = [socket.create_connection(srv.address) for _ in range(4)]
        try:
            wait_for(lambda: srv.status()["connections"] == 4, 5, "four connections to be accepted")
            assert get(srv, "/latency") == (503, json.dumps({"error": "server busy",
                                                             "detail": "too many connections"}).encode())
        finally:
            for s in held:
                s.close()
        wait_for(lambda: get(srv, "/latency")[0] == 200, 5, "the slots to free up")


def test_a_dead_worker_is_started_again(workers: Workers) -> None:
    import os
    import signal

    first = workers.pids()
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: len(set(workers.pids()) - set(first)) == 1, 10, "the worker to be started again")
    assert all(get(workers, "/latency")[0] == 200 for _ in range(10))


def test_one_process_does_without_a_shared_semaphore(monkeypatch) -> None:
    """The gateway's LAN server is one process: where sem_open is missing (no /dev/shm) it still runs;
    several workers cannot share limits without it, so they refuse to start."""
    import multiprocessing

    from linecheck.throughput.sessions import Sessions

    class NoSemaphores:
        def Lock(self):  # noqa: N802 - the multiprocessing context's method name
            raise OSError(38, "Function not implemented")

    real = multiprocessing.get_context
    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: NoSemaphores())
    s = Sessions(Limits(max_tests=1))
    s.end(s.begin("a"))
    assert s.running() == 1
    with pytest.raises(OSError):
        Sessions(Limits(), workers=2)
    monkeypatch.setattr(multiprocessing, "get_context", real)


def test_cli_runs_the_workers_and_names_a_bad_setting() -> None:
    import subprocess
    import sys

    for flag, value, said in (("--workers", "0", "workers: Input should be greater than or equal to 1"),
                              ("--capacity-mbps", "-5", "capacity_mbps: Input should be greater than 0")):
        bad = subprocess.run([sys.executable, "-m", "testserver.cli", "--listen", "127.0.0.1:0", flag, value],
                             capture_output=True, text=True)
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "testserver.cli", "--listen", "127.0.0.1:0", "--no-stamp",
                             "--workers", "2", "--capacity-mbps", "1000"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "(2 workers;" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/status")
        status = json.loads(conn.getresponse().read())
        assert status["workers"] == 2 and status["limits"]["capacity_mbps"] == 1000
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_workers_end_with_a_killed_supervisor() -> None:
    """A SIGKILLed supervisor (a lab's teardown kills its processes) must not leave workers serving as orphans."""
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-m", "testserver.cli", "--listen", "127.0.0.1:0", "--no-stamp",
                             "--workers", "2"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and "http listening" in proc.stdout.readline()
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 2
    proc.kill()
    proc.wait(5)

    def gone(pid: str) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
        except OSError:
            return True

    wait_for(lambda: all(gone(p) for p in children), 10, "the workers to end with their supervisor")
