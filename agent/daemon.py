"""`linecheck-agent run`: scheduled checks into the spool, the publisher draining it."""

from __future__ import annotations

import logging
import random
import signal
import threading

from agent.config import AgentConfig
from agent.publisher import Publisher
from agent.runner import run_line_check
from agent.spool import PayloadTooLarge, Spool
from linecheck.wire import Command, Trigger

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(cfg.data_dir / "spool.sqlite", cfg.mqtt.max_payload_bytes)
        self.publisher = Publisher(cfg, self.spool, on_command=self._on_command)
        self.stop_event = threading.Event()
        self._check_lock = threading.Lock()

    def check_and_spool(self, trigger: Trigger, **kwargs: object) -> None:
        with self._check_lock:  # never two line checks at once: they would measure each other
            envelope = run_line_check(self.cfg, trigger, **kwargs)  # type: ignore[arg-type]
            try:
                stored = self.spool.enqueue(envelope)
            except PayloadTooLarge as exc:
                log.error("%s", exc)
                return
        log.info("result %s seq=%d verdict=%s spooled", stored.result_id, stored.seq, stored.verdict)
        self.publisher.wake.set()

    def _on_command(self, command: Command) -> None:
        log.info("received command %s (%s); handled by the scheduler issue", command.command_id, command.action)

    def _schedule(self) -> None:
        delay = self.cfg.schedule.first_delay_s + random.uniform(0, self.cfg.schedule.jitter_s)
        while not self.stop_event.wait(delay):
            try:
                self.check_and_spool(Trigger.SCHEDULE)
            except Exception:  # one bad run must not stop the schedule
                log.exception("scheduled check failed")
            delay = self.cfg.schedule.interval_s + random.uniform(0, self.cfg.schedule.jitter_s)

    def run(self) -> None:
        self.publisher.start()
        scheduler = threading.Thread(target=self._schedule, name="scheduler", daemon=True)
        scheduler.start()
        try:
            self.publisher.run(self.stop_event)
        finally:
            self.publisher.stop()
            self.spool.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.publisher.wake.set()


def serve(cfg: AgentConfig) -> None:
    agent = Agent(cfg)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    agent.run()
