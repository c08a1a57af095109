"""When scheduled checks run, and what a run may include (politeness on the line).

- **Randomised times**: each run comes `interval_s` plus a uniform random `0..jitter_s` after the
  previous one, so a fleet started together never measures in lockstep; with `windows` a run
  that would fall outside every window moves to a random moment early in the next window.
- **Throughput is data-heavy**: the kinds in `throughput_kinds` run in a scheduled check at most
  once per `throughput_interval_s`, and automatic runs stop once the local day's data budget
  would be exceeded (recorded as `skipped` with the reason, so the gap is visible).
- **Cross-traffic gate**: before an automatic throughput test the WAN rate is measured; while
  the office uses the line the test waits (`retry_s`), and after `max_wait_s` it is skipped with
  the reason. Manual, remote and retest checks bypass the gate (someone asked for them); the
  throughput check itself accounts for the cross-traffic then.
- **A busy test server is retried later, with backoff**: a scheduled throughput test the server refused
  ("server busy": it is at its limit of tests) measured nothing, so it does not count as the day's
  test. The next try is due after `interval_s`, then 2×, 4×, ... (at most `throughput_interval_s`),
  so a fleet facing a full server backs off instead of knocking every hour (issue 22).
- **The budget binds remote requests too**: a remote (check now) or retest throughput test is
  skipped with the budget's reason once the day's budget would be exceeded: a carrier's button
  must not spend the customer's data beyond what was agreed. Only a manual run (someone at the
  gateway's own command line) may go over it. Every throughput test, whoever asked, is counted.

All state (`schedule-state.json`: last run, last throughput test, today's bytes) is persisted so
a restart neither repeats a throughput test nor forgets the day's spending.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.config import GateConfig, ScheduleConfig
from agent.reasons import because, step
from agent.statefile import load_json, save_json
from agent.traffic import Rates
from linecheck.i18n.phrases import Phrase
from linecheck.wire import CheckResult, ResultEnvelope, Status, Trigger

log = logging.getLogger(__name__)

_WINDOW_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
ON_DEMAND = frozenset({Trigger.MANUAL, Trigger.REMOTE, Trigger.RETEST})  # bypass the gate and interval
REMOTE = frozenset({Trigger.REMOTE, Trigger.RETEST})  # asked from afar: still within the data budget
# Names a throughput check may use for the data it moved (the first present wins).
_TOTAL_BYTES = ("bytes_total", "total_bytes", "data_used_bytes", "bytes_used", "used_bytes")
BUSY_REASON = "throughput_busy"  # the throughput check's reason when every server it tried was busy
_PART_BYTES = (("bytes_down_bytes", "bytes_up_bytes"), ("down_bytes", "up_bytes"), ("bytes_down", "bytes_up"))


def parse_window(text: str) -> tuple[int, int]:
    """'HH:MM-HH:MM' (local time; may wrap midnight; 24:00 allowed as an end) → (start, end) minutes."""
    m = _WINDOW_RE.match(text)
    if not m:
        raise ValueError(f"window {text!r}: expected 'HH:MM-HH:MM', e.g. '08:00-20:00' or '22:00-06:00'")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"window {text!r}: hours 00-23 (24:00 only as an end), minutes 00-59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"window {text!r}: start and end are equal (leave windows empty for any time)")
    return start, end


def window_spans(windows: list[str], around: float) -> list[tuple[float, float]]:
    """The windows' occurrences (epoch seconds) from the day before `around` to two days after."""
    day0 = datetime.fromtimestamp(around).replace(hour=0, minute=0, second=0, microsecond=0)
    spans = []
    for offset in (-1, 0, 1, 2):
        day = day0 + timedelta(days=offset)
        for w in windows:
            start, end = parse_window(w)
            s = day + timedelta(minutes=start)
            e = day + timedelta(minutes=end if end > start else end + 24 * 60)
            spans.append((s.timestamp(), e.timestamp()))
    return sorted(spans)


def bytes_used(check: CheckResult) -> int | None:
    """Data a throughput check moved, from its metrics; None when it does not say."""
    m = check.metrics
    for name in _TOTAL_BYTES:
        if isinstance(m.get(name), int | float):
            return int(m[name])  # type: ignore[arg-type]
    for down, up in _PART_BYTES:
        parts = [m.get(down), m.get(up)]
        if any(isinstance(p, int | float) for p in parts):
            return int(sum(p for p in parts if isinstance(p, int | float)))
    return None


def refused_busy(check: CheckResult) -> bool:
    """A throughput check the test server refused because it was at its limit (it measured nothing)."""
    return check.status is Status.ERROR and bool(check.reason_parts) and check.reason_parts[0].key == BUSY_REASON


@dataclass
class Plan:
    """What one line check may run: `only` these kinds (None = all), `skip` these with a reason."""

    only: list[str] | None = None
    skip: dict[str, Phrase] = field(default_factory=dict)
    trigger_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateOutcome:
    passed: bool
    reason: Phrase | None
    waited_s: float
    wan_kbps: float | None


class CrossTrafficGate:
    """Waits for the office's own WAN traffic to calm down before a throughput test."""

    def __init__(self, cfg: GateConfig, measure: Callable[[float], Rates | None],
                 wait: Callable[[float], bool], monotonic: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self._measure = measure  # window_s -> rates over that window
        self._wait = wait  # seconds -> True when the agent is stopping
        self._monotonic = monotonic

    def wait_for_quiet(self, progress: Callable[[Phrase], None] = lambda _step: None) -> GateOutcome:
        start = self._monotonic()
        while True:
            r = self._measure(self.cfg.sample_s)
            waited = round(self._monotonic() - start, 1)
            if r is None:  # cannot read the counters: do not block the test on a broken gauge
                return GateOutcome(True, because("gate_unreadable"), waited, None)
            kbps = round(r.wan_kbps, 1)
            if kbps < self.cfg.threshold_kbps:
                return GateOutcome(True, None, waited, kbps)
            if waited + self.cfg.retry_s > self.cfg.max_wait_s:
                return GateOutcome(False, because("gate_gave_up", threshold_kbps=self.cfg.threshold_kbps,
                                                  waited_s=waited, last_kbps=kbps), waited, kbps)
            progress(step("gate_waiting", wan_kbps=kbps))
            log.info("throughput deferred: %.0f kbit/s of other WAN traffic; retry in %g s", kbps, self.cfg.retry_s)
            if self._wait(self.cfg.retry_s):
                return GateOutcome(False, because("gate_stopping"), waited, kbps)


class Scheduler:
    def __init__(self, cfg: ScheduleConfig, path: Path | None, *, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.path = path
        self.rng = rng or random.Random()
        self._clock = clock
        self.state: dict[str, Any] = load_json(path) if path else {}
        self._lock = threading.Lock()

    # --- when --------------------------------------------------------------------------------
    def first_run(self, started: float) -> float:
        """After start-up: the quiet period, but never sooner than one interval after the last run."""
        earliest = started + self.cfg.first_delay_s
        last = self.state.get("last_run")
        if isinstance(last, int | float) and last <= started:
            earliest = max(earliest, last + self.cfg.interval_s)
        return self._fit(earliest + self.rng.uniform(0, self.cfg.jitter_s))

    def next_run(self, after: float) -> float:
        return self._fit(after + self.cfg.interval_s + self.rng.uniform(0, self.cfg.jitter_s))

    def _fit(self, candidate: float) -> float:
        if not self.cfg.windows:
            return candidate
        spans = window_spans(self.cfg.windows, candidate)
        if any(s <= candidate < e for s, e in spans):
            return candidate
        s, e = min((s, e) for s, e in spans if s > candidate)
        return s + self.rng.uniform(0, min(e - s, self.cfg.interval_s))

    # --- what ----------------------------------------------------------------------------------
    def plan(self, trigger: Trigger, configured: list[str], only: list[str] | None = None,
             gate: CrossTrafficGate | None = None, progress: Callable[[Phrase], None] = lambda _step: None) -> Plan:
        kinds = [k for k in configured if only is None or k in only]
        heavy = [k for k in self.cfg.throughput_kinds if k in kinds]
        plan = Plan(only=only)
        if heavy and trigger in REMOTE:
            over = self.budget_exceeded(self._clock())
            if over:
                plan.skip = dict.fromkeys(heavy, over)
            return plan
        if not heavy or trigger in ON_DEMAND:
            return plan
        now = self._clock()
        if trigger is Trigger.SCHEDULE:
            last = self.state.get("last_throughput")
            if isinstance(last, int | float) and now - last < self.cfg.throughput_interval_s:
                plan.only = [k for k in kinds if k not in heavy]  # not due: not part of this run
                return plan
        over = self.budget_exceeded(now)
        if over:
            plan.skip = dict.fromkeys(heavy, over)
            return plan
        if gate is not None and self.cfg.gate.enabled:
            outcome = gate.wait_for_quiet(progress)
            plan.trigger_info["gate_waited_s"] = outcome.waited_s
            if outcome.wan_kbps is not None:
                plan.trigger_info["gate_wan_kbps"] = outcome.wan_kbps
            if not outcome.passed:
                plan.skip = dict.fromkeys(heavy, outcome.reason or because("gate_closed"))
        return plan

    def budget_exceeded(self, now: float) -> Phrase | None:
        """A reason when the day's data budget does not allow another throughput test."""
        budget = self.cfg.daily_data_budget_mb
        if budget is None:
            return None
        used = self._used_today(now) / 1e6
        estimate = float(self.state.get("last_throughput_bytes") or 0) / 1e6
        if used >= budget or used + estimate > budget:
            return because("budget_used_up", used_mb=round(used), budget_mb=budget, estimate_mb=round(estimate))
        return None

    # --- bookkeeping --------------------------------------------------------------------------
    def record(self, envelope: ResultEnvelope) -> None:
        """A line check finished: count the data its throughput tests moved, remember the times."""
        with self._lock:  # scheduled and remote checks finish on different threads
            self._record(envelope)

    def _record(self, envelope: ResultEnvelope) -> None:
        now = self._clock()
        if envelope.trigger is Trigger.SCHEDULE:
            self.state["last_run"] = now
        moved = 0
        ran_heavy = False
        busy = False
        for check in envelope.checks:
            if check.kind not in self.cfg.throughput_kinds or check.status is Status.SKIPPED:
                continue
            ran_heavy = True
            busy = busy or refused_busy(check)
            used = bytes_used(check)
            if used is not None:
                moved += used
        if ran_heavy:
            if envelope.trigger not in ON_DEMAND:
                self.state["last_throughput"] = now
                streak = int(self.state.get("busy_streak") or 0) + 1 if busy else 0
                self.state["busy_streak"] = streak
                if busy:  # due again after interval_s * 2^(streak-1), not after a whole throughput interval
                    wait = min(self.cfg.throughput_interval_s, self.cfg.interval_s * 2 ** min(streak - 1, 20))
                    self.state["last_throughput"] = now - self.cfg.throughput_interval_s + wait
            if moved:
                self.state["last_throughput_bytes"] = moved
                today = self._day(now)
                if self.state.get("day") != today:
                    self.state["day"], self.state["day_bytes"] = today, 0
                self.state["day_bytes"] = int(self.state.get("day_bytes", 0)) + moved
        self._save()

    def _used_today(self, now: float) -> int:
        return int(self.state.get("day_bytes", 0)) if self.state.get("day") == self._day(now) else 0

    @staticmethod
    def _day(now: float) -> str:
        return datetime.fromtimestamp(now).date().isoformat()  # the customer's day: local time

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            save_json(self.path, self.state)
        except OSError as exc:
            log.warning("cannot save schedule state %s: %s", self.path, exc)
