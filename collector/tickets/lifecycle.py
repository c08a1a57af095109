"""Repair tickets: open, move through the lifecycle, attach evidence; every change is an event.

    open → acknowledged → dispatched → resolved → verified
      └──────────────┴────────────┴──► resolved      (a fault can clear at any point)

At most one ticket per line and fault class is open (open, acknowledged or dispatched): a partial
unique index enforces it, and `open_ticket` inserts with ON CONFLICT DO NOTHING on that index, so
two collectors deciding at the same moment end with one ticket, and the loser learns its id.
Every function works inside the caller's transaction (rules run inside the ingest transaction).

The promise ledger and the console use the same API: `open_ticket`/`resolve_open` by fault class
with evidence, `transition`, `verify`.

One ticket per fault, also across classes: some classes name the same fault from two sides
(`SAME_FAULT`: a speed shortfall the rules see against the plan and the promise ledger against the
promise). Whichever opens first owns the ticket; the other links to it — its evidence is attached,
its current statement kept in `detail.linked`, and a note says so — instead of opening a second
ticket and a second dispatch. While a ticket is open its owner keeps its summary and detail current
(`refresh`), so a count reads "0 of 11", not the "0 of 10" it opened with.

What the system writes goes in English (`summary`, an event's `note`: the API, notifications) and as
phrases (linecheck/i18n/phrases.py) the console shows in the reader's language: a caller puts its summary's
phrases in `detail["said"]` (the opening event takes them too), a system event carries them in `said`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from collector.store import schema as t
from collector.store.upsert import insert_for
from linecheck.i18n import english, phrase
from linecheck.i18n.phrases import Phrase

Said = Phrase | list[Phrase] | None

OPEN_STATES = t.OPEN_STATES
STATES = ("open", "acknowledged", "dispatched", "resolved", "verified")
NEXT: dict[str, tuple[str, ...]] = {
    "open": ("acknowledged", "dispatched", "resolved"),
    "acknowledged": ("dispatched", "resolved"),
    "dispatched": ("resolved",),
    "resolved": ("verified",),
    "verified": (),
}
_STAMP = {"acknowledged": "acknowledged_at", "dispatched": "dispatched_at", "resolved": "resolved_at",
          "verified": "verified_at"}


class TicketError(Exception):
    """A request the ticket's state does not allow: the message says why in English, `phrase` in any language
    (linecheck/i18n [tickets] error_*)."""

    def __init__(self, key: str, **args: Any) -> None:
        self.phrase = phrase("tickets", key, **args)
        super().__init__(english("tickets", self.phrase))


# Classes that are one fault seen from two sides: a line far below its plan (rules) and a promised
# speed not delivered (promise ledger) send one crew to one line.
SAME_FAULT: dict[str, frozenset[str]] = {
    "speed_below_plan": frozenset({"upgrade_not_delivered"}),
    "upgrade_not_delivered": frozenset({"speed_below_plan"}),
}
MAX_LINKED_SUMMARY = 1000


@dataclass(frozen=True)
class Opened:
    ticket_id: int
    created: bool  # False: a ticket for this line and class was already open (possibly by another collector)
    linked: bool = False  # True: the fault already had a ticket of another class; this class is linked to it


Evidence = tuple[str, str]  # (agent_id, result_id)




def open_ticket(conn: Connection, *, line_id: str, fault_class: str, summary: str, severity: str = "critical",
                location: str | None = None, evidence: Iterable[Evidence] = (), opened_by: str = "rule",
                agent_id: str | None = None, detail: dict[str, Any] | None = None,
                now: datetime | None = None) -> Opened:
    """Open a ticket unless one is open for this line and class, or for a class naming the same fault
    (`SAME_FAULT`: then this class is linked to that ticket). Either way attach the evidence; an open
    ticket takes the new summary and detail (`refresh`)."""
    now = now or datetime.now(UTC)
    carrier = carrying_ticket(conn, line_id, fault_class)
    if carrier is not None:
        refresh(conn, carrier, fault_class, summary, detail, evidence, opened_by, now)
        return Opened(int(carrier.ticket_id), False, carrier.fault_class != fault_class)
    line = conn.execute(select(t.lines.c.tenant_id, t.lines.c.site_id).where(t.lines.c.line_id == line_id)).first()
    stmt = insert_for(conn, t.tickets).values(
        line_id=line_id, fault_class=fault_class, state="open", severity=severity, location=location,
        summary=summary, tenant_id=line.tenant_id if line else None, site_id=line.site_id if line else None,
        agent_id=agent_id, opened_by=opened_by, detail=json.dumps(detail, default=str) if detail else None,
        opened_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["line_id", "fault_class"], index_where=t.OPEN_PREDICATE)
    inserted: int | None = conn.execute(stmt.returning(t.tickets.c.ticket_id)).scalar()
    created = inserted is not None
    ticket_id: int = inserted if inserted is not None else conn.execute(select(t.tickets.c.ticket_id).where(
        t.tickets.c.line_id == line_id, t.tickets.c.fault_class == fault_class,
        t.tickets.c.state.in_(OPEN_STATES))).scalar_one()
    if created:
        _event(conn, ticket_id, "opened", None, "open", opened_by, summary, now=now,
               said=(detail or {}).get("said"))
    add_evidence(conn, ticket_id, evidence, "trigger", now)
    return Opened(ticket_id, created)


def carrying_ticket(conn: Connection, line_id: str, fault_class: str) -> Row[Any] | None:
    """The open ticket that carries this class's fault: its own, else one of a class naming the same fault."""
    classes = [fault_class, *sorted(SAME_FAULT.get(fault_class, ()))]
    rows = conn.execute(select(t.tickets).where(t.tickets.c.line_id == line_id, t.tickets.c.fault_class.in_(classes),
                                                t.tickets.c.state.in_(OPEN_STATES))).all()
    return min(rows, key=lambda r: (r.fault_class != fault_class, r.ticket_id), default=None)


def refresh(conn: Connection, ticket: Row[Any], fault_class: str, summary: str, detail: dict[str, Any] | None,
            evidence: Iterable[Evidence], actor: str, now: datetime) -> None:
    """Bring an open ticket up to date with what `fault_class` says now: the owner's summary and detail
    are replaced; another class's statement goes to detail.linked (a note records the first link).
    Evidence is attached either way. No event for a refresh: counts change with every result."""
    add_evidence(conn, ticket.ticket_id, evidence, "trigger", now)
    current = json.loads(ticket.detail) if ticket.detail else {}
    if ticket.fault_class == fault_class:
        merged = dict(detail or {})
        if current.get("linked"):
            merged["linked"] = current["linked"]
        conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket.ticket_id)
                     .values(summary=summary, detail=json.dumps(merged, default=str) if merged else None,
                             updated_at=now))
        return
    linked = [x for x in current.get("linked", []) if x.get("fault_class") != fault_class]
    first = len(linked) == len(current.get("linked", []))
    linked.append({"fault_class": fault_class, "by": actor, "at": now.isoformat(),
                   "summary": summary[:MAX_LINKED_SUMMARY]})
    current["linked"] = linked
    conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket.ticket_id)
                 .values(detail=json.dumps(current, default=str), updated_at=now))
    if first:
        _event(conn, ticket.ticket_id, "note", None, None, actor,
               f"{fault_class} is the same fault; linked to this ticket: {summary}"[:2000], now=now,
               said=[phrase("tickets", "linked_same_fault", fault_class=fault_class), *(detail or {}).get("said", [])])


def open_ticket_for(conn: Connection, line_id: str, fault_class: str) -> Row[Any] | None:
    return conn.execute(select(t.tickets).where(
        t.tickets.c.line_id == line_id, t.tickets.c.fault_class == fault_class,
        t.tickets.c.state.in_(OPEN_STATES))).first()


def transition(conn: Connection, ticket_id: int, to_state: str, actor: str, note: str | None = None,
               result_id: str | None = None, now: datetime | None = None, said: Said = None) -> Row[Any]:
    """Move a ticket one step along its lifecycle (row-locked, so concurrent moves serialise)."""
    if to_state not in STATES:
        raise TicketError("error_unknown_state", state=to_state[:40], states=", ".join(STATES))
    now = now or datetime.now(UTC)
    stmt = select(t.tickets).where(t.tickets.c.ticket_id == ticket_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise TicketError("error_no_ticket", ticket=ticket_id)
    if to_state not in NEXT[row.state]:
        if not NEXT[row.state]:
            raise TicketError("error_final", ticket=ticket_id, state=row.state, to_state=to_state)
        raise TicketError("error_transition", ticket=ticket_id, state=row.state, to_state=to_state,
                          allowed=[phrase("tickets", "state_name", state=s) for s in NEXT[row.state]])
    conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket_id)
                 .values(state=to_state, updated_at=now, **{_STAMP[to_state]: now}))
    _event(conn, ticket_id, to_state, row.state, to_state, actor, note, result_id, now, said)
    return conn.execute(select(t.tickets).where(t.tickets.c.ticket_id == ticket_id)).one()


def resolve_open(conn: Connection, line_id: str, fault_class: str, actor: str, note: str | None = None,
                 evidence: Sequence[Evidence] = (), now: datetime | None = None, said: Said = None) -> int | None:
    """Resolve the open ticket of this line and class, if any (`said`: why, as phrases). Returns its id."""
    row = open_ticket_for(conn, line_id, fault_class)
    if row is None:
        return None
    now = now or datetime.now(UTC)
    add_evidence(conn, row.ticket_id, evidence, "resolve", now)
    transition(conn, row.ticket_id, "resolved", actor, note, evidence[-1][1] if evidence else None, now, said)
    return int(row.ticket_id)


def verify(conn: Connection, ticket_id: int, agent_id: str, result_id: str, actor: str,
           healthy: bool | None = None, note: str | None = None, now: datetime | None = None) -> Row[Any]:
    """Close a resolved ticket with a technician's post-repair check as evidence.

    The check must be a stored result of the ticket's line, started after the ticket opened, and
    healthy: by `healthy` when the caller judged it for the fault class (the rules do), else by
    its overall verdict.
    """
    ticket = get(conn, ticket_id)
    result = conn.execute(select(t.results).where(t.results.c.agent_id == agent_id,
                                                  t.results.c.result_id == result_id)).first()
    if result is None:
        raise TicketError("error_no_result", result=result_id, agent=agent_id)
    if result.line_id != ticket.line_id:
        raise TicketError("error_other_line", result=result_id, line=result.line_id, ticket_line=ticket.line_id)
    if result.started_at < ticket.opened_at:
        raise TicketError("error_result_too_old", result=result_id)
    ok = healthy if healthy is not None else result.verdict == "healthy"
    if not ok:
        raise TicketError("error_result_not_healthy", result=result_id)
    now = now or datetime.now(UTC)
    add_evidence(conn, ticket_id, [(agent_id, result_id)], "verify", now)
    return transition(conn, ticket_id, "verified", actor, note, result_id, now)


def add_evidence(conn: Connection, ticket_id: int, evidence: Iterable[Evidence], role: str,
                 now: datetime | None = None) -> None:
    rows = [{"ticket_id": ticket_id, "agent_id": a, "result_id": r, "role": role,
             "added_at": now or datetime.now(UTC)} for a, r in dict.fromkeys(evidence)]
    if rows:
        conn.execute(insert_for(conn, t.ticket_evidence).values(rows).on_conflict_do_nothing())


def note(conn: Connection, ticket_id: int, actor: str, text: str, now: datetime | None = None,
         said: Said = None) -> None:
    """A note: a person's own words, or (with `said`) what the system did, e.g. an assignment."""
    get(conn, ticket_id)
    _event(conn, ticket_id, "note", None, None, actor, text, now=now or datetime.now(UTC), said=said)


def system_note(conn: Connection, ticket_id: int, actor: str, key: str, now: datetime | None = None,
                **args: Any) -> None:
    """A note the system writes (linecheck/i18n [tickets] `key`): English in `note`, the phrase in `said`."""
    said = phrase("tickets", key, **args)
    note(conn, ticket_id, actor, english("tickets", said), now, said)


def said_json(said: Said | list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Phrases as stored (a JSON list), or None."""
    if not said:
        return None
    items = said if isinstance(said, list) else [said]
    return [p.as_json() if isinstance(p, Phrase) else p for p in items]


def _event(conn: Connection, ticket_id: int, kind: str, from_state: str | None, to_state: str | None,
           actor: str, note_: str | None, result_id: str | None = None, now: datetime | None = None,
           said: Said | list[dict[str, Any]] = None) -> None:
    phrases = said_json(said)
    conn.execute(t.ticket_events.insert().values(
        ticket_id=ticket_id, at=now or datetime.now(UTC), kind=kind, from_state=from_state, to_state=to_state,
        actor=actor, note=note_, result_id=result_id, said=json.dumps(phrases) if phrases else None))


# --- reading ------------------------------------------------------------------------------------


def get(conn: Connection, ticket_id: int) -> Row[Any]:
    row = conn.execute(select(t.tickets).where(t.tickets.c.ticket_id == ticket_id)).first()
    if row is None:
        raise TicketError("error_no_ticket", ticket=ticket_id)
    return row


def listing(conn: Connection, *, scope: set[str] | None = None, states: Sequence[str] | None = None,
            line_id: str | None = None, fault_class: str | None = None, limit: int = 100) -> list[Row[Any]]:
    stmt = select(t.tickets).order_by(t.tickets.c.opened_at.desc(), t.tickets.c.ticket_id.desc()).limit(limit)
    if scope is not None:
        stmt = stmt.where(t.tickets.c.tenant_id.in_(sorted(scope)))
    if states:
        stmt = stmt.where(t.tickets.c.state.in_(list(states)))
    if line_id:
        stmt = stmt.where(t.tickets.c.line_id == line_id)
    if fault_class:
        stmt = stmt.where(t.tickets.c.fault_class == fault_class)
    return list(conn.execute(stmt))


def events(conn: Connection, ticket_id: int) -> list[Row[Any]]:
    return list(conn.execute(select(t.ticket_events).where(t.ticket_events.c.ticket_id == ticket_id)
                             .order_by(t.ticket_events.c.event_id)))


def evidence(conn: Connection, ticket_id: int) -> list[Row[Any]]:
    return list(conn.execute(select(t.ticket_evidence).where(t.ticket_evidence.c.ticket_id == ticket_id)
                             .order_by(t.ticket_evidence.c.added_at, t.ticket_evidence.c.result_id)))
