"""The heartbeat between checks: rounds in, outage intervals out; the outage log on disk (hostile content
included); the report the next result carries; the daily data cap. The lab run is tests/test_outages_lab.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agent.heartbeat import DailyBudget, HeartbeatConfig, Outage, OutageTracker, Round
from agent.outagelog import REPORT_MAX, OutageLog, report
from linecheck.catalogue import unlisted
from linecheck.wire import Status

OK = (True, True, True)
GATEWAY = (True, False, None)  # the next hop did not answer: the server was not tried
BEYOND = (True, True, False)
LINK = (False, False, None)
T0 = round(time.time()) - 86400  # the log keeps the last 30 days: yesterday's outages


def rounds(*states: tuple[bool | None, bool | None, bool | None], start: float = 1000.0) -> list[Round]:
    return [Round(start + 10 * i, *s) for i, s in enumerate(states)]


@pytest.mark.parametrize("name, states, expected", [
    ("two missed rounds are a blip, not an outage", [OK, GATEWAY, GATEWAY, OK], []),
    ("three in a row: an outage from the first miss to the first answer", [OK, GATEWAY, GATEWAY, GATEWAY, OK],
     [(1010.0, 1040.0, "gateway")]),
    ("the nearest failure names it: the link went down in the middle", [OK, BEYOND, LINK, GATEWAY, BEYOND, OK],
     [(1010.0, 1050.0, "link")]),
    ("only the server beyond the first hop: beyond", [BEYOND] * 4 + [OK], [(1000.0, 1040.0, "beyond")]),
    ("two outages", [GATEWAY] * 3 + [OK] + [LINK] * 4 + [OK], [(1000.0, 1030.0, "gateway"), (1040.0, 1080.0, "link")]),
    ("still down at the end: nothing closed yet", [OK] + [LINK] * 5, []),
    ("a probe not sent says nothing", [OK, (None, None, None), (True, None, None), OK], []),
])
def test_outage_tracker(name: str, states: list, expected: list) -> None:
    tracker = OutageTracker(down_after=3)
    closed = [o for r in rounds(*states) if (o := tracker.observe(r)) is not None]
    assert [(o.start, o.end, o.where) for o in closed] == expected, name


def test_the_log_keeps_outages_until_a_spooled_result_carried_them(tmp_path: Path) -> None:
    log = OutageLog(tmp_path / "outages.json")
    log.ensure()
    assert oct((tmp_path / "outages.json").stat().st_mode & 0o777) == "0o600"
    checks, findings = report(log, now=2000.0)
    assert [(c.kind, c.status, c.metrics["outages_count"]) for c in checks] == [("heartbeat", Status.OK, 0)]
    assert findings == []
    log.add(Outage(T0 + 1000.0, T0 + 1090.0, "gateway"))
    log.add(Outage(T0 + 1500.0, T0 + 1520.0, "link"))
    log.add(Outage(T0 + 1600.0, T0 + 1610.0, "gateway"))
    checks, findings = report(log, now=T0 + 2000.0)
    summary, *each = checks
    assert summary.metrics == {"outages_count": 3, "outage_longest_s": 90.0, "outage_total_s": 120.0,
                               "window_s": None, "rested_days_count": 0}
    assert [(c.kind, c.target, c.metrics["duration_s"]) for c in each] == [
        ("outage", "gateway", 90.0), ("outage", "link", 20.0), ("outage", "gateway", 10.0)]
    [f] = findings
    assert (f.code, f.where, f.severity) == ("line_outages", "wan", "warning")
    assert f.detail["count"] == 3 and f.detail["longest_s"] == 90.0 and f.detail["where"] == "gateway"
    assert "dropped 3 times" in f.message and "longest 90 s" in f.message and "first hop" in f.message
    log.mark_reported(T0 + 1520.0)  # the spooled result carried the first two
    outages, since, _ = log.unreported()
    assert [(o.start, o.where) for o in outages] == [(T0 + 1600.0, "gateway")] and since == T0 + 1520.0
    log.mark_reported(None)  # a result without outages moves nothing
    assert log.unreported()[1] == T0 + 1520.0


def test_a_result_carries_at_most_report_max_outages_and_counts_them_all(tmp_path: Path) -> None:
    log = OutageLog(tmp_path / "outages.json")
    for i in range(REPORT_MAX + 7):
        log.add(Outage(T0 + 100 * i, T0 + 10 + 100 * i, "link"))
    checks, _ = report(log, now=T0 + 1e5)
    assert checks[0].metrics["outages_count"] == REPORT_MAX + 7 and len(checks) == 1 + REPORT_MAX
    assert checks[-1].metrics["started_unix_s"] == T0 + 100 * (REPORT_MAX + 6)  # the newest kept


@pytest.mark.parametrize("content", [b"", b"\x00\xff not json", b"[]", json.dumps({
    "outages": [{"start": 1, "end": 0, "where": "link"}, {"start": "x", "end": 5, "where": "gateway"},
                {"start": 1, "end": 2, "where": "moon"}, "junk", {"start": T0 + 10, "end": T0 + 20, "where": "link"}],
    "reported_until": "yesterday", "rested": [1, "2026-12-07"]}).encode()])
def test_a_damaged_or_forged_log_costs_only_what_is_bad(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "outages.json"
    path.write_bytes(content)
    outages, since, rested = OutageLog(path).unreported()
    assert since == 0.0
    assert [(o.start, o.end, o.where) for o in outages] in ([], [(T0 + 10, T0 + 20, "link")])
    assert rested in ([], ["2026-12-07"])
    checks, _ = report(OutageLog(path), now=100.0)  # and the report still builds
    assert checks[0].kind == "heartbeat"
    OutageLog(path).add(Outage(T0 + 30.0, T0 + 40.0, "beyond"))  # and the log can be written again
    assert (T0 + 30.0, T0 + 40.0, "beyond") in [(o.start, o.end, o.where) for o in OutageLog(path).unreported()[0]]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_daily_cap_rests_the_heartbeat_and_says_so_once(tmp_path: Path) -> None:
    log = OutageLog(tmp_path / "outages.json")
    budget = DailyBudget(1000, log.rested)
    day1 = 86400.0 * 20000 + 100
    assert all(budget.spend(168, day1) for _ in range(5))  # 840 bytes
    assert not budget.spend(168, day1) and not budget.spend(168, day1)
    assert budget.spend(168, day1 + 86400)  # a new UTC day
    checks, _ = report(log, now=day1 + 86400)
    assert checks[0].status is Status.DEGRADED and checks[0].metrics["rested_days_count"] == 1
    assert "rested on" in (checks[0].reason or "")


def test_every_heartbeat_metric_is_catalogued_and_the_config_is_bounded(tmp_path: Path) -> None:
    log = OutageLog(tmp_path / "outages.json")
    log.add(Outage(T0 + 1.0, T0 + 2.0, "link"))
    checks, _ = report(log, now=T0 + 5.0)
    for c in checks:
        assert unlisted(c.kind, set(c.metrics)) == [], c.kind
    with pytest.raises(ValueError):
        HeartbeatConfig(interval_s=0.1)
    with pytest.raises(ValueError):
        HeartbeatConfig(daily_bytes_max=10)


def test_the_daemon_marks_outages_reported_from_the_stored_result_only(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from agent.daemon import Agent
    from tests.factory import envelope

    log = OutageLog(tmp_path / "outages.json")
    log.add(Outage(T0 + 10.0, T0 + 20.0, "link"))
    log.add(Outage(T0 + 30.0, T0 + 45.0, "gateway"))
    checks, findings = report(log, now=T0 + 100.0)
    log.add(Outage(T0 + 60.0, T0 + 70.0, "beyond"))  # closed after the check read the log
    daemon = SimpleNamespace(outages=log)
    Agent._outages_reported(daemon, envelope("gw", "l", [], []))  # type: ignore[arg-type]  # no report: no mark
    assert len(log.unreported()[0]) == 3
    Agent._outages_reported(daemon, envelope("gw", "l", checks, findings))  # type: ignore[arg-type]
    assert [(o.start, o.where) for o in log.unreported()[0]] == [(T0 + 60.0, "beyond")]  # not lost
