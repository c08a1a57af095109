"""Area incidents on SQLite and PostgreSQL (issue 24): 30 lines behind one PON port going down within
minutes are one incident and no line ticket; unrelated faults elsewhere get their own tickets; recovery
resolves the incident; a line still down then gets its own ticket."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from collector.fleet import registry
from collector.incidents.correlate import Correlator
from collector.incidents.decide import IncidentConfig
from collector.rules.engine import RuleEngine, RulesConfig
from collector.store import schema as t
from collector.store.database import Store
from linecheck.wire import ResultEnvelope
from tests.factory import envelope, finding, link_check, ping_check

PORT = "Xuhui/CO-XH1/OLT-3/PON-1-2"
T0 = datetime.now(UTC).replace(microsecond=0)


def path(i: int) -> str:
    if i < 30:
        return f"{PORT}/SPL-{i // 8}"  # 30 lines behind one port, 4 splitters
    return f"Xuhui/CO-XH1/OLT-3/PON-1-{i % 5 + 3}/SPL-0"  # 30 more on five other ports


def build(db_url: str, lines: int = 60) -> Store:
    s = Store(db_url)
    with s.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({
            "tenants": [{"tenant_id": "carrier", "name": "Carrier", "kind": "carrier"},
                        {"tenant_id": "ent", "name": "Ent", "kind": "enterprise", "parent_id": "carrier"}],
            "sites": [{"site_id": "site-1", "tenant_id": "ent"}],
            "lines": [{"line_id": f"l-{i}", "tenant_id": "ent", "site_id": "site-1", "access_path": path(i),
                       "segment": "sme"} for i in range(lines)],
            "agents": [{"agent_id": f"gw-{i}", "line_id": f"l-{i}", "report_interval_s": 300}
                       for i in range(lines)]}))
    return s


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = build(db_url)
    yield s
    s.close()


def wire(store: Store) -> Correlator:
    rules = RuleEngine(RulesConfig())
    corr = Correlator(IncidentConfig(), rules)
    rules.hold = corr.hold
    store.add_hook(rules.on_ingest)
    store.add_hook(corr.on_ingest)
    return corr


def down(i: int, at: datetime) -> ResultEnvelope:
    return envelope(f"gw-{i}", f"l-{i}", [link_check(up=False), ping_check(loss_pct=100)],
                    [finding("line_down"), finding("packet_loss")], started_at=at)


def up(i: int, at: datetime) -> ResultEnvelope:
    return envelope(f"gw-{i}", f"l-{i}", started_at=at)


def feed(store: Store, results: list[ResultEnvelope]) -> None:
    for r in results:
        assert store.ingest([r])


def line_tickets(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return [(r.line_id, r.fault_class, r.state) for r in conn.execute(
            select(t.tickets).where(~t.tickets.c.line_id.like("incident:%")).order_by(t.tickets.c.ticket_id))]


def incidents(store: Store) -> list[tuple[str, str, str, int]]:
    with store.engine.connect() as conn:
        out = []
        for r in conn.execute(select(t.incidents).order_by(t.incidents.c.incident_id)):
            n = len(conn.execute(select(t.incident_members).where(
                t.incident_members.c.incident_id == r.incident_id)).all())
            out.append((r.node, r.fault_class, r.state, n))
        return out


def sweep(store: Store, corr: Correlator, at: datetime) -> dict[str, int]:
    with store.engine.begin() as conn:
        return corr.sweep(conn, at)


def test_pon_port_down_is_one_incident_unrelated_faults_own_tickets_straggler_after(store: Store) -> None:
    corr = wire(store)
    feed(store, [up(i, T0) for i in range(60)])  # the fleet reported: 30 behind the port, 30 elsewhere
    # Within minutes the port's 30 lines go down (2 of 3 results: the rule would open a ticket each),
    # and two lines on other ports fail on their own.
    for k in range(2):
        feed(store, [down(i, T0 + timedelta(minutes=1 + k, seconds=i)) for i in [*range(30), 31, 47]])
    assert line_tickets(store) == []  # held: nobody has a ticket yet, nor a truck
    got = sweep(store, corr, datetime.now(UTC) + timedelta(seconds=IncidentConfig().hold_s + 1))
    assert incidents(store) == [(PORT, "line_down", "open", 30)]
    assert sorted(line_tickets(store)) == [("l-31", "line_down", "open"), ("l-47", "line_down", "open")], got
    with store.engine.connect() as conn:
        ticket = conn.execute(select(t.tickets).where(t.tickets.c.line_id.like("incident:%"))).one()
    assert (ticket.fault_class, ticket.state, ticket.tenant_id) == ("area_line_down", "open", "carrier")
    assert "30 of 30 reporting lines" in ticket.summary

    # Still down: members keep no ticket of their own.
    feed(store, [down(i, T0 + timedelta(minutes=5, seconds=i)) for i in range(30)])
    sweep(store, corr, datetime.now(UTC) + timedelta(hours=1))
    assert sorted(x[0] for x in line_tickets(store)) == ["l-31", "l-47"]

    # The port is repaired: all but l-7 recover (29 of 30 >= 90 %) -> resolved, l-7 gets its own ticket.
    feed(store, [up(i, T0 + timedelta(minutes=10, seconds=i)) for i in range(30) if i != 7])
    assert incidents(store) == [(PORT, "line_down", "resolved", 30)]
    assert ("l-7", "line_down", "open") in line_tickets(store)
    with store.engine.connect() as conn:
        ticket = conn.execute(select(t.tickets).where(t.tickets.c.line_id.like("incident:%"))).one()
        straggler = conn.execute(select(t.tickets).where(t.tickets.c.line_id == "l-7")).one()
    assert ticket.state == "resolved"
    assert "outlasted area incident" in straggler.summary
    # And l-7's next bad result refreshes its own ticket, it is not held again.
    feed(store, [down(7, T0 + timedelta(minutes=12))])
    assert [x for x in line_tickets(store) if x[0] == "l-7"] == [("l-7", "line_down", "open")]


def test_a_few_faults_under_a_busy_node_are_not_an_incident(store: Store) -> None:
    corr = wire(store)
    feed(store, [up(i, T0) for i in range(60)])
    for k in range(2):  # 2 lines of the port (of 30 reporting) and 1 elsewhere: below max(3, 30 %)
        feed(store, [down(i, T0 + timedelta(minutes=1 + k, seconds=i)) for i in (3, 11, 40)])
    sweep(store, corr, datetime.now(UTC) + timedelta(seconds=IncidentConfig().hold_s + 1))
    assert incidents(store) == []
    assert sorted(x[0] for x in line_tickets(store)) == ["l-11", "l-3", "l-40"]


def test_a_held_fault_that_recovers_gets_no_ticket(store: Store) -> None:
    corr = wire(store)
    feed(store, [down(5, T0 + timedelta(minutes=1)), down(5, T0 + timedelta(minutes=2)),
                 up(5, T0 + timedelta(minutes=3))])
    sweep(store, corr, datetime.now(UTC) + timedelta(hours=1))
    assert line_tickets(store) == [] and incidents(store) == []


def test_lines_without_access_path_ticket_as_before(db_url: str) -> None:
    s = Store(db_url)
    try:
        with s.engine.begin() as conn:
            registry.import_registry(conn, registry.Registry.model_validate({
                "tenants": [{"tenant_id": "c", "name": "C", "kind": "carrier"}],
                "sites": [{"site_id": "site-1", "tenant_id": "c"}],
                "lines": [{"line_id": "l-0", "tenant_id": "c", "site_id": "site-1"}],
                "agents": [{"agent_id": "gw-0", "line_id": "l-0"}]}))
        wire(s)
        feed(s, [down(0, T0 + timedelta(minutes=1)), down(0, T0 + timedelta(minutes=2))])
        assert line_tickets(s) == [("l-0", "line_down", "open")]
    finally:
        s.close()


def test_a_gateway_cannot_fail_or_heal_lines_it_is_not_bound_to(store: Store) -> None:
    """Hostile: gw-40 (bound to l-40) publishes results naming the port's lines. Ingest's binding
    refuses them, so they neither build nor resolve an incident."""
    corr = wire(store)
    feed(store, [up(i, T0) for i in range(60)])
    forged = [envelope("gw-40", f"l-{i}", [link_check(up=False)], [finding("line_down")],
                       started_at=T0 + timedelta(minutes=1 + k, seconds=i)) for k in range(2) for i in range(30)]
    for r in forged:
        store.ingest([r])
    sweep(store, corr, datetime.now(UTC) + timedelta(hours=1))
    assert incidents(store) == [] and line_tickets(store) == []
    with store.engine.connect() as conn:
        assert conn.execute(select(t.held_faults)).all() == []
        stored = conn.execute(select(t.results.c.line_id).where(t.results.c.agent_id == "gw-40")).scalars().all()
    assert set(stored) <= {"l-40"}
    # A real incident, then forged "healthy" results for its members: it stays open.
    for k in range(2):
        feed(store, [down(i, T0 + timedelta(minutes=3 + k, seconds=i)) for i in range(30)])
    sweep(store, corr, datetime.now(UTC) + timedelta(seconds=IncidentConfig().hold_s + 1))
    assert incidents(store) == [(PORT, "line_down", "open", 30)]
    for i in range(30):
        store.ingest([envelope("gw-40", f"l-{i}", started_at=T0 + timedelta(minutes=8, seconds=i))])
    sweep(store, corr, datetime.now(UTC) + timedelta(hours=1))
    assert incidents(store) == [(PORT, "line_down", "open", 30)]
