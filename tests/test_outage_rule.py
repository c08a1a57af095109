"""The intermittent_outage rule: M of the last N local days with heartbeat outages open one ticket that says
how often, how long, when and where; kept current while open; resolved when the days thin out. Pure
judgement, then through ingest on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from collector.fleet import registry
from collector.rules.engine import RuleEngine, RulesConfig
from collector.rules.outages import IntermittentOutageRule, StoredOutage, judge
from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from linecheck.wire import CheckResult, ResultEnvelope, Status
from tests.factory import envelope, link_check

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
RULE = IntermittentOutageRule()  # 3 of the last 7 days, Asia/Shanghai
LINE, AGENT = "l-1", "gw-1"


def at(days_ago: float, hour_utc: int = 1) -> float:
    return (NOW - timedelta(days=days_ago)).replace(hour=hour_utc, minute=30).timestamp()


def o(days_ago: float, hour_utc: int = 1, duration: float = 30.0, where: str = "gateway") -> StoredOutage:
    return StoredOutage(AGENT, f"r{days_ago}-{hour_utc}", at(days_ago, hour_utc), duration, where)


def test_three_days_of_seven_open_two_do_not() -> None:
    assert not judge(LINE, [o(1), o(1, 2), o(3)], RULE, NOW).breach  # two days, however many drops
    j = judge(LINE, [o(1), o(1, 2), o(3), o(5, duration=90.0, where="link")], RULE, NOW)
    assert j.breach and j.detail["days_with_outages"] == 3 and j.detail["outages"] == 4
    # 01:30 UTC is 09:30 in Shanghai: the summary speaks the carrier's hours, with the offset
    assert "dropped on 3 of the last 7 days: 4 drops, longest 90 s" in j.summary
    assert "between 09:00 and 10:00 (+08:00)" in j.summary and "first hop" in j.summary
    assert len(j.evidence) == 4


def test_days_are_local_days_and_old_or_repeated_outages_do_not_count() -> None:
    # 16:30 and 23:30 UTC on one UTC day are two Shanghai days (00:30 and 07:30 of the next).
    j = judge(LINE, [o(2, 15), o(2, 16), o(2, 23)], RULE, NOW)
    assert j.detail["days_with_outages"] == 2
    assert not judge(LINE, [o(8), o(9), o(10)], RULE, NOW).breach  # outside the 7 days
    same = o(1)
    assert judge(LINE, [same, same, o(2)], RULE, NOW).detail["outages"] == 2  # a re-sent report counts once


def test_m_cannot_exceed_n_and_the_zone_is_checked() -> None:
    with pytest.raises(ValueError, match="min_days"):
        IntermittentOutageRule(days=3, min_days=4)
    with pytest.raises(ValueError, match="IANA"):
        IntermittentOutageRule(timezone="Mars/Olympus")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    with s.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({
            "tenants": [{"tenant_id": "carrier", "name": "Carrier", "kind": "carrier"}],
            "sites": [{"site_id": "site-1", "tenant_id": "carrier"}],
            "lines": [{"line_id": LINE, "tenant_id": "carrier", "site_id": "site-1"}],
            "agents": [{"agent_id": AGENT, "line_id": LINE, "report_interval_s": 3600}]}))
    yield s
    s.close()


def reported(days_ago: float, drops: list[tuple[int, float]]) -> ResultEnvelope:
    """A result taken `days_ago` carrying the heartbeat's report of `drops` (UTC hour, seconds) that day."""
    checks = [link_check(), CheckResult(kind="heartbeat", status=Status.DEGRADED if drops else Status.OK,
                                        duration_s=0, metrics={"outages_count": len(drops)})]
    for hour, seconds in drops:
        start = at(days_ago, hour)
        checks.append(CheckResult(kind="outage", status=Status.DEGRADED, duration_s=0, target="gateway",
                                  metrics={"started_unix_s": start, "ended_unix_s": start + seconds,
                                           "duration_s": seconds}))
    return envelope(AGENT, LINE, checks, started_at=NOW - timedelta(days=days_ago) + timedelta(hours=3))


def test_through_ingest_one_ticket_kept_current_then_resolved(store: Store) -> None:
    rules = RuleEngine(RulesConfig())
    store.add_hook(rules.on_ingest)
    for days_ago, drops in ((6, [(1, 20.0)]), (4, [(1, 40.0), (2, 10.0)])):
        assert store.ingest([reported(days_ago, drops)], received_at=NOW - timedelta(days=days_ago))
    with store.engine.connect() as conn:
        assert tickets.listing(conn) == []  # two days of seven: nothing yet
    assert store.ingest([reported(2, [(1, 90.0)])], received_at=NOW - timedelta(days=2))
    assert store.ingest([reported(1, [(3, 15.0)])], received_at=NOW - timedelta(days=1))
    with store.engine.connect() as conn:
        (t,) = tickets.listing(conn)
        evidence = tickets.evidence(conn, t.ticket_id)
    assert (t.fault_class, t.state, t.location, t.severity) == ("intermittent_outage", "open", "wan", "warning")
    assert "dropped on 4 of the last 7 days: 5 drops, longest 90 s" in t.summary  # refreshed by the 4th day
    assert len(evidence) == 4
    # A week of quiet heartbeats later the days have thinned out: resolved.
    later = NOW + timedelta(days=6)
    assert store.ingest([reported(-6, [])], received_at=later)
    with store.engine.connect() as conn:
        (t,) = tickets.listing(conn)
    assert t.state == "resolved"
