"""The field teams' queue: open incident tickets and line tickets, ordered by impact.

Impact, highest first: lines affected (an incident counts its members), business lines among them
(segments in BUSINESS), promises at stake (lines with a recorded promise), then age. The score is a
plain weighted sum so a dispatcher can read why one job is above another (`why` lists the terms).

Assigning, arriving and closing are ticket events (ticket_events: who, when, what), so the ticket's
audit trail and the notification outbox (kind 'dispatched', 'resolved') carry them unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, false, func, or_, select

from collector.api.accounts import Role
from collector.api.queries import _finding_details
from collector.api.scope import Scope
from collector.api.ticket_queries import visible
from collector.incidents.correlate import INCIDENT_PREFIX, Correlator
from collector.incidents.decide import IncidentConfig
from collector.incidents.topology import label
from collector.store import schema as t
from collector.tickets import lifecycle as tickets
from linecheck.i18n import english, phrase

BUSINESS = frozenset({"sme", "business", "dedicated", "enterprise"})
W_LINE, W_BUSINESS, W_PROMISE, W_HOUR, MAX_HOURS = 10.0, 5.0, 5.0, 1.0, 72.0
MAX_ITEMS = 500


class DispatchError(Exception):
    """A move the job's state does not allow (409) or a job outside the caller's scope (404). The message says
    why in English, `phrase` in any language (linecheck/i18n [tickets] error_*: the console shows it)."""

    def __init__(self, status: int, key: str, **args: Any):
        self.phrase = phrase("tickets", key, **args)
        super().__init__(english("tickets", self.phrase))
        self.status = status


def in_scope(scope: Scope) -> Any:
    """Line tickets the caller sees, and incident tickets of the caller's tenants (a technician: its own)."""
    c = t.tickets.c
    incident = c.line_id.like(f"{INCIDENT_PREFIX}%") & scope.tenant_clause(c.tenant_id)
    if scope.tenants is not None:
        incident = incident & c.tenant_id.is_not(None)
    if scope.principal.role == Role.TECHNICIAN:
        incident = incident & (c.assignee == scope.principal.user_id)
    if scope.principal.role == Role.ENTERPRISE:
        incident = false()  # an enterprise sees its own lines, not the carrier's network
    return or_(visible(scope), incident)


@dataclass
class Job:
    ticket_id: int
    kind: str  # incident | line
    state: str
    fault_class: str
    summary: str
    district: str | None
    node: str | None
    lines_affected: int
    business_lines: int
    promises_at_stake: int
    age_h: float
    score: float
    why: list[str]
    assignee: str | None
    opened_at: datetime
    incident_id: int | None
    line_id: str | None
    detail: dict[str, Any] | None = None  # the ticket's detail (its summary as phrases: `said`)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def queue(conn: Connection, scope: Scope, district: str | None = None, now: datetime | None = None,
          limit: int = MAX_ITEMS) -> list[Job]:
    now = now or datetime.now(UTC)
    c = t.tickets.c
    rows = conn.execute(select(t.tickets).where(c.state.in_(tickets.OPEN_STATES), in_scope(scope))
                        .order_by(c.opened_at).limit(limit * 4)).all()
    incidents = {r.ticket_id: r for r in conn.execute(select(t.incidents).where(
        t.incidents.c.ticket_id.in_([x.ticket_id for x in rows if x.line_id.startswith(INCIDENT_PREFIX)])))}
    members: dict[int, list[str]] = {}
    if incidents:
        for m in conn.execute(select(t.incident_members.c.incident_id, t.incident_members.c.line_id).where(
                t.incident_members.c.incident_id.in_([i.incident_id for i in incidents.values()]))):
            members.setdefault(m.incident_id, []).append(m.line_id)
    all_lines = {x.line_id for x in rows} | {m for ms in members.values() for m in ms}
    info = _line_info(conn, sorted(all_lines))
    jobs = []
    for r in rows:
        inc = incidents.get(r.ticket_id)
        lines = members.get(inc.incident_id, []) if inc is not None else [r.line_id]
        dist = inc.district if inc is not None else info.get(r.line_id, {}).get("district")
        if district and dist != district:
            continue
        business = sum(1 for x in lines if info.get(x, {}).get("segment") in BUSINESS)
        promised = sum(1 for x in lines if info.get(x, {}).get("promises"))
        age_h = max(0.0, (now - r.opened_at).total_seconds() / 3600)
        terms = [(W_LINE * len(lines), f"{len(lines)} line(s)"), (W_BUSINESS * business, f"{business} business"),
                 (W_PROMISE * promised, f"{promised} promise(s) at stake"),
                 (W_HOUR * min(age_h, MAX_HOURS), f"open {age_h:.1f} h")]
        jobs.append(Job(
            ticket_id=r.ticket_id, kind="incident" if inc is not None else "line", state=r.state,
            fault_class=r.fault_class, summary=r.summary, district=dist, node=inc.node if inc is not None else
            info.get(r.line_id, {}).get("node"), lines_affected=len(lines), business_lines=business,
            promises_at_stake=promised, age_h=round(age_h, 2), score=round(sum(x for x, _ in terms), 2),
            why=[w for _, w in terms], assignee=r.assignee, opened_at=r.opened_at,
            incident_id=inc.incident_id if inc is not None else None,
            line_id=None if inc is not None else r.line_id, detail=json.loads(r.detail) if r.detail else None))
    jobs.sort(key=lambda j: (-j.score, j.opened_at, j.ticket_id))
    return jobs[:limit]


def _line_info(conn: Connection, lines: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(lines), 500):
        part = lines[i:i + 500]
        for r in conn.execute(select(t.lines.c.line_id, t.lines.c.district, t.lines.c.segment, t.lines.c.name,
                                     t.lines.c.site_id).where(t.lines.c.line_id.in_(part))):
            out[r.line_id] = {"district": r.district, "segment": r.segment, "name": r.name, "site_id": r.site_id,
                              "promises": 0, "node": None}
        for line_id, n in conn.execute(select(t.promises.c.line_id, func.count()).where(
                t.promises.c.line_id.in_(part)).group_by(t.promises.c.line_id)):
            out.setdefault(line_id, {})["promises"] = int(n)
        deepest = select(t.access_nodes.c.line_id, func.max(t.access_nodes.c.depth).label("d")).where(
            t.access_nodes.c.line_id.in_(part)).group_by(t.access_nodes.c.line_id).subquery()
        for r in conn.execute(select(t.access_nodes.c.line_id, t.access_nodes.c.node).join(
                deepest, (deepest.c.line_id == t.access_nodes.c.line_id) & (deepest.c.d == t.access_nodes.c.depth))):
            out.setdefault(r.line_id, {})["node"] = r.node
    return out


def work_order(conn: Connection, scope: Scope, ticket_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Everything a technician needs on site: what, where, which lines, the evidence, the trail."""
    row = conn.execute(select(t.tickets).where(t.tickets.c.ticket_id == ticket_id, in_scope(scope))).first()
    if row is None:
        raise DispatchError(404, "error_no_job", ticket=ticket_id)
    inc = conn.execute(select(t.incidents).where(t.incidents.c.ticket_id == ticket_id)).first()
    if inc is not None:
        mrows = conn.execute(select(t.incident_members).where(t.incident_members.c.incident_id == inc.incident_id)
                             .order_by(t.incident_members.c.line_id)).all()
        lines = [m.line_id for m in mrows]
        recovered = {m.line_id: m.recovered_at for m in mrows}
    else:
        lines, recovered = [row.line_id], {}
    info = _line_info(conn, lines)
    sites = {r.site_id: r for r in conn.execute(select(t.sites).where(
        t.sites.c.site_id.in_(sorted({v.get("site_id") for v in info.values() if v.get("site_id")}))))}
    evidence = conn.execute(
        select(t.ticket_evidence.c.agent_id, t.ticket_evidence.c.result_id, t.ticket_evidence.c.role,
               t.results.c.started_at, t.results.c.verdict, t.results.c.line_id)
        .join(t.results, (t.results.c.agent_id == t.ticket_evidence.c.agent_id)
              & (t.results.c.result_id == t.ticket_evidence.c.result_id), isouter=True)
        .where(t.ticket_evidence.c.ticket_id == ticket_id).order_by(t.ticket_evidence.c.added_at)).all()
    findings: dict[tuple[str, str], list[str]] = {}
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}  # the same with code and detail (any language)
    details = _finding_details(conn, {(e.agent_id, e.result_id) for e in evidence})
    for e in evidence:
        for f in conn.execute(select(t.findings.c.idx, t.findings.c.code, t.findings.c.severity,
                                     t.findings.c.message).where(
                t.findings.c.agent_id == e.agent_id, t.findings.c.result_id == e.result_id)):
            findings.setdefault((e.agent_id, e.result_id), []).append(f"{f.code}: {f.message}")
            found.setdefault((e.agent_id, e.result_id), []).append(
                {"code": f.code, "severity": f.severity, "message": f.message,
                 "detail": details.get((e.agent_id, e.result_id, f.idx), {})})
    job = next((j for j in queue(conn, scope, now=now) if j.ticket_id == ticket_id), None)
    return {
        "ticket_id": row.ticket_id, "state": row.state, "fault_class": row.fault_class, "summary": row.summary,
        "severity": row.severity, "assignee": row.assignee, "opened_at": row.opened_at,
        "incident": None if inc is None else {"incident_id": inc.incident_id, "node": inc.node,
                                              "node_label": label(inc.node), "level": inc.level,
                                              "district": inc.district, "state": inc.state,
                                              "lines_reporting": inc.lines_reporting},
        "impact": None if job is None else {"score": job.score, "why": job.why, "lines": job.lines_affected,
                                            "business": job.business_lines, "promises": job.promises_at_stake,
                                            "age_h": job.age_h},
        "lines": [{"line_id": x, "name": info.get(x, {}).get("name"), "segment": info.get(x, {}).get("segment"),
                   "district": info.get(x, {}).get("district"), "node": info.get(x, {}).get("node"),
                   "address": getattr(sites.get(info.get(x, {}).get("site_id")), "address", None),
                   "promises": info.get(x, {}).get("promises", 0), "recovered_at": recovered.get(x)}
                  for x in lines],
        "evidence": [{"agent_id": e.agent_id, "result_id": e.result_id, "role": e.role, "line_id": e.line_id,
                      "started_at": e.started_at, "verdict": e.verdict,
                      "findings": findings.get((e.agent_id, e.result_id), []),
                      "finding_rows": found.get((e.agent_id, e.result_id), [])} for e in evidence],
        "trail": [{"at": e.at, "kind": e.kind, "actor": e.actor, "note": e.note, "to_state": e.to_state,
                   "said": e.said} for e in tickets.events(conn, ticket_id)],
        "detail": json.loads(row.detail) if row.detail else None,
    }


def _event(conn: Connection, ticket_id: int, kind: str, actor: str, now: datetime, key: str, **args: Any) -> None:
    """A crew's step on the trail: English in `note`, the phrase in `said` (the console's language)."""
    said = phrase("tickets", key, **args)
    conn.execute(t.ticket_events.insert().values(ticket_id=ticket_id, at=now, kind=kind, actor=actor,
                                                 note=english("tickets", said)[:2000],
                                                 said=json.dumps(tickets.said_json(said))))


def _own(conn: Connection, scope: Scope, ticket_id: int) -> Any:
    stmt = select(t.tickets).where(t.tickets.c.ticket_id == ticket_id, in_scope(scope))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise DispatchError(404, "error_no_job", ticket=ticket_id)
    if row.state not in tickets.OPEN_STATES:
        raise DispatchError(409, "error_job_closed", ticket=ticket_id, state=row.state)
    return row


def assign(conn: Connection, scope: Scope, ticket_id: int, assignee: str, actor: str,
           now: datetime | None = None) -> None:
    """Send a crew: the assignee is recorded, the ticket goes to 'dispatched' (notified like any move)."""
    now = now or datetime.now(UTC)
    row = _own(conn, scope, ticket_id)
    conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket_id).values(assignee=assignee,
                                                                                       updated_at=now))
    _event(conn, ticket_id, "assigned", actor, now, "assigned", user=assignee)
    if row.state != "dispatched":
        said = phrase("tickets", "crew_dispatched", user=assignee)
        tickets.transition(conn, ticket_id, "dispatched", actor, english("tickets", said), now=now, said=said)


def arrive(conn: Connection, scope: Scope, ticket_id: int, actor: str, note: str | None = None,
           now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    row = _own(conn, scope, ticket_id)
    if row.state != "dispatched":
        raise DispatchError(409, "error_no_crew", ticket=ticket_id, state=row.state)
    if note:
        _event(conn, ticket_id, "arrived", actor, now, "on_site_note", note=note[:1900])
    else:
        _event(conn, ticket_id, "arrived", actor, now, "on_site")
    conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket_id).values(updated_at=now))


def close(conn: Connection, scope: Scope, ticket_id: int, actor: str, note: str | None = None,
          now: datetime | None = None, cfg: IncidentConfig | None = None) -> None:
    """The crew is done: the ticket resolves; an incident resolves too, its members still failing get
    their own tickets (the correlator's straggler path)."""
    now = now or datetime.now(UTC)
    _own(conn, scope, ticket_id)
    if note:
        _event(conn, ticket_id, "closed", actor, now, "work_done_note", note=note[:1900])
    else:
        _event(conn, ticket_id, "closed", actor, now, "work_done")
    inc = conn.execute(select(t.incidents.c.incident_id).where(t.incidents.c.ticket_id == ticket_id)).scalar()
    tickets.transition(conn, ticket_id, "resolved", actor, note, now=now)
    if inc is not None:
        Correlator(cfg or IncidentConfig()).close_by_hand(conn, inc, now)
