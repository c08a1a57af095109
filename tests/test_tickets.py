"""Ticket lifecycle on SQLite and PostgreSQL: states, event log, evidence, verification, and the
database-enforced rule of one open ticket per line and fault class."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from collector.store import schema as t
from collector.store.database import Store
from collector.tickets import lifecycle as tickets
from tests.factory import BASE, envelope, finding, link_check

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def test_lifecycle_with_event_log_and_verification(store: Store) -> None:
    bad = envelope("gw", "line-a", [link_check(up=False)], [finding("line_down")])
    elsewhere = envelope("gw2", "line-b")
    store.ingest([bad, elsewhere])
    with store.engine.begin() as conn:
        opened = tickets.open_ticket(conn, line_id="line-a", fault_class="line_down", summary="down",
                                     location="wan", evidence=[("gw", bad.result_id)], agent_id="gw",
                                     now=BASE)
        assert opened.created
        tid = opened.ticket_id
        with pytest.raises(tickets.TicketError, match="is open; it can move to acknowledged, dispatched, resolved"):
            tickets.transition(conn, tid, "verified", "alice")
        tickets.transition(conn, tid, "acknowledged", "alice", "looking")
        tickets.transition(conn, tid, "dispatched", "alice", "crew 7 on the way")
        tickets.transition(conn, tid, "resolved", "bob", "fibre spliced")
        with pytest.raises(tickets.TicketError, match="is from line line-b, not the ticket's line-a"):
            tickets.verify(conn, tid, "gw2", elsewhere.result_id, "bob")
        with pytest.raises(tickets.TicketError, match="does not show the line healthy"):
            tickets.verify(conn, tid, "gw", bad.result_id, "bob")
    after = envelope("gw", "line-a")
    store.ingest([after])
    with store.engine.begin() as conn:
        row = tickets.verify(conn, tid, "gw", after.result_id, "bob", note="customer signed")
        assert row.state == "verified" and row.verified_at is not None
        assert [(e.kind, e.from_state, e.to_state, e.actor) for e in tickets.events(conn, tid)] == [
            ("opened", None, "open", "rule"), ("acknowledged", "open", "acknowledged", "alice"),
            ("dispatched", "acknowledged", "dispatched", "alice"), ("resolved", "dispatched", "resolved", "bob"),
            ("verified", "resolved", "verified", "bob")]
        assert {(e.result_id, e.role) for e in tickets.evidence(conn, tid)} == {
            (bad.result_id, "trigger"), (after.result_id, "verify")}
        with pytest.raises(tickets.TicketError, match="is verified; it can move to nothing"):
            tickets.transition(conn, tid, "open", "bob")


def test_one_open_ticket_per_line_and_class_is_a_database_constraint(store: Store) -> None:
    with store.engine.begin() as conn:
        first = tickets.open_ticket(conn, line_id="l", fault_class="packet_loss", summary="loss")
        again = tickets.open_ticket(conn, line_id="l", fault_class="packet_loss", summary="loss again")
        other = tickets.open_ticket(conn, line_id="l", fault_class="line_down", summary="down")
    assert first.created and not again.created and again.ticket_id == first.ticket_id
    assert other.created and other.ticket_id != first.ticket_id
    # A plain INSERT that bypasses the API is refused by the database itself.
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(t.tickets.insert().values(
            line_id="l", fault_class="packet_loss", state="acknowledged", severity="warning", summary="dup",
            opened_by="someone", opened_at=BASE, updated_at=BASE))
    with store.engine.begin() as conn:
        assert tickets.resolve_open(conn, "l", "packet_loss", "promise", "fixed") == first.ticket_id
        assert tickets.resolve_open(conn, "l", "packet_loss", "promise", "fixed") is None
        reopened = tickets.open_ticket(conn, line_id="l", fault_class="packet_loss", summary="back")
    assert reopened.created and reopened.ticket_id != first.ticket_id


@pytest.mark.parametrize("first, second", [("speed_below_plan", "upgrade_not_delivered"),
                                           ("upgrade_not_delivered", "speed_below_plan")])
def test_one_ticket_per_fault_whichever_side_sees_it_first(store: Store, first: str, second: str) -> None:
    """A speed shortfall is one fault whether the rules (against the plan) or the promise ledger (against
    the promise) see it first: the first opens the ticket and owns it, the second links to it."""
    results = [envelope("gw", "l") for _ in range(3)]
    store.ingest(results)
    ids = [("gw", r.result_id) for r in results]
    with store.engine.begin() as conn:
        owner = tickets.open_ticket(conn, line_id="l", fault_class=first, summary="0 of 10", severity="warning",
                                    evidence=ids[:1], detail={"n": 10}, now=BASE)
        linked = tickets.open_ticket(conn, line_id="l", fault_class=second, summary="3 of 5", evidence=ids[1:2],
                                     opened_by="other-side", detail={"other": 1}, now=BASE)
        again = tickets.open_ticket(conn, line_id="l", fault_class=second, summary="4 of 5", evidence=ids[2:],
                                    opened_by="other-side", now=BASE)
        refreshed = tickets.open_ticket(conn, line_id="l", fault_class=first, summary="0 of 11", detail={"n": 11},
                                        now=BASE)
        assert owner.created and not linked.created and linked.linked and not refreshed.linked
        assert linked.ticket_id == again.ticket_id == refreshed.ticket_id == owner.ticket_id
        (row,) = tickets.listing(conn)
        notes = [(e.kind, e.actor) for e in tickets.events(conn, owner.ticket_id)]
        evidence = {e.result_id for e in tickets.evidence(conn, owner.ticket_id)}
    detail = json.loads(row.detail)
    assert (row.fault_class, row.summary) == (first, "0 of 11")  # the owner's statement, kept current
    assert detail["n"] == 11 and [(x["fault_class"], x["by"], x["summary"]) for x in detail["linked"]] == [
        (second, "other-side", "4 of 5")]
    assert notes == [("opened", "rule"), ("note", "other-side")]  # the link is noted once, not per refresh
    assert evidence == {r.result_id for r in results}


def test_cli_lists_moves_and_shows_tickets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/c.db\n")
    store = Store(f"sqlite:///{tmp_path}/c.db")
    with store.engine.begin() as conn:
        tid = tickets.open_ticket(conn, line_id="acme-1", fault_class="line_down", summary="Line down on acme-1",
                                  location="wan").ticket_id
    store.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "collector.cli", "tickets", *args, "--config", str(cfg),
                               "--actor", "tech-1"], capture_output=True, text=True, cwd=ROOT)

    listed = cli("list")
    assert listed.returncode == 0 and f"#{tid}" in listed.stdout and "line_down" in listed.stdout
    assert cli("ack", str(tid), "--note", "on it").stdout.strip() == f"ticket #{tid} is now acknowledged"
    wrong = cli("verify", str(tid), "--agent", "gw", "--result", "nope")
    assert wrong.returncode == 2 and "no stored result nope from agent gw" in wrong.stderr
    shown = cli("show", str(tid)).stdout
    assert "acknowledged tech-1" in " ".join(shown.split()) and "on it" in shown
    assert cli("list", "--state", "resolved").stdout.strip() == "no tickets"
