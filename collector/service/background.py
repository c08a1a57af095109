"""The collector's periodic work beside ingest: publish queued commands, sweep for silent agents and
expired re-tests, deliver notifications, apply retention. Every collector runs it; each job is safe
to run concurrently (unique constraints, SKIP LOCKED claims, advisory locks)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from collector.commands.queue import Outbox
from collector.rules.engine import RuleEngine
from collector.store.database import Store

log = logging.getLogger(__name__)


class Background:
    def __init__(self, store: Store, rules: RuleEngine, client: mqtt.Client, tick_s: float = 1.0):
        self.store = store
        self.rules = rules
        self.outbox = Outbox(store.engine, client)
        self.tick_s = tick_s
        self.stop_event = threading.Event()
        self.jobs: list[tuple[str, float, Callable[[], object]]] = [
            ("commands", tick_s, self.outbox.publish_due),
            ("sweep", rules.cfg.sweep_interval_s, self._sweep),
        ]
        self._thread = threading.Thread(target=self._run, name="collector-background", daemon=True)

    def add_job(self, name: str, every_s: float, job: Callable[[], object]) -> None:
        self.jobs.append((name, every_s, job))

    def _sweep(self) -> dict[str, int]:
        with self.store.engine.begin() as conn:
            return self.rules.sweep(conn, datetime.now(UTC))

    def _run(self) -> None:
        due = {name: 0.0 for name, _, _ in self.jobs}
        while not self.stop_event.is_set():
            now = time.monotonic()
            for name, every, job in list(self.jobs):
                if now < due.get(name, 0.0):
                    continue
                due[name] = now + every
                try:
                    job()
                except Exception:  # one failing job must not stop the others, nor ingest
                    log.exception("background job %s failed", name)
            self.stop_event.wait(self.tick_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(10)
