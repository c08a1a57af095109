"""Long idle → resume: notice that the office stood empty, and check the line when it comes back.

A state machine fed with byte counters (agent/traffic.py) on a clock; both are injected, so tests
run through weeks of simulated time in milliseconds.

- *Active*: a sample interval whose average WAN (or LAN) rate reaches its threshold. The agent's
  own checks are not the office: intervals overlapping one are ignored (`own_traffic=True`).
- *Idle*: no activity for `period_s`. Time the gateway was powered off counts as quiet (nothing
  can pass a switched-off gateway). While idle a light *watchdog* check runs every
  `watchdog_interval_s`, so a line that dies in an empty office is known before anyone returns.
- *Resume*: the first activity after an idle period, or the gateway booting after at least
  `min_power_off_s` off at the end of an idle period (somebody switched it back on). Exactly one
  resume check follows, with the quiet duration as `idle_s`; it stays pending in the state file
  until the check is spooled, so a crash in between does not lose it and a restart does not
  repeat it.

Reboots are told apart by the kernel's boot id, not by the boot time: the boot time moves when
NTP steps the clock, which gateways without a battery-backed clock do at every start. A wall
clock that is behind the saved stamps while not yet synchronised means "not synced yet": the
tracker waits rather than judging a gap it cannot measure.

State (`idle-state.json` in data_dir) is written atomically, on every event and at most every
`PERSIST_EVERY_S` otherwise (flash storage on gateways wears out under per-minute writes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from agent.config import IdleConfig
from agent.statefile import load_json, save_json
from agent.traffic import Counters, Rates, rates

log = logging.getLogger(__name__)

STATE_VERSION = 1
PERSIST_EVERY_S = 300.0
CLOCK_SLACK_S = 120.0  # the wall clock may wobble this much backwards without being "wrong"


@dataclass(frozen=True)
class Boot:
    boot_id: str
    boot_time: float  # wall-clock seconds


def current_boot() -> Boot:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: fall back to the boot time, rounded against NTP wobble
        boot_id = f"btime-{round(psutil.boot_time() / 60)}"
    return Boot(boot_id, psutil.boot_time())


@dataclass(frozen=True)
class IdleEvent:
    kind: Literal["resume", "watchdog"]
    idle_s: float  # quiet time before the event (for resume: the idle duration reported)


class IdleTracker:
    def __init__(self, cfg: IdleConfig, path: Path | None, *,
                 clock: Callable[[], float] = time.time,
                 boot: Callable[[], Boot] = current_boot,
                 clock_synced: Callable[[], bool | None] = lambda: None):
        self.cfg = cfg
        self.path = path
        self._clock = clock
        self._boot = boot
        self._clock_synced = clock_synced
        self._saved_at = float("-inf")
        self._handed_out_resume = False  # the pending resume is re-announced once per process
        self._lock = threading.Lock()
        self.state: dict[str, Any] = load_json(path) if path else {}
        if self.state.get("version") != STATE_VERSION:
            self.state = {}

    # --- what the daemon asks ------------------------------------------------------------------
    def quiet_s(self) -> float:
        st = self.state
        return max(0.0, self._clock() - st["last_active"]) if "last_active" in st else 0.0

    @property
    def idle(self) -> bool:
        """Idle now (and no resume waiting to be checked)."""
        return self.cfg.enabled and "last_active" in self.state and self.quiet_s() >= self.cfg.period_s \
            and self.state.get("pending_resume_idle_s") is None

    def snapshot(self) -> dict[str, Any]:
        return dict(self.state)

    # --- feeding it ----------------------------------------------------------------------------
    def observe(self, counters: Counters | None, own_traffic: bool = False) -> list[IdleEvent]:
        """One sample of the counters. Returns the checks to run now (resume and/or watchdog)."""
        with self._lock:  # the scheduler thread observes while a command's check may call note_check
            return self._observe(counters, own_traffic)

    def _observe(self, counters: Counters | None, own_traffic: bool) -> list[IdleEvent]:
        if not self.cfg.enabled:
            return []
        now = self._clock()
        boot = self._boot()
        st = self.state
        if "last_seen" not in st:  # first start ever: no history, so nothing to resume from
            self._rebase(now, boot, counters, active=True)
            self._save(now, force=True)
            return []
        if now < st["last_seen"] - CLOCK_SLACK_S:
            if not self._clock_synced():
                log.info("wall clock is behind the saved state and not synchronised: waiting for NTP")
                return []
            log.warning("wall clock went back %.0f s while synchronised: restarting the idle count",
                        st["last_seen"] - now)
            self._rebase(now, boot, counters, active=True)
            self._save(now, force=True)
            return []

        events: list[IdleEvent] = []
        changed = False
        quiet_before = max(0.0, now - st["last_active"])
        if boot.boot_id != st.get("boot_id"):
            changed = True
            off_s = max(0.0, boot.boot_time - st["last_seen"])
            log.info("gateway rebooted; off for about %.0f s, quiet for %.0f s", off_s, quiet_before)
            if quiet_before >= self.cfg.period_s and off_s >= self.cfg.min_power_off_s:
                events.append(self._resume(now, quiet_before))
            elif counters is not None and not own_traffic:
                # Counters restarted with this boot: judge the time since boot as one interval.
                zero = Counters(0, 0, 0 if counters.lan_bytes is not None else None)
                since_boot = rates(zero, counters, now - boot.boot_time)
                if since_boot is not None and self._active(since_boot):
                    events.extend(self._activity(now, quiet_known=boot.boot_time - st["last_active"]))
            st["boot_id"], st["boot_time"] = boot.boot_id, boot.boot_time
        else:
            prev = _counters_from(st.get("counters"))
            r = rates(prev, counters, now - st["last_seen"]) if prev and counters else None
            if r is not None:
                log.debug("traffic sample: wan %.1f kbit/s, lan %s kbit/s over %.0f s: %s", r.wan_kbps,
                          "-" if r.lan_kbps is None else f"{r.lan_kbps:.1f}", r.seconds,
                          "own check" if own_traffic else "active" if self._active(r) else "quiet")
            if r is not None and not own_traffic and self._active(r):
                # Only the quiet seen up to the previous sample counts: after a long gap (agent
                # stopped) the activity may have been anywhere in it, so the gap proves nothing.
                events.extend(self._activity(now, quiet_known=st["last_seen"] - st["last_active"]))
                changed = changed or bool(events)
            elif r is None:
                changed = True  # counters reset or unreadable: a new baseline worth saving
        st["last_seen"] = now
        st["counters"] = _counters_to(counters)

        if self._handed_out_resume is False and st.get("pending_resume_idle_s") is not None \
                and not any(e.kind == "resume" for e in events):
            events.append(IdleEvent("resume", float(st["pending_resume_idle_s"])))
        if any(e.kind == "resume" for e in events):
            self._handed_out_resume = True
        elif self.idle and self._watchdog_due(now):
            events.append(IdleEvent("watchdog", self.quiet_s()))
            st["last_watchdog"] = now
            changed = True
        self._save(now, force=changed or bool(events))
        return events

    def note_check(self, kind: str | None = None) -> None:
        """A check was spooled. `kind='resume'` completes the pending resume."""
        with self._lock:
            now = self._clock()
            self.state["last_check"] = now
            if kind == "resume":
                self.state["pending_resume_idle_s"] = None
                self.state["last_resume"] = now
                self._handed_out_resume = False
            self._save(now, force=True)

    def release_resume(self) -> None:
        """The resume check could not be spooled: announce it again on the next observation."""
        self._handed_out_resume = False

    # --- internals -----------------------------------------------------------------------------
    def _active(self, r: Rates) -> bool:
        if r.wan_kbps >= self.cfg.wan_threshold_kbps:
            return True
        return r.lan_kbps is not None and r.lan_kbps >= self.cfg.lan_threshold_kbps

    def _activity(self, now: float, quiet_known: float) -> list[IdleEvent]:
        """Activity seen now; resume if at least `period_s` of quiet had been seen before it."""
        quiet = max(0.0, now - self.state["last_active"])
        self.state["last_active"] = now
        if quiet_known >= self.cfg.period_s and self.state.get("pending_resume_idle_s") is None:
            return [self._resume(now, quiet)]
        return []

    def _resume(self, now: float, idle_s: float) -> IdleEvent:
        log.info("line resumes after %.1f days idle", idle_s / 86400)
        self.state["pending_resume_idle_s"] = round(idle_s, 1)
        self.state["last_active"] = now  # the resume starts a new active period
        self.state["resumes"] = int(self.state.get("resumes", 0)) + 1
        return IdleEvent("resume", round(idle_s, 1))

    def _watchdog_due(self, now: float) -> bool:
        last = max(self.state.get("last_watchdog") or 0.0, self.state.get("last_check") or 0.0)
        return now - last >= self.cfg.watchdog_interval_s

    def _rebase(self, now: float, boot: Boot, counters: Counters | None, active: bool) -> None:
        self.state.update(version=STATE_VERSION, boot_id=boot.boot_id, boot_time=boot.boot_time,
                          last_seen=now, counters=_counters_to(counters))
        if active:
            self.state["last_active"] = now

    def _save(self, now: float, force: bool) -> None:
        if self.path is None or (not force and now - self._saved_at < PERSIST_EVERY_S):
            return
        self.state["version"] = STATE_VERSION
        try:
            save_json(self.path, self.state)
            self._saved_at = now
        except OSError as exc:
            log.warning("cannot save idle state %s: %s", self.path, exc)


def _counters_to(c: Counters | None) -> list[int | None] | None:
    return None if c is None else [c.wan_rx_bytes, c.wan_tx_bytes, c.lan_bytes]


def _counters_from(raw: Any) -> Counters | None:
    if not isinstance(raw, list) or len(raw) != 3:
        return None
    try:
        return Counters(int(raw[0]), int(raw[1]), None if raw[2] is None else int(raw[2]))
    except (TypeError, ValueError):
        return None
