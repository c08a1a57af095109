"""`linecheck-agent run`: idle tracking, scheduled and remote checks into the spool, the publisher draining it.

Threads: the publisher's loop (main thread), paho's network thread, the scheduler loop below
(traffic samples → idle tracker → resume/watchdog checks; scheduled checks) and the remote
command worker. Every line check, whoever asks for it, goes through `check_and_spool`, which
holds the cross-process check lock, so checks never overlap and the idle tracker can tell the
agent's own traffic from the office's. The checks themselves run in a child process
(agent/checkproc.py), so the daemon stays small between checks.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from agent import checklock
from agent import clock as agent_clock
from agent.checkproc import run_in_child
from agent.commands import CommandInbox
from agent.config import AgentConfig
from agent.heartbeat import DailyBudget, Heartbeat, line_probe
from agent.idle import IdleTracker
from agent.outagelog import OUTAGE_LOG, OutageLog
from agent.publisher import Publisher
from agent.scheduler import CrossTrafficGate, Scheduler
from agent.spool import SpoolRefused, open_spool
from agent.statefile import private_dir
from agent.traffic import Rates, TrafficMonitor
from linecheck.wire import ResultEnvelope, Trigger, commands_topic

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        private_dir(cfg.data_dir)  # results, line details, command history: the agent's user only
        self.spool = open_spool(cfg)  # a damaged spool is salvaged here, never a reason to exit
        self.publisher = Publisher(cfg, self.spool)
        self.stop_event = threading.Event()
        self.lock_path = cfg.data_dir / "check.lock"
        self.monitor = TrafficMonitor(cfg.line.wan_interface, cfg.line.lan_interfaces)
        self.tracker = IdleTracker(cfg.idle, cfg.data_dir / "idle-state.json",
                                   clock_synced=lambda: agent_clock.state().synced)
        self.scheduler = Scheduler(cfg.schedule, cfg.data_dir / "schedule-state.json")
        self.gate = CrossTrafficGate(cfg.schedule.gate, self._measure_between_checks, self.stop_event.wait)
        self.commands = CommandInbox(cfg.commands, cfg.agent_id, list(cfg.checks),
                                     cfg.data_dir / "commands-seen.json", self._run_command)
        self.outages = OutageLog(cfg.data_dir / OUTAGE_LOG)
        self.heartbeat_budget = DailyBudget(cfg.heartbeat.daily_bytes_max, self.outages.rested)
        if cfg.commands.enabled:
            # A per-topic callback: the command topic never reaches the publisher's on_message.
            self.publisher.client.message_callback_add(commands_topic(cfg.agent_id), self.commands.on_message)

    # --- every check goes through here -------------------------------------------------------------
    def check_and_spool(self, trigger: Trigger, *, only: list[str] | None = None,
                        trigger_info: dict[str, Any] | None = None) -> ResultEnvelope | None:
        """Plan (data budget, cross-traffic gate), run under the check lock, spool. None if not spooled."""
        plan = self.scheduler.plan(trigger, list(self.cfg.checks), only, self.gate)
        with checklock.holding(self.lock_path):
            # In a child process: what a check imports and allocates leaves with it (agent/checkproc.py).
            envelope = run_in_child(self.cfg, trigger, only=plan.only, skip=plan.skip,
                                    trigger_info={**(trigger_info or {}), **plan.trigger_info})
        try:
            stored = self.spool.enqueue(envelope)
        except SpoolRefused as exc:  # too large, or no disk left: counted, reported
            log.error("%s", exc)
            return None
        self.scheduler.record(stored)
        self._outages_reported(stored)
        self.tracker.note_check("resume" if trigger is Trigger.RESUME_AFTER_IDLE else None)
        log.info("result %s seq=%d trigger=%s verdict=%s spooled", stored.result_id, stored.seq,
                 stored.trigger, stored.verdict)
        self.publisher.wake.set()
        return stored

    def _outages_reported(self, stored: ResultEnvelope) -> None:
        """The result is in the spool: the outages it carries need not be carried again."""
        if not any(c.kind == "heartbeat" for c in stored.checks):
            return
        ends = [c.metrics.get("ended_unix_s") for c in stored.checks if c.kind == "outage"]
        self.outages.mark_reported(max((float(e) for e in ends if isinstance(e, int | float)), default=None))

    def _measure_between_checks(self, window_s: float) -> Rates | None:
        # The gate samples under the check lock so it never measures one of our own checks.
        with checklock.holding(self.lock_path):
            return self.monitor.measure(window_s, self.stop_event.wait)

    def _run_command(self, trigger: Trigger, checks: list[str] | None, info: dict[str, Any]) -> None:
        self.check_and_spool(trigger, only=checks, trigger_info=info)

    # --- the scheduler loop ------------------------------------------------------------------------
    def _schedule(self) -> None:
        idle = self.cfg.idle
        next_sample = time.monotonic()
        next_run = self.scheduler.first_run(time.time())
        last_sample_wall = time.time()
        resume: tuple[float, float] | None = None  # (monotonic time to run it, idle_s)
        watchdog_due = False
        while not self.stop_event.is_set():
            try:
                if time.monotonic() >= next_sample:
                    own = checklock.busy_since(self.lock_path, last_sample_wall)
                    last_sample_wall = time.time()
                    for event in self.tracker.observe(self.monitor.read(), own_traffic=own):
                        if event.kind == "resume" and resume is None:
                            resume = (time.monotonic() + idle.resume_delay_s, event.idle_s)
                        elif event.kind == "watchdog":
                            watchdog_due = True
                    next_sample = time.monotonic() + idle.sample_s
                if resume is not None and time.monotonic() >= resume[0]:
                    idle_s = resume[1]
                    resume = None
                    if self.check_and_spool(Trigger.RESUME_AFTER_IDLE, trigger_info={"idle_s": idle_s}) is None:
                        self.tracker.release_resume()
                elif watchdog_due and resume is None:
                    watchdog_due = False
                    kinds = [k for k in idle.watchdog_checks if k in self.cfg.checks] or \
                        [k for k in self.cfg.checks if k not in self.cfg.schedule.throughput_kinds]
                    self.check_and_spool(Trigger.IDLE_WATCHDOG, only=kinds,
                                         trigger_info={"idle_s": round(self.tracker.quiet_s(), 1)})
                elif time.time() >= next_run:
                    if idle.pause_schedule and self.tracker.idle:
                        log.info("office idle: scheduled check skipped (the idle watchdog runs instead)")
                    else:
                        self.check_and_spool(Trigger.SCHEDULE)
                    next_run = self.scheduler.next_run(time.time())
            except Exception:  # one bad run must not stop the schedule
                log.exception("scheduled work failed")
                next_run = self.scheduler.next_run(time.time())
            waits = [next_sample - time.monotonic(), next_run - time.time()]
            if resume is not None:
                waits.append(resume[0] - time.monotonic())
            if watchdog_due:
                waits.append(0.0)
            self.stop_event.wait(max(0.0, min(waits)))

    # --- lifecycle ---------------------------------------------------------------------------------
    def _record_room_test(self, envelope: ResultEnvelope) -> ResultEnvelope:
        """A LAN/WiFi room test from the LAN server (agent/lan): spool it and wake the publisher."""
        stored = self.spool.enqueue(envelope)
        self.publisher.wake.set()
        return stored

    def run(self) -> None:
        lan = None
        if self.cfg.lan_test.enabled:
            from agent.lan.service import LanServiceError, build

            try:
                lan = build(self.cfg, self._record_room_test).start()
                log.info("LAN speed test served on %s/", lan.url)
            except LanServiceError as exc:  # the line checks still run without it
                log.error("%s", exc)
        self.publisher.start()
        if self.cfg.commands.enabled:
            self.commands.start()
        scheduler = threading.Thread(target=self._schedule, name="scheduler", daemon=True)
        scheduler.start()
        # Faults that come and go between checks (agent/heartbeat.py). It probes the carrier's equipment
        # only (the next hop, the test server), so it needs to know the line's test server.
        if self.cfg.heartbeat.enabled and not self.cfg.line.test_server:
            log.info("heartbeat off: set line.test_server to watch the line between checks")
        elif self.cfg.heartbeat.enabled:
            self.outages.ensure()
            probe = line_probe(self.cfg.line.wan_interface, self.cfg.line.test_server, self.cfg.heartbeat)
            Heartbeat(self.cfg.heartbeat, probe, self.outages.add, self.heartbeat_budget.spend,
                      self.stop_event).start()
        try:
            self.publisher.run(self.stop_event)
        finally:
            if lan is not None:
                lan.stop()
            self.commands.stop()
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
