"""Several measurement-server processes on one port: the server uses every core.

Python runs one thread at a time per process, and an upload's bytes pass through the interpreter,
so one process serves about one core's worth. `Workers` forks N processes that each listen on the
same address with SO_REUSEPORT (the kernel spreads new connections over them) and share one
`Sessions` made before the fork (shared memory + a process-shared lock), so `max_tests`, the
byte and time caps per test and `max_connections` hold for the server as a whole.

The parent only supervises: it resolves port 0 once (a placeholder socket bound with
SO_REUSEPORT, never listening, so no connection is ever queued on it), starts the workers, starts
a worker again if one dies, and stops them all on `stop()`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
from typing import Any

from linecheck.throughput.server import status_of
from linecheck.throughput.sessions import MAX_WORKERS, Limits, Sessions

_ctx = multiprocessing.get_context("fork")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _die_with(parent: int) -> None:
    """Exit when the supervisor does, however it ends: a SIGKILLed supervisor (a test's teardown, the OOM
    killer) had left its workers serving the port as orphans."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(0)


def _worker_main(host: str, port: int, limits: Limits, sessions: Sessions, worker: int, verbose: bool,
                 ready: Any, parent: int) -> None:
    from testserver.http import ThroughputServer

    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with SIGTERM
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    server = ThroughputServer(host, port, limits, verbose, sessions=sessions, worker=worker, reuse_port=True)
    server.start()
    ready.set()
    stopped.wait()
    server.stop()


class Workers:
    """N forked measurement servers on host:port; `address`, `url`, `status()` as ThroughputServer."""

    def __init__(self, host: str, port: int, limits: Limits, workers: int | None = None,
                 verbose: bool = False) -> None:
        self.count = max(1, min(MAX_WORKERS, workers or default_workers()))
        self.limits = limits
        self.verbose = verbose
        self.sessions = Sessions(limits, workers=self.count)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._placeholder = socket.socket(family, socket.SOCK_STREAM)
        self._placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._placeholder.bind((host, port))  # raises OSError like a single server would
        self.host, self.port = host, self._placeholder.getsockname()[1]
        self._procs: list[Any] = [None] * self.count
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.pid is not None]

    def _spawn(self, worker: int) -> None:
        ready = _ctx.Event()
        proc = _ctx.Process(target=_worker_main, name=f"linecheck-testserver-{worker}", daemon=True,
                            args=(self.host, self.port, self.limits, self.sessions, worker, self.verbose, ready,
                                  os.getpid()))
        proc.start()
        if not ready.wait(30):
            proc.kill()
            raise RuntimeError(f"test server worker {worker} did not start")
        self._procs[worker] = proc

    def start(self) -> Workers:
        for i in range(self.count):
            self._spawn(i)
        self._placeholder.close()  # every worker's socket holds the port now
        self._watcher = threading.Thread(target=self._watch, name="testserver-workers", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        """Start a worker again when it dies (its open transfers are lost; their tests' clients retry)."""
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self._procs):
                if proc is not None and not proc.is_alive() and not self._stopping.is_set():
                    with contextlib.suppress(RuntimeError):
                        self._spawn(i)

    def status(self, test: str | None = None) -> dict[str, Any]:
        """What any worker answers at GET /status (read from the shared table here)."""
        return status_of(self.sessions, test)

    def stop(self) -> None:
        self._stopping.set()
        for proc in self._procs:
            if proc is not None and proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self._procs:
            if proc is not None:
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
                    proc.join(1)
        with contextlib.suppress(OSError):
            self._placeholder.close()

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
