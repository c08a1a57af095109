"""Idle → resume state machine on a simulated clock and injected counters (weeks in milliseconds)."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import IdleConfig
from agent.idle import Boot, IdleEvent, IdleTracker
from agent.traffic import Counters

DAY = 86400.0
T0 = 1_800_000_000.0  # the tracker knows no calendar: any epoch will do


class Sim:
    """A gateway: a wall clock, a boot, and WAN/LAN byte counters that traffic makes grow."""

    def __init__(self) -> None:
        self.t = T0
        self.boot = Boot("boot-1", T0 - 100)
        self.rx = self.tx = self.lan = 0
        self.synced: bool | None = True
        self.n_boots = 1

    def tracker(self, path: Path | None = None, **cfg: float) -> IdleTracker:
        settings = IdleConfig(**{"period_s": 3 * DAY, "min_power_off_s": 300, **cfg})
        return IdleTracker(settings, path, clock=lambda: self.t, boot=lambda: self.boot,
                           clock_synced=lambda: self.synced)

    def counters(self) -> Counters:
        return Counters(self.rx, self.tx, self.lan)

    def run(self, tracker: IdleTracker, seconds: float, wan_kbps: float = 0.0, lan_kbps: float = 0.0,
            step: float = 60.0, own: bool = False, on_event: bool = True) -> list[IdleEvent]:
        """Advance time in `step`s with traffic at the given rates, observing every step."""
        events: list[IdleEvent] = []
        end = self.t + seconds
        while self.t < end - 1e-6:
            self.t += step
            self.rx += int(wan_kbps * 1000 / 8 * step * 0.8)
            self.tx += int(wan_kbps * 1000 / 8 * step * 0.2)
            self.lan += int(lan_kbps * 1000 / 8 * step)
            got = tracker.observe(self.counters(), own_traffic=own)
            if on_event:
                for e in got:  # the daemon spools the check, then tells the tracker
                    tracker.note_check(e.kind)
            events.extend(got)
        return events

    def power_off(self, seconds: float) -> None:
        self.t += seconds
        self.n_boots += 1
        self.boot = Boot(f"boot-{self.n_boots}", self.t)
        self.rx = self.tx = self.lan = 0


def resumes(events: list[IdleEvent]) -> list[IdleEvent]:
    return [e for e in events if e.kind == "resume"]


def test_quiet_days_then_traffic_gives_exactly_one_resume() -> None:
    sim = Sim()
    tr = sim.tracker()
    assert sim.run(tr, 600, wan_kbps=5000) == []  # a busy afternoon
    quiet = sim.run(tr, 4 * DAY, wan_kbps=20, step=300)  # background chatter under the threshold
    assert resumes(quiet) == []
    assert tr.idle
    back = sim.run(tr, 2 * DAY, wan_kbps=3000, step=300)  # the office is back, and stays busy
    assert len(resumes(back)) == 1
    idle_s = resumes(back)[0].idle_s
    assert 4 * DAY <= idle_s <= 4 * DAY + 600  # quiet since the busy afternoon, to a sample or two
    assert not tr.idle


def test_reboot_after_gap_with_persisted_state(tmp_path: Path) -> None:
    sim = Sim()
    state = tmp_path / "idle-state.json"
    tr = sim.tracker(state)
    sim.run(tr, 3600, wan_kbps=5000)
    sim.power_off(10 * DAY)
    sim.t += 40
    tr = sim.tracker(state)  # the agent process starts on the new boot
    first = tr.observe(sim.counters())
    assert [e.kind for e in first] == ["resume"]
    assert 10 * DAY <= first[0].idle_s <= 10 * DAY + 3700
    tr.note_check("resume")
    later = sim.run(tr, 2 * DAY, wan_kbps=3000, step=600)  # the office works: no second resume
    assert resumes(later) == []
    assert json.loads(state.read_text())["resumes"] == 1


def test_busy_office_never_resumes_falsely() -> None:
    sim = Sim()
    tr = sim.tracker()
    events: list[IdleEvent] = []
    for week in range(3):
        for day in range(7):
            if day < 5:  # office hours busy, nights and the weekend quiet (62 h < 3 days)
                events += sim.run(tr, 10 * 3600, wan_kbps=4000, step=300)
                events += sim.run(tr, 14 * 3600, wan_kbps=30, step=300)
            else:
                events += sim.run(tr, DAY, wan_kbps=30, step=300)
        assert not tr.idle, f"week {week}"
    assert events == []


def test_lan_traffic_alone_keeps_the_office_active() -> None:
    sim = Sim()
    tr = sim.tracker()
    events = sim.run(tr, 5 * DAY, wan_kbps=10, lan_kbps=2000, step=600)  # a local file server in use
    assert events == [] and not tr.idle


def test_agent_own_checks_are_not_office_activity() -> None:
    sim = Sim()
    tr = sim.tracker(watchdog_interval_s=DAY)
    events: list[IdleEvent] = []
    for _ in range(5 * 24):  # hourly scheduled checks that move 500 Mbit/s for a minute
        events += sim.run(tr, 60, wan_kbps=500_000, own=True)
        events += sim.run(tr, 3540, wan_kbps=10, step=590)
    assert resumes(events) == []
    assert tr.idle
    assert len(resumes(sim.run(tr, 600, wan_kbps=3000))) == 1


def test_watchdog_runs_daily_while_idle_only() -> None:
    sim = Sim()
    tr = sim.tracker(watchdog_interval_s=DAY)
    events = sim.run(tr, 10 * DAY, wan_kbps=5, step=600)
    dogs = [e for e in events if e.kind == "watchdog"]
    # Idle from day 3 on; a watchdog then and every 24 h: days 3, 4, ... 9 (7 in all, day 10 is the end).
    assert len(dogs) in (7, 8)
    assert all(e.idle_s >= 3 * DAY for e in dogs)
    assert resumes(events) == []
    assert [e.kind for e in sim.run(tr, 600, wan_kbps=3000)] == ["resume"]
    assert [e for e in sim.run(tr, 3 * DAY - 3600, wan_kbps=5, step=600)] == []  # not idle yet again


def test_short_reboot_in_an_empty_office_does_not_resume() -> None:
    sim = Sim()
    tr = sim.tracker()
    sim.run(tr, 5 * DAY, wan_kbps=5, step=600)
    assert tr.idle
    sim.power_off(90)  # the CPE's nightly reboot: off for 90 s
    sim.t += 30
    assert resumes(sim.run(tr, 3600, wan_kbps=5, step=600)) == []
    assert tr.idle
    got = resumes(sim.run(tr, 600, wan_kbps=3000))
    assert len(got) == 1 and got[0].idle_s > 5 * DAY


def test_agent_down_while_office_busy_is_no_resume(tmp_path: Path) -> None:
    state = tmp_path / "idle-state.json"
    sim = Sim()
    tr = sim.tracker(state)
    sim.run(tr, 3600, wan_kbps=5000)
    # The agent is stopped for 5 days on the same boot; the counters keep counting the busy office.
    sim.t += 5 * DAY
    sim.rx += int(3000 * 1000 / 8 * 5 * DAY)
    tr = sim.tracker(state)
    assert tr.observe(sim.counters()) == []
    assert not tr.idle


def test_agent_down_while_office_empty_then_traffic_resumes_once(tmp_path: Path) -> None:
    state = tmp_path / "idle-state.json"
    sim = Sim()
    tr = sim.tracker(state)
    sim.run(tr, 3600, wan_kbps=5000)
    sim.t += 5 * DAY  # agent stopped, gateway on, nobody there
    sim.rx += int(10 * 1000 / 8 * 5 * DAY)
    tr = sim.tracker(state)
    # A quiet gap on the same boot is no sign of return: no resume, but idle (and so a watchdog).
    assert [e.kind for e in tr.observe(sim.counters())] == ["watchdog"]
    assert tr.idle
    assert len(resumes(sim.run(tr, 1200, wan_kbps=3000))) == 1


def test_pending_resume_survives_a_crash_and_runs_once(tmp_path: Path) -> None:
    state = tmp_path / "idle-state.json"
    sim = Sim()
    tr = sim.tracker(state)
    sim.run(tr, 4 * DAY, wan_kbps=5, step=3600)
    got = sim.run(tr, 60, wan_kbps=3000, on_event=False)  # resume announced ... and the agent dies
    assert resumes(got) and json.loads(state.read_text())["pending_resume_idle_s"] is not None
    tr = sim.tracker(state)  # restart
    again = sim.run(tr, 600, wan_kbps=3000, on_event=False)
    assert len(resumes(again)) == 1  # announced again once, not on every sample
    tr.note_check("resume")
    assert resumes(sim.run(tr, DAY, wan_kbps=3000, step=600)) == []
    tr = sim.tracker(state)
    assert resumes(sim.run(tr, 600, wan_kbps=3000)) == []


def test_unsynced_clock_behind_the_saved_state_waits(tmp_path: Path) -> None:
    state = tmp_path / "idle-state.json"
    sim = Sim()
    tr = sim.tracker(state)
    sim.run(tr, 3600, wan_kbps=5000)
    saved = json.loads(state.read_text())
    sim.power_off(4 * DAY)
    real_now = sim.t
    sim.t = 1_000_000_000.0  # no RTC: the gateway boots in 2001 until NTP syncs
    sim.synced = False
    tr = sim.tracker(state)
    assert sim.run(tr, 300, step=60) == []
    assert json.loads(state.read_text())["last_seen"] == saved["last_seen"]
    sim.t, sim.synced = real_now + 300, True
    assert [e.kind for e in tr.observe(sim.counters())] == ["resume"]


def test_unreadable_state_starts_fresh(tmp_path: Path) -> None:
    state = tmp_path / "idle-state.json"
    state.write_text("{not json")
    sim = Sim()
    tr = sim.tracker(state)
    assert tr.observe(sim.counters()) == []
    assert json.loads(state.read_text())["version"] == 1
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary behind


def test_disabled_tracker_does_nothing() -> None:
    sim = Sim()
    tr = sim.tracker(enabled=False)
    assert sim.run(tr, 5 * DAY, step=3600) == [] and not tr.idle
