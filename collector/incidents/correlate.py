"""Area incidents in the database: hold a fault instead of ticketing it, decide (decide.py), write it.

Wiring (collector/cli/serve.py): the rule engine asks `hold` before it opens a ticket (rules and the
agent_offline sweep), `on_ingest` runs after the rules in the same ingest transaction, `sweep` runs in
the background so held faults are released even when their lines fall silent.

An incident is also a ticket (line_id 'incident:<id>', fault_class 'area_<class>', tenant = the members'
carrier): the dispatch states, the audit trail and the notification outbox work on it unchanged.
Who may put a line into an incident is decided by ingest: a result reaches the correlator only for
the line its gateway is bound to (collector/ingest/binding.py), so a gateway cannot fail or heal
another line, nor open or resolve an incident of lines it does not report for."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from collector.incidents import decide as d
from collector.incidents.topology import label
from collector.rules.engine import AGENT_OFFLINE, Plan, RuleEngine
from collector.store import schema as t
from collector.store.upsert import insert_for
from collector.tickets import lifecycle as tickets
from linecheck.wire import ResultEnvelope

log = logging.getLogger(__name__)

_LOCK = 7414  # pg_advisory_xact_lock: one correlation pass at a time (7411-7413 are taken)
INCIDENT_PREFIX = "incident:"
ACTOR = "incident"


def incident_class(fault_class: str) -> str:
    return f"area_{fault_class}"[:40]


class Correlator:
    def __init__(self, cfg: d.IncidentConfig, rules: RuleEngine | None = None):
        self.cfg = cfg
        self.rules = rules

    # --- the gate the rule engine asks -----------------------------------------------------------
    def hold(self, conn: Connection, line_id: str, fault_class: str, fields: dict[str, Any], now: datetime) -> bool:
        """True: this fault is held (or is part of an open incident) and gets no ticket now.

        False (ticket as before): the class cannot be an area fault, the line names no access path, or
        a ticket already carries this fault (it is refreshed, not held)."""
        if not self.cfg.enabled or fault_class not in self.cfg.classes:
            return False
        if tickets.carrying_ticket(conn, line_id, fault_class) is not None:
            return False
        if conn.execute(select(t.access_nodes.c.line_id).where(t.access_nodes.c.line_id == line_id)
                        .limit(1)).first() is None:
            return False
        member = conn.execute(
            select(t.incident_members.c.incident_id).join(t.incidents, t.incidents.c.incident_id
                                                          == t.incident_members.c.incident_id)
            .where(t.incident_members.c.line_id == line_id, t.incidents.c.fault_class == fault_class,
                   t.incidents.c.state == "open")).scalar()
        if member is not None:  # still (or again) failing: not recovered
            conn.execute(t.incident_members.update().where(t.incident_members.c.incident_id == member,
                                                           t.incident_members.c.line_id == line_id)
                         .values(recovered_at=None, outcome=json.dumps(fields, default=str)))
            return True
        outcome = json.dumps(fields, default=str)
        stmt = insert_for(conn, t.held_faults).values(line_id=line_id, fault_class=fault_class, first_at=now,
                                                      last_at=now, outcome=outcome)
        conn.execute(stmt.on_conflict_do_update(index_elements=["line_id", "fault_class"],
                                                set_={"last_at": now, "outcome": outcome, "recovered_at": None}))
        return True

    # --- ingest: note recoveries, then decide ----------------------------------------------------
    def on_ingest(self, conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        if not self.cfg.enabled:
            return
        self.note_recoveries(conn, fresh, now)
        self.run(conn, now)

    def sweep(self, conn: Connection, now: datetime | None = None) -> dict[str, int]:
        return self.run(conn, now or datetime.now(UTC))

    def note_recoveries(self, conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        """A held or member line whose newest result shows its class healthy has recovered."""
        lines = sorted({e.line_id for e in fresh})
        if not lines:
            return
        watched: dict[str, set[str]] = {}
        for r in conn.execute(select(t.held_faults.c.line_id, t.held_faults.c.fault_class)
                              .where(t.held_faults.c.line_id.in_(lines))):
            watched.setdefault(r.line_id, set()).add(r.fault_class)
        members = conn.execute(
            select(t.incident_members.c.incident_id, t.incident_members.c.line_id, t.incidents.c.fault_class)
            .join(t.incidents, t.incidents.c.incident_id == t.incident_members.c.incident_id)
            .where(t.incident_members.c.line_id.in_(lines), t.incidents.c.state == "open",
                   t.incident_members.c.recovered_at.is_(None))).all()
        for m in members:
            watched.setdefault(m.line_id, set()).add(m.fault_class)
        healed: set[tuple[str, str]] = set()
        for e in sorted(fresh, key=lambda x: x.started_at):
            for cls in watched.get(e.line_id, ()):
                ok = self._healthy(cls, e)
                if ok is True:
                    healed.add((e.line_id, cls))
                elif ok is False:
                    healed.discard((e.line_id, cls))
        for line_id, cls in healed:
            conn.execute(t.held_faults.update().where(t.held_faults.c.line_id == line_id,
                                                      t.held_faults.c.fault_class == cls).values(recovered_at=now))
        for m in members:
            if (m.line_id, m.fault_class) in healed:
                conn.execute(t.incident_members.update().where(
                    t.incident_members.c.incident_id == m.incident_id, t.incident_members.c.line_id == m.line_id)
                    .values(recovered_at=now))

    def _healthy(self, cls: str, e: ResultEnvelope) -> bool | None:
        if cls == AGENT_OFFLINE:
            return True  # the agent reported: it is not offline
        if self.rules is None or cls not in self.rules.rules:
            return None
        obs = self.rules.observe(cls, e, Plan(None, None))
        return None if obs is None else not obs.breach

    # --- one correlation pass ---------------------------------------------------------------------
    def run(self, conn: Connection, now: datetime) -> dict[str, int]:
        if not self.cfg.enabled:
            return {}
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
        snap = self.snapshot(conn, now)
        if not snap.held and not snap.incidents:
            return {}
        actions = d.decide(snap, self.cfg, now)
        counts: dict[str, int] = {}
        for a in actions:
            counts[type(a).__name__] = counts.get(type(a).__name__, 0) + 1
            self._apply(conn, a, snap, now)
        return counts

    def snapshot(self, conn: Connection, now: datetime) -> d.Snapshot:
        held = [d.Held(r.line_id, r.fault_class, r.first_at, r.recovered_at is not None)
                for r in conn.execute(select(t.held_faults))]
        open_rows = conn.execute(select(t.incidents).where(t.incidents.c.state == "open")).all()
        members: dict[int, dict[str, bool]] = {r.incident_id: {} for r in open_rows}
        if open_rows:
            for m in conn.execute(select(t.incident_members).where(
                    t.incident_members.c.incident_id.in_(list(members)))):
                members[m.incident_id][m.line_id] = m.recovered_at is not None
        incidents = [d.OpenIncident(r.incident_id, r.node, r.fault_class, members[r.incident_id]) for r in open_rows]
        lines = sorted({h.line_id for h in held} | {m for i in incidents for m in i.members})
        paths: dict[str, list[str]] = {}
        for i in range(0, len(lines), 500):
            for r in conn.execute(select(t.access_nodes.c.line_id, t.access_nodes.c.node)
                                  .where(t.access_nodes.c.line_id.in_(lines[i:i + 500]))
                                  .order_by(t.access_nodes.c.line_id, t.access_nodes.c.depth)):
                paths.setdefault(r.line_id, []).append(r.node)
        nodes = sorted({n for p in paths.values() for n in p})
        since = now - timedelta(seconds=self.cfg.window_s)
        reporting: dict[str, int] = {}
        fanout: dict[str, int] = {}
        for i in range(0, len(nodes), 200):
            # A line reported if any of its agents did within the window (last_seen is the receive time).
            q = (select(t.access_nodes.c.node, func.count(func.distinct(t.access_nodes.c.line_id)))
                 .join(t.agents, t.agents.c.line_id == t.access_nodes.c.line_id)
                 .where(t.access_nodes.c.node.in_(nodes[i:i + 200]), t.agents.c.last_seen >= since)
                 .group_by(t.access_nodes.c.node))
            reporting.update({n: int(c) for n, c in conn.execute(q)})
            # ... and how many of its child nodes have such lines (a few children failing is no node failure)
            a, b = t.access_nodes.alias("a"), t.access_nodes.alias("b")
            q = (select(a.c.node, func.count(func.distinct(b.c.node)))
                 .join(b, (b.c.line_id == a.c.line_id) & (b.c.depth == a.c.depth + 1))
                 .join(t.agents, t.agents.c.line_id == a.c.line_id)
                 .where(a.c.node.in_(nodes[i:i + 200]), t.agents.c.last_seen >= since)
                 .group_by(a.c.node))
            fanout.update({n: int(c) for n, c in conn.execute(q)})
        return d.Snapshot(paths=paths, reporting=reporting, held=held, incidents=incidents, fanout=fanout)

    def _apply(self, conn: Connection, a: d.Action, snap: d.Snapshot, now: datetime) -> None:
        if isinstance(a, d.Drop):
            self._forget(conn, a.line_id, a.fault_class)
        elif isinstance(a, d.Release):
            self._ticket(conn, a.line_id, a.fault_class, now, None)
            self._forget(conn, a.line_id, a.fault_class)
        elif isinstance(a, d.Join):
            self._join(conn, a.incident_id, [a.line_id], now)
            self._forget(conn, a.line_id, a.fault_class)
            ticket_id = conn.execute(select(t.incidents.c.ticket_id)
                                     .where(t.incidents.c.incident_id == a.incident_id)).scalar()
            if ticket_id is not None:
                tickets.note(conn, ticket_id, ACTOR, f"line {a.line_id} joined the incident", now)
        elif isinstance(a, d.Open):
            self._open(conn, a, now)
        elif isinstance(a, d.Move):
            self._move(conn, a, now)
        elif isinstance(a, d.Merge):
            self._merge(conn, a, now)
        elif isinstance(a, d.Resolve):
            self._resolve(conn, a, now)

    def _forget(self, conn: Connection, line_id: str, fault_class: str) -> None:
        conn.execute(t.held_faults.delete().where(t.held_faults.c.line_id == line_id,
                                                  t.held_faults.c.fault_class == fault_class))

    def _held_fields(self, conn: Connection, line_id: str, fault_class: str) -> dict[str, Any] | None:
        raw = conn.execute(select(t.held_faults.c.outcome).where(
            t.held_faults.c.line_id == line_id, t.held_faults.c.fault_class == fault_class)).scalar()
        return json.loads(raw) if raw else None

    def _ticket(self, conn: Connection, line_id: str, fault_class: str, now: datetime,
                incident: int | None) -> int:
        """The line's own ticket, from what the rules asked for when they were held."""
        if incident is None:
            f = self._held_fields(conn, line_id, fault_class) or {}
        else:
            raw = conn.execute(select(t.incident_members.c.outcome).where(
                t.incident_members.c.incident_id == incident, t.incident_members.c.line_id == line_id)).scalar()
            f = json.loads(raw) if raw else {}
        summary = f.get("summary") or f"{fault_class} on line {line_id}"
        if incident is not None:
            summary = f"{summary} (outlasted area incident #{incident})"
        detail = dict(f.get("detail") or {}) | ({"incident_id": incident} if incident is not None else {})
        opened = tickets.open_ticket(conn, line_id=line_id, fault_class=fault_class, summary=summary,
                                     severity=f.get("severity", "critical"), location=f.get("location"),
                                     evidence=[tuple(x) for x in f.get("evidence", [])], agent_id=f.get("agent_id"),
                                     detail=detail or None, now=now)
        log.warning("ticket #%d for line %s (%s)%s", opened.ticket_id, line_id, fault_class,
                    f" after incident #{incident}" if incident else "")
        return opened.ticket_id

    def _join(self, conn: Connection, incident_id: int, lines: Sequence[str], now: datetime) -> None:
        held = {x: conn.execute(select(t.held_faults.c.outcome).where(t.held_faults.c.line_id == x)
                                .order_by(t.held_faults.c.last_at.desc()).limit(1)).scalar() for x in lines}
        rows = [{"incident_id": incident_id, "line_id": x, "joined_at": now, "outcome": held[x]} for x in lines]
        if rows:
            conn.execute(insert_for(conn, t.incident_members).values(rows).on_conflict_do_nothing())
        conn.execute(t.incidents.update().where(t.incidents.c.incident_id == incident_id).values(updated_at=now))

    def _open(self, conn: Connection, a: d.Open, now: datetime) -> None:
        level = conn.execute(select(t.access_nodes.c.level).where(t.access_nodes.c.node == a.node).limit(1)).scalar()
        district = a.node.split("/", 1)[0]
        incident_id = conn.execute(t.incidents.insert().values(
            node=a.node, level=level or "node", district=district, fault_class=a.fault_class, state="open",
            lines_reporting=a.reporting, opened_at=now, updated_at=now)
            .returning(t.incidents.c.incident_id)).scalar_one()
        evidence: list[tuple[str, str]] = []
        for m in a.members:
            f = self._held_fields(conn, m, a.fault_class) or {}
            evidence += [tuple(x) for x in f.get("evidence", [])][-1:]  # type: ignore[misc]
        self._join(conn, incident_id, a.members, now)
        for m in a.members:
            self._forget(conn, m, a.fault_class)
        summary = (f"Area incident: {a.fault_class} on {len(a.members)} of {a.reporting} reporting lines "
                   f"behind {level or 'node'} {label(a.node)}")
        opened = tickets.open_ticket(
            conn, line_id=f"{INCIDENT_PREFIX}{incident_id}", fault_class=incident_class(a.fault_class),
            summary=summary, severity="critical", location="access", evidence=evidence, opened_by=ACTOR,
            detail={"incident_id": incident_id, "node": a.node, "level": level, "members": list(a.members),
                    "lines_reporting": a.reporting}, now=now)
        tenant = _carrier_of(conn, a.members)
        conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == opened.ticket_id)
                     .values(tenant_id=tenant, site_id=None))
        conn.execute(t.incidents.update().where(t.incidents.c.incident_id == incident_id)
                     .values(ticket_id=opened.ticket_id))
        log.warning("incident #%d opened: %s", incident_id, summary)

    def _move(self, conn: Connection, a: d.Move, now: datetime) -> None:
        row = conn.execute(select(t.incidents).where(t.incidents.c.incident_id == a.incident_id)).one()
        self._join(conn, a.incident_id, a.members, now)
        for m in a.members:
            self._forget(conn, m, row.fault_class)
        if a.node == row.node and not a.members:
            return
        level = conn.execute(select(t.access_nodes.c.level).where(t.access_nodes.c.node == a.node).limit(1)).scalar()
        conn.execute(t.incidents.update().where(t.incidents.c.incident_id == a.incident_id).values(
            node=a.node, level=level or row.level, district=a.node.split("/", 1)[0], lines_reporting=a.reporting,
            updated_at=now))
        count = conn.execute(select(func.count()).select_from(t.incident_members)
                             .where(t.incident_members.c.incident_id == a.incident_id)).scalar_one()
        if row.ticket_id is not None:
            summary = (f"Area incident: {row.fault_class} on {count} of {a.reporting} reporting lines "
                       f"behind {level or row.level} {label(a.node)}")
            conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == row.ticket_id)
                         .values(summary=summary, updated_at=now))
            what = (f"moved from {label(row.node)} to {label(a.node)}; " if a.node != row.node else "") + \
                f"{len(a.members)} more line(s): {', '.join(a.members)}"
            tickets.note(conn, row.ticket_id, ACTOR, what[:2000], now)

    def _merge(self, conn: Connection, a: d.Merge, now: datetime) -> None:
        """Two incidents are one: the source's members move to the target, the source closes."""
        members = conn.execute(select(t.incident_members).where(t.incident_members.c.incident_id == a.source)).all()
        if members:
            conn.execute(insert_for(conn, t.incident_members).values([
                {"incident_id": a.target, "line_id": m.line_id, "joined_at": m.joined_at,
                 "recovered_at": m.recovered_at, "outcome": m.outcome} for m in members]).on_conflict_do_nothing())
        conn.execute(t.incident_members.delete().where(t.incident_members.c.incident_id == a.source))
        conn.execute(t.incidents.update().where(t.incidents.c.incident_id == a.source)
                     .values(state="resolved", resolved_at=now, updated_at=now))
        source_ticket = conn.execute(select(t.incidents.c.ticket_id)
                                     .where(t.incidents.c.incident_id == a.source)).scalar()
        target_ticket = conn.execute(select(t.incidents.c.ticket_id)
                                     .where(t.incidents.c.incident_id == a.target)).scalar()
        if source_ticket is not None and tickets.get(conn, source_ticket).state in tickets.OPEN_STATES:
            tickets.transition(conn, source_ticket, "resolved", ACTOR, f"merged into area incident #{a.target}",
                               now=now)
        if target_ticket is not None:
            tickets.note(conn, target_ticket, ACTOR, f"area incident #{a.source} merged in "
                         f"({len(members)} line(s))", now)

    def _resolve(self, conn: Connection, a: d.Resolve, now: datetime) -> None:
        row = conn.execute(select(t.incidents).where(t.incidents.c.incident_id == a.incident_id)).one()
        for line_id in a.stragglers:
            ticket_id = self._ticket(conn, line_id, row.fault_class, now, a.incident_id)
            conn.execute(t.incident_members.update().where(t.incident_members.c.incident_id == a.incident_id,
                                                           t.incident_members.c.line_id == line_id)
                         .values(ticket_id=ticket_id))
        conn.execute(t.incidents.update().where(t.incidents.c.incident_id == a.incident_id)
                     .values(state="resolved", resolved_at=now, updated_at=now))
        if row.ticket_id is not None:
            ticket = tickets.get(conn, row.ticket_id)
            if ticket.state in tickets.OPEN_STATES:
                note = "members recovered" + (f"; {len(a.stragglers)} still failing got their own tickets: "
                                              f"{', '.join(a.stragglers)}" if a.stragglers else "")
                tickets.transition(conn, row.ticket_id, "resolved", ACTOR, note[:2000], now=now)
        log.warning("incident #%d resolved (%d stragglers)", a.incident_id, len(a.stragglers))

    def close_by_hand(self, conn: Connection, incident_id: int, now: datetime) -> None:
        """A crew closed the incident's ticket: the incident resolves; members still failing get tickets."""
        row = conn.execute(select(t.incidents).where(t.incidents.c.incident_id == incident_id)).first()
        if row is None or row.state != "open":
            return
        failing = tuple(sorted(conn.execute(select(t.incident_members.c.line_id).where(
            t.incident_members.c.incident_id == incident_id, t.incident_members.c.recovered_at.is_(None))).scalars()))
        self._resolve(conn, d.Resolve(incident_id, failing), now)


def _carrier_of(conn: Connection, lines: Sequence[str]) -> str | None:
    """The one carrier all member lines belong to (directly or via an enterprise), else None (operator only)."""
    rows = conn.execute(select(t.lines.c.tenant_id, t.tenants.c.parent_id, t.tenants.c.kind)
                        .join(t.tenants, t.tenants.c.tenant_id == t.lines.c.tenant_id)
                        .where(t.lines.c.line_id.in_(list(lines)))).all()
    carriers = {r.parent_id if r.kind == "enterprise" and r.parent_id else r.tenant_id for r in rows}
    return carriers.pop() if len(carriers) == 1 else None


def incident_of_ticket(conn: Connection, ticket_id: int) -> Any:
    return conn.execute(select(t.incidents).where(t.incidents.c.ticket_id == ticket_id)).first()


def memberships(conn: Connection, line_id: str) -> list[Any]:
    """The incidents a line is or was a member of, newest first (the line page shows them)."""
    return conn.execute(
        select(t.incidents, t.incident_members.c.joined_at, t.incident_members.c.recovered_at,
               t.incident_members.c.ticket_id.label("own_ticket_id"))
        .join(t.incident_members, t.incident_members.c.incident_id == t.incidents.c.incident_id)
        .where(t.incident_members.c.line_id == line_id).order_by(t.incidents.c.opened_at.desc()).limit(20)).all()
