"""Debounced rules on SQLite and PostgreSQL: one bad result opens nothing, M of N opens one ticket,
a healthy re-test opens nothing, K healthy results resolve; thresholds relative to the plan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from collector.fleet import registry
from collector.rules.engine import Plan, RuleEngine, RulesConfig
from collector.store import schema as t
from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from linecheck.wire import ResultEnvelope, Trigger
from tests.factory import envelope, finding, link_check, ping_check, throughput_check

LINE, AGENT = "l-1", "gw-1"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    with s.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({
            "tenants": [{"tenant_id": "carrier", "name": "Carrier", "kind": "carrier"}],
            "sites": [{"site_id": "site-1", "tenant_id": "carrier"}],
            "lines": [{"line_id": LINE, "tenant_id": "carrier", "site_id": "site-1",
                       "plan_down_mbps": 500, "plan_up_mbps": 300}],
            "agents": [{"agent_id": AGENT, "line_id": LINE, "report_interval_s": 600}]}))
    yield s
    s.close()


def engine(store: Store, **rules: object) -> RuleEngine:
    e = RuleEngine(RulesConfig.model_validate(rules))
    store.add_hook(e.on_ingest)
    return e


def down() -> ResultEnvelope:
    return envelope(AGENT, LINE, [link_check(up=False), ping_check(loss_pct=100)],
                    [finding("line_down"), finding("packet_loss")])


def healthy() -> ResultEnvelope:
    return envelope(AGENT, LINE)


def lossy(**kw: object) -> ResultEnvelope:
    return envelope(AGENT, LINE, [link_check(), ping_check(loss_pct=30)], [finding("packet_loss")], **kw)  # type: ignore[arg-type]


def feed(store: Store, *results: ResultEnvelope) -> None:
    for r in results:
        assert store.ingest([r])


def all_tickets(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [(r.fault_class, r.state) for r in conn.execute(select(t.tickets).order_by(t.tickets.c.ticket_id))]


def pending_retests(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return [(r.agent_id, r.fault_class, r.state) for r in conn.execute(select(t.commands))]


def test_one_bad_result_opens_nothing_m_of_n_opens_one_k_healthy_resolve(store: Store) -> None:
    engine(store)  # line_down default: 2 of the last 3, resolved after 2 healthy
    feed(store, healthy(), down())
    assert all_tickets(store) == []
    feed(store, healthy(), down())  # 2 of the last 3 breach, the newest too
    assert all_tickets(store) == [("line_down", "open")]
    with store.engine.connect() as conn:
        (opened,) = tickets.listing(conn)
    assert opened.summary.startswith("Line down on line l-1: 2 of the last 3 results breached")
    feed(store, down(), down())  # still down: the same ticket, no second one; its summary follows
    assert all_tickets(store) == [("line_down", "open")]
    with store.engine.connect() as conn:
        assert len(tickets.evidence(conn, opened.ticket_id)) == 4  # the two new breaches attached
    feed(store, healthy())
    assert all_tickets(store) == [("line_down", "open")]
    feed(store, healthy())
    assert all_tickets(store) == [("line_down", "resolved")]
    with store.engine.connect() as conn:
        (ticket,) = tickets.listing(conn)
        kinds = [(ev.kind, ev.actor) for ev in tickets.events(conn, ticket.ticket_id)]
        roles = sorted({ev.role for ev in tickets.evidence(conn, ticket.ticket_id)})
    assert kinds == [("opened", "rule"), ("resolved", "rule")]
    assert roles == ["resolve", "trigger"]
    assert ticket.location == "wan" and ticket.tenant_id == "carrier" and ticket.severity == "critical"
    assert ticket.summary.startswith("Line down on line l-1: 3 of the last 3 results breached")  # not frozen


def test_packet_loss_is_masked_while_the_line_is_down(store: Store) -> None:
    engine(store, classes={"packet_loss": {"retest": False}})
    feed(store, down(), down(), down(), down(), down())
    assert all_tickets(store) == [("line_down", "open")]


def test_a_fault_that_already_cleared_opens_nothing(store: Store) -> None:
    engine(store)
    # One batch, e.g. an agent's spool drained after an outage: by now the line is fine.
    assert len(store.ingest([down(), down(), healthy()])) == 3
    assert all_tickets(store) == []


def test_retest_healthy_opens_nothing_and_discards_the_window(store: Store) -> None:
    engine(store)  # packet_loss: 3 of 5, re-test first
    feed(store, lossy(), lossy(), lossy())
    assert all_tickets(store) == [] and pending_retests(store) == [(AGENT, "packet_loss", "pending")]
    feed(store, lossy())  # still waiting for the re-test: no second command
    assert len(pending_retests(store)) == 1
    with store.engine.connect() as conn:
        command_id, checks = conn.execute(select(t.commands.c.command_id, t.commands.c.checks)).one()
    assert checks == '["ping"]'  # what the breaching results carried (the agent has no udp_latency)
    feed(store, envelope(AGENT, LINE, trigger=Trigger.RETEST, command_id=command_id))
    assert all_tickets(store) == [] and pending_retests(store) == [(AGENT, "packet_loss", "refuted")]
    feed(store, lossy())  # old breaches do not count again after a healthy re-test
    assert len(pending_retests(store)) == 1


def test_retest_that_confirms_opens_the_ticket_with_the_retest_as_evidence(store: Store) -> None:
    engine(store)
    feed(store, lossy(), healthy(), lossy(), lossy())
    with store.engine.connect() as conn:
        command_id = conn.execute(select(t.commands.c.command_id)).scalar_one()
    retest = lossy(trigger=Trigger.RETEST, command_id=command_id)
    feed(store, retest)
    assert all_tickets(store) == [("packet_loss", "open")]
    assert pending_retests(store) == [(AGENT, "packet_loss", "confirmed")]
    with store.engine.connect() as conn:
        (ticket,) = tickets.listing(conn)
        roles = {(ev.result_id, ev.role) for ev in tickets.evidence(conn, ticket.ticket_id)}
    assert (retest.result_id, "retest") in roles and len([r for r in roles if r[1] == "trigger"]) == 3
    assert "re-test confirmed" in ticket.summary


def _speed(down: float | None, up: float | None = 280.0) -> ResultEnvelope:
    return envelope(AGENT, LINE, [link_check(), ping_check(), throughput_check(down, up)])


def test_speed_threshold_is_relative_to_the_plan_and_a_failed_test_is_not_slow(store: Store) -> None:
    engine(store, classes={"speed_below_plan": {"retest": False, "breaches": 2, "window": 3}})
    feed(store, _speed(None), _speed(None), _speed(None))  # server unreachable: unavailable, not slow
    feed(store, _speed(260), _speed(255))  # above 50% of the 500 plan
    assert all_tickets(store) == []
    feed(store, _speed(240), _speed(230))  # below 250 twice
    assert all_tickets(store) == [("speed_below_plan", "open")]
    with store.engine.connect() as conn:
        (ticket,) = tickets.listing(conn)
    assert "down_mbps 230 < 250 (50% of the down plan)" in ticket.summary
    # Upgrade the plan: now the upload of 100 against 300 breaches too (checked on the same line).
    feed(store, _speed(480, 100), _speed(480, 290), _speed(480, 290), _speed(480, 290))
    assert all_tickets(store) == [("speed_below_plan", "resolved")]


def test_agent_offline_opens_after_silence_and_resolves_when_it_reports(store: Store) -> None:
    rules = engine(store)
    feed(store, healthy())
    with store.engine.begin() as conn:
        assert rules.sweep(conn, datetime.now(UTC) + timedelta(seconds=900)) == {"expired": 0, "agent_offline": 0}
    with store.engine.begin() as conn:  # 600 s schedule × 2 grace
        assert rules.sweep(conn, datetime.now(UTC) + timedelta(seconds=1300))["agent_offline"] == 1
        assert rules.sweep(conn, datetime.now(UTC) + timedelta(seconds=1400))["agent_offline"] == 0
    assert all_tickets(store) == [("agent_offline", "open")]
    feed(store, healthy())
    assert all_tickets(store) == [("agent_offline", "resolved")]


def test_unanswered_retest_expires_and_is_asked_again(store: Store) -> None:
    rules = engine(store, retest_timeout_s=60)
    feed(store, lossy(), lossy(), lossy())
    with store.engine.begin() as conn:
        assert rules.sweep(conn, datetime.now(UTC) + timedelta(seconds=120))["expired"] == 1
    feed(store, lossy())
    assert [s for *_, s in pending_retests(store)] == ["expired", "pending"]
    assert all_tickets(store) == []


def test_rules_config_names_bad_keys() -> None:
    with pytest.raises(ValueError, match="breaches \\(M=4\\) cannot exceed window \\(N=3\\)"):
        RulesConfig.model_validate({"classes": {"line_down": {"breaches": 4}}})
    with pytest.raises(ValueError, match="a rule needs findings or conditions"):
        RulesConfig.model_validate({"classes": {"my_class": {"observed_by": ["ping"]}}})
    with pytest.raises(ValueError, match="give exactly one of above, below, below_plan_pct"):
        RulesConfig.model_validate({"classes": {"x": {"conditions": [{"metrics": ["loss_pct"]}]}}})
    merged = RulesConfig.model_validate({"classes": {"packet_loss": {"breaches": 2}}}).effective()
    assert merged["packet_loss"].breaches == 2 and merged["packet_loss"].retest is True


def test_the_agents_own_counters_are_no_evidence_about_the_line(store: Store) -> None:
    """A rule observed by every check must not take the agent's pseudo-check (spool counters, always
    ok) as a healthy observation: an open ticket would resolve on results that measured nothing."""
    from linecheck.wire import AGENT_CHECK, CheckResult, Status

    rules = RuleEngine(RulesConfig.model_validate({"classes": {"any_loss": {
        "title": "Loss anywhere", "findings": ["packet_loss"], "breaches": 1, "window": 1, "heal_after": 1,
        "retest": False}}}))
    counters = CheckResult(kind=AGENT_CHECK, status=Status.OK, metrics={"spool_backlog_count": 3}, duration_s=0.0)
    plan = Plan(500, 300)
    assert rules.observe("any_loss", envelope(AGENT, LINE, [counters]), plan) is None
    seen = rules.observe("any_loss", envelope(AGENT, LINE, [counters, ping_check()]), plan)
    assert seen is not None and seen.breach is False
