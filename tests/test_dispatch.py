"""The dispatch queue (issue 24 item 3) on SQLite and PostgreSQL: an incident of 30 lines ranks above
single-line tickets, district filter, work order with members and evidence, assign/arrive/close recorded
on the ticket, incident notifications through the outbox, tenants kept apart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.api.accounts import Principal, Role
from collector.api.scope import Scope
from collector.fleet import registry
from collector.incidents import dispatch
from collector.incidents.decide import IncidentConfig
from collector.notify.config import NotifyConfig
from collector.notify.outbox import Notifier
from collector.store import schema as t
from collector.store.database import Store
from tests.test_incidents import PORT, T0, build, down, feed, incidents, line_tickets, sweep, up, wire

OPERATOR = Principal("op", Role.CARRIER_ADMIN, None, "t", "api")
CARRIER = Principal("c-admin", Role.CARRIER_ADMIN, "carrier", "t", "api")
ENTERPRISE = Principal("e-user", Role.ENTERPRISE, "ent", "t", "api")
OTHER = Principal("o-admin", Role.CARRIER_ADMIN, "other", "t", "api")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = build(db_url)
    with s.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({
            "tenants": [{"tenant_id": "other", "name": "Other", "kind": "carrier"}],
            "sites": [{"site_id": "o-site", "tenant_id": "other", "district": "Minhang"}],
            "lines": [{"line_id": "o-1", "tenant_id": "other", "site_id": "o-site", "district": "Minhang"}]}))
    yield s
    s.close()


def scope(store: Store, who: Principal) -> Scope:
    with store.engine.connect() as conn:
        return Scope.of(conn, who)


def storm(store: Store) -> None:
    corr = wire(store)
    feed(store, [up(i, T0) for i in range(60)])
    for k in range(2):
        feed(store, [down(i, T0 + timedelta(minutes=1 + k, seconds=i)) for i in [*range(30), 31]])
    sweep(store, corr, datetime.now(UTC) + timedelta(seconds=IncidentConfig().hold_s + 1))
    assert incidents(store) == [(PORT, "line_down", "open", 30)]
    assert [x[0] for x in line_tickets(store)] == ["l-31"]


def test_queue_ranks_the_incident_first_and_filters_by_district(store: Store) -> None:
    storm(store)
    with store.engine.begin() as conn:
        from collector.tickets import lifecycle as tickets
        tickets.open_ticket(conn, line_id="o-1", fault_class="line_down", summary="other carrier's line")
        jobs = dispatch.queue(conn, scope(store, CARRIER))
        assert [(j.kind, j.lines_affected, j.business_lines) for j in jobs] == [("incident", 30, 30), ("line", 1, 1)]
        assert jobs[0].district == "Xuhui" and jobs[0].node == PORT and jobs[0].score > jobs[1].score
        assert dispatch.queue(conn, scope(store, CARRIER), district="Minhang") == []
        assert [j.line_id for j in dispatch.queue(conn, scope(store, OPERATOR), district="Minhang")] == ["o-1"]
        # Tenants apart: the other carrier sees only its own line; an enterprise sees its line tickets only.
        assert [j.line_id for j in dispatch.queue(conn, scope(store, OTHER))] == ["o-1"]
        assert [j.kind for j in dispatch.queue(conn, scope(store, ENTERPRISE))] == ["line"]
        with pytest.raises(dispatch.DispatchError) as exc:
            dispatch.work_order(conn, scope(store, OTHER), jobs[0].ticket_id)
        assert exc.value.status == 404
        with pytest.raises(dispatch.DispatchError):
            dispatch.assign(conn, scope(store, OTHER), jobs[0].ticket_id, "x", "o-admin")

        order = dispatch.work_order(conn, scope(store, CARRIER), jobs[0].ticket_id)
    assert order["incident"]["node_label"] == "Xuhui › CO-XH1 › OLT-3 › PON-1-2"
    assert len(order["lines"]) == 30 and order["lines"][0]["segment"] == "sme"
    assert order["evidence"] and all(e["findings"] for e in order["evidence"])
    assert any("line_down" in f for e in order["evidence"] for f in e["findings"])


def test_assign_arrive_close_recorded_and_closing_an_incident_tickets_stragglers(store: Store) -> None:
    storm(store)
    s = scope(store, CARRIER)
    with store.engine.begin() as conn:
        job = dispatch.queue(conn, s)[0]
        with pytest.raises(dispatch.DispatchError) as exc:
            dispatch.arrive(conn, s, job.ticket_id, "c-admin")  # nobody was sent yet
        assert exc.value.status == 409
        dispatch.assign(conn, s, job.ticket_id, "tech-1", "c-admin")
        dispatch.arrive(conn, s, job.ticket_id, "tech-1", "cabinet open")
    feed(store, [up(i, T0 + timedelta(minutes=9, seconds=i)) for i in range(20)])  # 20 of 30 back: not yet 90 %
    assert incidents(store)[0][2] == "open"
    with store.engine.begin() as conn:
        dispatch.close(conn, s, job.ticket_id, "tech-1", "replaced the PON optic")
        trail = [(e.kind, e.actor) for e in conn.execute(select(t.ticket_events).where(
            t.ticket_events.c.ticket_id == job.ticket_id).order_by(t.ticket_events.c.event_id))]
        with pytest.raises(dispatch.DispatchError) as exc:
            dispatch.close(conn, s, job.ticket_id, "tech-1")
        assert exc.value.status == 409
    assert trail == [("opened", "incident"), ("assigned", "c-admin"), ("dispatched", "c-admin"),
                     ("arrived", "tech-1"), ("closed", "tech-1"), ("resolved", "tech-1")]
    assert incidents(store)[0][2] == "resolved"
    # The 10 members still down when the crew left get their own tickets (and l-31 keeps its own).
    assert sorted(x[0] for x in line_tickets(store)) == sorted(["l-31", *(f"l-{i}" for i in range(20, 30))])


def test_incident_notifications_go_through_the_outbox(store: Store, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("k\n")
    cfg = NotifyConfig.model_validate({"webhooks": [{"name": "noc", "url": "http://127.0.0.1:9/x",
                                                     "secret_file": str(secret),
                                                     "events": ["opened", "dispatched", "resolved"]}]})
    notifier = Notifier(store.engine, cfg)
    storm(store)
    with store.engine.begin() as conn:
        job = dispatch.queue(conn, scope(store, CARRIER))[0]
        dispatch.assign(conn, scope(store, CARRIER), job.ticket_id, "tech-1", "c-admin")
    notifier.fan_out(datetime.now(UTC) + timedelta(hours=1))
    with store.engine.connect() as conn:
        kinds = [r.kind for r in conn.execute(
            select(t.ticket_events.c.kind).join(t.notifications, t.notifications.c.event_id
                                                == t.ticket_events.c.event_id)
            .where(t.ticket_events.c.ticket_id == job.ticket_id).order_by(t.ticket_events.c.event_id))]
        doc = notifier.ticket_document(conn, job.ticket_id)
    assert kinds == ["opened", "dispatched"]
    assert "Area incident" in doc["summary"]
