"""Scheduler: randomised times within windows, data budget, cross-traffic gate decisions."""

from __future__ import annotations

import random
import statistics
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import GateConfig, ScheduleConfig
from agent.reasons import english
from agent.scheduler import CrossTrafficGate, Scheduler, bytes_used, parse_window
from agent.traffic import Rates
from linecheck.wire import CheckResult, ResultEnvelope, Status, Trigger, new_result_id, utcnow

KINDS = ["link", "ping", "throughput"]


def sched(tmp_path: Path | None = None, clock: list[float] | None = None, seed: int = 1,
          **cfg: object) -> Scheduler:
    now = clock if clock is not None else [datetime(2026, 3, 2, 10, 0).timestamp()]
    return Scheduler(ScheduleConfig(**cfg), tmp_path / "schedule-state.json" if tmp_path else None,
                     rng=random.Random(seed), clock=lambda: now[0])


def envelope(trigger: Trigger, *checks: CheckResult) -> ResultEnvelope:
    return ResultEnvelope(result_id=new_result_id(), agent_id="gw", seq=1, line_id="l", site_id="s",
                          trigger=trigger, started_at=utcnow(), ended_at=utcnow(), agent_version="t",
                          checks=list(checks))


def tp(status: Status = Status.OK, **metrics: int) -> CheckResult:
    return CheckResult(kind="throughput", status=status, duration_s=10, metrics=metrics)


# --- when --------------------------------------------------------------------------------------------
def test_runs_are_spread_and_never_in_lockstep() -> None:
    start = datetime(2026, 3, 2, 10, 0).timestamp()
    firsts = [sched(seed=s, interval_s=3600, jitter_s=600, first_delay_s=120).first_run(start) for s in range(200)]
    assert min(firsts) >= start + 120 and max(firsts) <= start + 720
    assert len({round(f) for f in firsts}) > 150  # a fleet started together spreads out
    s = sched(interval_s=3600, jitter_s=600)
    gaps = []
    t = start
    for _ in range(500):
        nxt = s.next_run(t)
        gaps.append(nxt - t)
        t = nxt
    assert min(gaps) >= 3600 and max(gaps) <= 4200
    assert 3850 < statistics.fmean(gaps) < 3950  # interval + jitter/2 on average


def test_windows_confine_runs_to_local_hours() -> None:
    s = sched(interval_s=3600, jitter_s=600, windows=["09:00-12:00", "22:00-02:00"])
    t = datetime(2026, 3, 2, 8, 0).timestamp()
    for _ in range(300):
        t = s.next_run(t)
        hm = datetime.fromtimestamp(t).hour * 60 + datetime.fromtimestamp(t).minute
        assert 9 * 60 <= hm < 12 * 60 or hm >= 22 * 60 or hm < 2 * 60, datetime.fromtimestamp(t)


def test_restart_does_not_repeat_a_recent_run(tmp_path: Path) -> None:
    now = [datetime(2026, 3, 2, 10, 0).timestamp()]
    s = sched(tmp_path, clock=now, interval_s=3600, jitter_s=0, first_delay_s=60)
    s.record(envelope(Trigger.SCHEDULE))
    now[0] += 300  # the agent restarts five minutes later
    again = sched(tmp_path, clock=now, interval_s=3600, jitter_s=0, first_delay_s=60)
    assert again.first_run(now[0]) == pytest.approx(now[0] - 300 + 3600)


@pytest.mark.parametrize("bad, expected", [
    ("9:00-12:00", "expected 'HH:MM-HH:MM'"),
    ("09:00-09:00", "start and end are equal"),
    ("25:00-26:00", "hours 00-23"),
    ("08:00-24:30", "hours 00-23"),
])
def test_bad_windows_are_refused_with_the_key_named(bad: str, expected: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ScheduleConfig(windows=[bad])
    assert "windows" in str(exc.value) and expected in str(exc.value)
    assert parse_window("22:00-06:00") == (22 * 60, 6 * 60)


# --- what ----------------------------------------------------------------------------------------------
def test_throughput_runs_once_per_interval_in_scheduled_checks(tmp_path: Path) -> None:
    now = [datetime(2026, 3, 2, 10, 0).timestamp()]
    s = sched(tmp_path, clock=now, throughput_interval_s=86400)
    assert s.plan(Trigger.SCHEDULE, KINDS).only is None  # never ran: due
    s.record(envelope(Trigger.SCHEDULE, tp(down_bytes=300_000_000, up_bytes=100_000_000)))
    now[0] += 3600
    assert s.plan(Trigger.SCHEDULE, KINDS).only == ["link", "ping"]  # not due: left out, not "skipped"
    assert s.plan(Trigger.MANUAL, KINDS).only is None  # someone asked: runs
    assert s.plan(Trigger.RESUME_AFTER_IDLE, KINDS).only is None  # the office is back: full check
    now[0] += 86400
    assert s.plan(Trigger.SCHEDULE, KINDS).only is None


def test_daily_budget_skips_automatic_tests_with_reason(tmp_path: Path) -> None:
    now = [datetime(2026, 3, 2, 10, 0).timestamp()]
    s = sched(tmp_path, clock=now, throughput_interval_s=0, daily_data_budget_mb=1000)
    s.record(envelope(Trigger.SCHEDULE, tp(bytes_total=400_000_000)))
    assert s.plan(Trigger.SCHEDULE, KINDS).skip == {}  # 400 used + ~400 next <= 1000
    s.record(envelope(Trigger.MANUAL, tp(bytes_total=400_000_000)))  # manual tests count too
    plan = s.plan(Trigger.SCHEDULE, KINDS)
    assert "daily data budget: 800 of 1000 MB" in english(plan.skip["throughput"])
    assert s.plan(Trigger.MANUAL, KINDS).skip == {}  # someone at the gateway itself may go over it
    # (remote and retest tests are held to the budget: tests/adversarial/test_hostile_commands.py)
    # A new local day starts a new budget (and the state survived a restart).
    now[0] = datetime(2026, 3, 3, 0, 5).timestamp()
    assert sched(tmp_path, clock=now, throughput_interval_s=0, daily_data_budget_mb=1000) \
        .plan(Trigger.SCHEDULE, KINDS).skip == {}


def test_skipped_or_failed_tests_do_not_count_bytes(tmp_path: Path) -> None:
    s = sched(tmp_path, daily_data_budget_mb=100, throughput_interval_s=0)
    s.record(envelope(Trigger.SCHEDULE, tp(Status.SKIPPED)))
    s.record(envelope(Trigger.SCHEDULE, tp(Status.FAILED)))  # failed and said nothing about bytes
    assert s.plan(Trigger.SCHEDULE, KINDS).skip == {}
    assert bytes_used(tp(down_bytes=5, up_bytes=7)) == 12
    assert bytes_used(tp(bytes_down_bytes=500, bytes_up_bytes=300, cpu_max_pct=9)) == 800  # the throughput check
    assert bytes_used(tp(bytes_total=9, down_bytes=5)) == 9
    assert bytes_used(tp()) is None


class FakeLine:
    """WAN rates the gate will read, one per measurement; the last repeats."""

    def __init__(self, kbps: list[float]):
        self.kbps = kbps
        self.t = 0.0
        self.measured = 0

    def measure(self, window_s: float) -> Rates:
        self.t += window_s
        k = self.kbps[min(self.measured, len(self.kbps) - 1)]
        self.measured += 1
        return Rates(k * 0.9, k * 0.1, None, window_s)

    def wait(self, seconds: float) -> bool:
        self.t += seconds
        return False


def gate(line: FakeLine, **cfg: float) -> CrossTrafficGate:
    return CrossTrafficGate(GateConfig(**{"threshold_kbps": 200, "sample_s": 2, "retry_s": 30,
                                          "max_wait_s": 300, **cfg}), line.measure, line.wait, lambda: line.t)


def test_gate_defers_then_passes_when_the_office_calms_down() -> None:
    line = FakeLine([50_000, 20_000, 150])
    out = gate(line).wait_for_quiet()
    assert out.passed and out.wan_kbps == 150
    assert line.measured == 3 and out.waited_s == pytest.approx(2 + 30 + 2 + 30 + 2)


def test_gate_gives_up_after_the_limit_and_the_plan_skips_with_reason(tmp_path: Path) -> None:
    line = FakeLine([80_000])
    out = gate(line).wait_for_quiet()
    assert not out.passed and out.waited_s <= 300
    assert "stayed above 200 kbit/s" in english(out.reason)
    plan = sched(tmp_path).plan(Trigger.SCHEDULE, KINDS, gate=gate(FakeLine([80_000])))
    assert set(plan.skip) == {"throughput"} and "cross-traffic gate" in english(plan.skip["throughput"])
    assert plan.trigger_info["gate_wan_kbps"] == 80_000


def test_manual_and_remote_checks_bypass_the_gate(tmp_path: Path) -> None:
    line = FakeLine([80_000])
    s = sched(tmp_path)
    for trigger in (Trigger.MANUAL, Trigger.REMOTE, Trigger.RETEST):
        assert s.plan(trigger, KINDS, gate=gate(line)).skip == {}
    assert line.measured == 0
    assert s.plan(Trigger.SCHEDULE, ["link", "ping"], gate=gate(line)).skip == {}  # nothing heavy to gate
    assert line.measured == 0


def test_a_busy_server_is_retried_later_with_backoff_not_after_a_day(tmp_path: Path) -> None:
    """Issue 22: 'server busy' measured nothing; it must not count as the day's test. The next try is due
    after interval_s, then twice that, ...; a test that ran resets the backoff."""
    from linecheck.wire import ReasonPart

    now = [datetime(2026, 3, 2, 10, 0).timestamp()]
    s = sched(tmp_path, now, interval_s=3600, throughput_interval_s=86400, daily_data_budget_mb=None,
              gate=GateConfig(enabled=False))
    busy = CheckResult(kind="throughput", status=Status.ERROR, duration_s=1, reason="server busy: 4 tests running",
                       reason_parts=[ReasonPart(key="throughput_busy", args={"diagnostic": "server busy"})])

    def due(after_s: float) -> bool:
        now[0] += after_s
        return "throughput" in (s.plan(Trigger.SCHEDULE, KINDS).only or KINDS)

    s.record(envelope(Trigger.SCHEDULE, busy))
    assert not due(3000) and due(700)  # one interval (3600 s) after the refusal
    s.record(envelope(Trigger.SCHEDULE, busy))
    assert not due(3600 * 2 - 100) and due(200)  # then two
    s.record(envelope(Trigger.SCHEDULE, tp(bytes_down_bytes=10**8)))
    assert not due(3600 * 20) and due(3600 * 5)  # a test that ran: the next one a day later
    assert s.state["busy_streak"] == 0
