"""`linecheck-collector serve --workers N`: N ingest processes on one machine, supervised.

One Python process ingests on about one core (validation, rules and paho are CPU-bound under the GIL:
docs/scaling.md). The supervisor (this module, in the `serve` process, which also runs the API, the console
and the background jobs) starts N worker processes (collector/ingest/child.py), each with its own broker
session `<client_id>-w<i>` and its own database connections, and:
- restarts a worker that dies (logged with its exit status; a worker that keeps dying right after its start
  is restarted with a growing delay, up to 30 s). It comes back under the same client id, so the broker hands
  it again what the dead one had taken and not acked (Mosquitto: the persistent session's in-flight
  messages; NATS: the partition consumers' ack wait);
- stops them all on SIGTERM/SIGINT (each finishes its batch in hand: committed, receipted, acked);
- sums their reports for /healthz and /metrics.

How results are split between the workers:
- broker.kind nats: each worker is a member of the partition leases (collector/ingest/partitions.py), so one
  agent's results go to one worker at a time, as between collectors on several machines;
- broker.kind mqtt: the workers join one `$share` group (`mqtt.shared_group`, else one named after the
  client id). Mosquitto hands the group's messages round robin, so one agent's backlog is spread over the
  workers and their transactions take turns on its per-agent and per-line locks; results stay exact (the
  locks are what makes them so), and with agents sending one result at a time (the steady fleet) they do
  not meet. An MQTT broker with hash routing of shared subscriptions (EMQX `hash_clientid`) gives affinity.
Several workers need PostgreSQL: SQLite has one writer at a time, so a second worker would only wait.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from collector.config import CollectorConfig
from collector.ingest.worker import IngestHealth

log = logging.getLogger("collector.ingest")
STOP_WAIT_S = 30.0  # a worker finishing its batch on SIGTERM; then SIGKILL (nothing acked is lost)
QUICK_DEATH_S = 30.0  # a worker that dies sooner than this after its start is restarted after a delay
RESTART_DELAY_MAX_S = 30.0
REPORT_STALE_S = 5.0  # a worker silent this long is reported as not running


def workers_problem(cfg: CollectorConfig, workers: int) -> str | None:
    """Why this config cannot run `workers` ingest processes, or None."""
    if workers > 1 and cfg.database.startswith("sqlite"):
        return (f"--workers {workers} needs a PostgreSQL database (database: {cfg.database} is SQLite, which "
                "has one writer at a time: a second worker would only wait for the first); use --workers 1")
    return None


def worker_config(cfg: CollectorConfig, index: int) -> CollectorConfig:
    """The worker's config: its own client id (its own broker session and lease membership), the group of
    its siblings on MQTT, no HTTP server (the supervisor serves the API)."""
    group = cfg.mqtt.shared_group or re.sub(r"[^A-Za-z0-9_-]", "-", cfg.mqtt.client_id)
    mqtt = cfg.mqtt.model_copy(update={"client_id": f"{cfg.mqtt.client_id}-w{index}", "shared_group": group})
    return cfg.model_copy(update={"mqtt": mqtt, "http": cfg.http.model_copy(update={"enabled": False})})


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None
    health: IngestHealth | None = None
    reported: float = 0.0
    restarts: int = 0
    pids: list[int] = field(default_factory=list)


class WorkerPool:
    def __init__(self, cfg: CollectorConfig, workers: int, log_level: str = "INFO"):
        self.cfg = cfg
        self.log_level = log_level
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads running
        self.slots = [_Slot(i) for i in range(workers)]
        self.stop_event = threading.Event()
        # Fed with each worker's batch counts (CollectorMetrics.observe_batch), in the supervisor's thread.
        self.on_batch: Callable[[int, int, int, Sequence[float]], None] | None = None

    # --- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)

    def stop(self) -> None:
        """From a signal handler: run() returns and shutdown() stops the workers."""
        self.stop_event.set()

    def run(self) -> None:
        """Supervise until stop(): read reports, restart the dead. Call from the main thread (the workers'
        PR_SET_PDEATHSIG follows the thread that started them)."""
        while not self.stop_event.is_set():
            conns = [s.conn for s in self.slots if s.conn is not None]
            for conn in wait(conns, timeout=0.5) if conns else []:
                self._read(conn)  # type: ignore[arg-type]
            if not conns:
                self.stop_event.wait(0.5)
            now = time.monotonic()
            for slot in self.slots:
                if slot.process is not None and not slot.process.is_alive():
                    self._died(slot, now)
                if slot.process is None and slot.restart_at is not None and now >= slot.restart_at \
                        and not self.stop_event.is_set():
                    self._spawn(slot)

    def shutdown(self) -> None:
        running = [s for s in self.slots if s.process is not None and s.process.is_alive()]
        for slot in running:
            os.kill(slot.process.pid, signal.SIGTERM)  # type: ignore[union-attr,arg-type]
        deadline = time.monotonic() + STOP_WAIT_S
        for slot in running:
            assert slot.process is not None
            slot.process.join(max(0.1, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.error("ingest worker %d (pid %s) did not stop within %.0f s; killing it (what it took and "
                          "did not ack comes again)", slot.index, slot.process.pid, STOP_WAIT_S)
                slot.process.kill()
                slot.process.join(5)
            else:
                log.info("ingest worker %d (pid %s) stopped", slot.index, slot.process.pid)
            self._drain(slot)
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None

    # --- supervision -----------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        from collector.ingest.child import worker_main

        mine, theirs = self._ctx.Pipe(duplex=False)
        cfg = worker_config(self.cfg, slot.index)
        process = self._ctx.Process(target=worker_main, name=f"ingest-worker-{slot.index}",
                                    args=(cfg, slot.index, theirs, self.log_level, os.getpid()))
        process.start()
        theirs.close()  # the worker holds the write end: EOF here when it dies
        slot.process, slot.conn, slot.started, slot.restart_at = process, mine, time.monotonic(), None
        slot.health, slot.reported = None, 0.0
        slot.pids.append(process.pid or 0)
        log.info("ingest worker %d started (pid %s, broker session %s)", slot.index, process.pid,
                 cfg.mqtt.client_id)

    def _died(self, slot: _Slot, now: float) -> None:
        assert slot.process is not None
        self._drain(slot)
        code = slot.process.exitcode
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit status {code}")
        lived = now - slot.started
        slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH_S else 0
        delay = min(RESTART_DELAY_MAX_S, 0.5 * 2 ** slot.quick_deaths) if slot.quick_deaths else 0.0
        log.error("ingest worker %d (pid %s) died after %.0f s (%s); restarting it in %.1f s under the same "
                  "broker session (what it had not acked comes again)", slot.index, slot.process.pid, lived, how,
                  delay)
        if slot.conn is not None:
            slot.conn.close()
        slot.process, slot.conn, slot.health = None, None, None
        slot.restart_at = now + delay
        slot.restarts += 1

    def _drain(self, slot: _Slot) -> None:
        while slot.conn is not None:
            try:
                if not slot.conn.poll():
                    return
            except (OSError, ValueError):
                return
            if not self._read(slot.conn):
                return

    def _read(self, conn: Connection) -> bool:
        slot = next((s for s in self.slots if s.conn is conn), None)
        try:
            health, stored, duplicates, quarantined, latencies = conn.recv()
        except (EOFError, OSError):  # the worker is gone: its death is noticed by is_alive()
            if slot is not None:
                slot.conn = None
            conn.close()
            return False
        if slot is not None:
            slot.health, slot.reported = health, time.monotonic()
        if self.on_batch is not None and (stored or duplicates or quarantined or latencies):
            self.on_batch(stored, duplicates, quarantined, latencies)
        return True

    # --- what the API reads ----------------------------------------------------------------------
    def health(self) -> IngestHealth:
        now = time.monotonic()
        parts: list[IngestHealth] = []
        down: list[str] = []
        for slot in self.slots:
            h = slot.health
            if slot.process is None or h is None or now - slot.reported > REPORT_STALE_S:
                down.append(f"ingest worker {slot.index} not running"
                            + (" (restarting)" if slot.restart_at is not None else ""))
                continue
            parts.append(h)
        if not parts:
            return IngestHealth(False, False, 0, 0.0, False, 0, None, workers_down=tuple(down))
        broken = next((h for h in parts if not h.connected), parts[0])
        owned = [h.partitions_owned for h in parts if h.partitions_owned is not None]
        return replace(
            broken,
            connected=all(h.connected for h in parts), subscribed=all(h.subscribed for h in parts),
            pending=sum(h.pending for h in parts), oldest_pending_s=max(h.oldest_pending_s for h in parts),
            stalled=any(h.stalled for h in parts), db_retries=sum(h.db_retries for h in parts),
            partitions_owned=sum(owned) if owned else None, redelivered=sum(h.redelivered for h in parts),
            workers_down=tuple(down))
