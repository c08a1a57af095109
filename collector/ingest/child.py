"""One ingest worker process of `serve --workers N` (started and supervised by collector/ingest/pool.py).

It runs the same Ingestor as a single-process collector, on its own database connections and its own broker
session (`<client_id>-w<index>`), and reports its health and batch counts to the supervisor over a pipe
twice a second (the API and /metrics live in the supervisor). SIGTERM finishes the batch in hand (committed,
receipted, acked) and exits; SIGINT is left to the supervisor, which forwards a SIGTERM. If the supervisor
dies, the kernel sends this process SIGTERM (PR_SET_PDEATHSIG): no orphaned worker keeps a broker session.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

from collector.config import CollectorConfig

log = logging.getLogger("collector.ingest")
REPORT_EVERY_S = 0.5
LATENCIES_MAX = 5000  # receipt latencies kept between two reports (a storm's batches: a sample is enough)
PR_SET_PDEATHSIG = 1
# How long a worker may take over its last batch after SIGTERM before the kernel ends it. The supervisor
# SIGKILLs after its own 30 s, but when the supervisor itself died (PR_SET_PDEATHSIG) nobody else would: a
# storm once left workers spinning after SIGTERM until killed by hand. Unacked results come again.
STOP_GRACE_S = 35


def worker_main(cfg: CollectorConfig, index: int, reports: Connection, log_level: str, parent: int) -> None:
    _die_with_parent(parent)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides

    from collector.ingest.pipeline import build_pipeline
    from collector.ingest.worker import Ingestor

    pipeline = build_pipeline(cfg)
    ingestor = Ingestor(cfg, pipeline.store)
    ingestor.take_status = index == 0
    signal.signal(signal.SIGTERM, stop_then_exit_within(ingestor.stop, STOP_GRACE_S))
    reporter = _Reporter(ingestor, reports)
    ingestor.on_batch = reporter.observe_batch
    reporter.start()
    try:
        ingestor.run()
    finally:
        reporter.stop()
        pipeline.store.close()


def stop_then_exit_within(stop: Callable[[], None], seconds: int) -> Callable[..., None]:
    """A SIGTERM handler: ask the ingestor to stop, and arm SIGALRM with its default action (end the process)
    so a worker stuck in a call that never returns still goes away; the alarm needs no thread of ours to run."""

    def handler(*_: object) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(seconds)
        stop()

    return handler


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM is the only way down
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class _Reporter:
    """Sends (health, stored, duplicates, quarantined, latencies) to the supervisor every REPORT_EVERY_S."""

    def __init__(self, ingestor: object, conn: Connection):
        self.ingestor = ingestor
        self.conn = conn
        self._lock = threading.Lock()
        self._counts = [0, 0, 0]
        self._latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-report", daemon=True)

    def observe_batch(self, stored: int, duplicates: int, quarantined: int, latencies_s: Sequence[float]) -> None:
        with self._lock:
            self._counts[0] += stored
            self._counts[1] += duplicates
            self._counts[2] += quarantined
            room = LATENCIES_MAX - len(self._latencies)
            if room > 0:
                self._latencies.extend(latencies_s[:room])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._send()  # the last batches' counts

    def _run(self) -> None:
        while not self._stop.wait(REPORT_EVERY_S):
            if not self._send():
                return

    def _send(self) -> bool:
        with self._lock:
            counts, self._counts = self._counts, [0, 0, 0]
            latencies, self._latencies = self._latencies, []
        try:
            self.conn.send((self.ingestor.health(), *counts, latencies))  # type: ignore[attr-defined]
        except (OSError, ValueError):  # the supervisor is gone: PR_SET_PDEATHSIG stops this process
            return False
        return True
