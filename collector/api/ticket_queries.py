"""Tickets as the API and console read them: scoped, paged, with events and evidence.

Changes go through collector.tickets.lifecycle (lifecycle rules, events, row locks); this module only
decides what the caller may see and reads pages of it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, select

from collector.api.accounts import Role
from collector.api.pagination import PageParams
from collector.api.scope import Scope
from collector.store import schema as t
from collector.tickets import lifecycle as tickets

# Who may move tickets and write on them: the carrier's admins and the technicians doing the work.
WORKERS = (Role.CARRIER_ADMIN, Role.TECHNICIAN)
_TIMES = ("opened_at", "updated_at", "acknowledged_at", "dispatched_at", "resolved_at", "verified_at")


def visible(scope: Scope) -> Any:
    clause = scope.lines_clause(t.tickets.c.line_id)
    if scope.principal.role == Role.TECHNICIAN:
        # A technician's own tickets count even on a line nobody assigned to them.
        clause = clause | ((t.tickets.c.assignee == scope.principal.user_id)
                           & scope.tenant_clause(t.tickets.c.tenant_id))
    return clause


def ticket_view(row: Any) -> dict[str, Any]:
    out = {k: row._mapping[k] for k in ("ticket_id", "line_id", "fault_class", "state", "severity", "location",
                                        "summary", "tenant_id", "site_id", "agent_id", "opened_by", "assignee",
                                        *_TIMES)}
    out["next_states"] = list(tickets.NEXT[row.state])
    return out


def list_tickets(conn: Connection, scope: Scope, params: PageParams, states: list[str] | None = None,
                 line_id: str | None = None, fault_class: str | None = None,
                 assignee: str | None = None) -> tuple[list[dict[str, Any]], int]:
    c = t.tickets.c
    stmt = select(t.tickets).where(visible(scope)).order_by(c.opened_at.desc(), c.ticket_id.desc())
    if states:
        stmt = stmt.where(c.state.in_(states))
    if line_id:
        stmt = stmt.where(c.line_id == line_id)
    if fault_class:
        stmt = stmt.where(c.fault_class == fault_class)
    if assignee:
        stmt = stmt.where(c.assignee == assignee)
    total = conn.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    rows = conn.execute(stmt.limit(params.per_page).offset(params.offset)).all()
    return [ticket_view(r) for r in rows], int(total)


def counts_by_state(conn: Connection, scope: Scope) -> dict[str, int]:
    c = t.tickets.c
    got = dict(conn.execute(select(c.state, func.count()).where(visible(scope)).group_by(c.state)).all())
    return {s: int(got.get(s, 0)) for s in tickets.STATES}


def find(conn: Connection, scope: Scope, ticket_id: int) -> Any | None:
    return conn.execute(select(t.tickets).where(t.tickets.c.ticket_id == ticket_id, visible(scope))).first()


def detail(conn: Connection, row: Any) -> dict[str, Any]:
    out = ticket_view(row)
    out["detail"] = json.loads(row.detail) if row.detail else None
    out["events"] = [{"at": e.at, "kind": e.kind, "from_state": e.from_state, "to_state": e.to_state,
                      "actor": e.actor, "note": e.note, "result_id": e.result_id, "said": e.said}
                     for e in tickets.events(conn, row.ticket_id)]
    ev = tickets.evidence(conn, row.ticket_id)
    verdicts = {}
    if ev:
        rs = conn.execute(select(t.results.c.agent_id, t.results.c.result_id, t.results.c.verdict,
                                 t.results.c.started_at, t.results.c.trigger)
                          .where(t.results.c.result_id.in_([e.result_id for e in ev]))).all()
        verdicts = {(r.agent_id, r.result_id): r for r in rs}
    out["evidence"] = []
    for e in ev:
        r = verdicts.get((e.agent_id, e.result_id))
        out["evidence"].append({"agent_id": e.agent_id, "result_id": e.result_id, "role": e.role,
                                "added_at": e.added_at, "verdict": r.verdict if r else None,
                                "started_at": r.started_at if r else None,
                                "trigger": r.trigger if r else None})
    return out


def open_counts(conn: Connection, line_ids: list[str]) -> dict[str, int]:
    if not line_ids:
        return {}
    c = t.tickets.c
    stmt = (select(c.line_id, func.count()).where(c.line_id.in_(line_ids), c.state.in_(t.OPEN_STATES))
            .group_by(c.line_id))
    return {k: int(v) for k, v in conn.execute(stmt)}


def verification_candidates(conn: Connection, row: Any, limit: int = 10) -> list[dict[str, Any]]:
    """Healthy results of the ticket's line taken after it opened: what can verify the repair."""
    r = t.results.c
    rows = conn.execute(select(r.agent_id, r.result_id, r.started_at, r.trigger, r.verdict)
                        .where(r.line_id == row.line_id, r.started_at >= row.opened_at, r.verdict == "healthy")
                        .order_by(r.started_at.desc()).limit(limit)).all()
    return [{"agent_id": x.agent_id, "result_id": x.result_id, "started_at": x.started_at,
             "trigger": x.trigger} for x in rows]
