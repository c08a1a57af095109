"""The read side shared by the API and the console: every query takes a Scope and pages in SQL.

Nothing here loads the whole fleet: lists are paged by the database, and per-line figures
(latest verdict, agents online) are computed only for the lines of the page being shown.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, func, or_, select

from collector.api.pagination import PageParams, paginate
from collector.api.scope import Scope
from collector.store import documents
from collector.store import schema as t

HEALTH = ("healthy", "problems", "unknown", "no_data")
# How long after its last report an agent with no status message still counts as online.
ONLINE_GRACE = timedelta(hours=2)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# --- lines ---------------------------------------------------------------------------------------


def fleet_lines(scope: Scope) -> Select:  # type: ignore[type-arg]
    """The lines in scope (for the operator also lines that report but are not registered), with registry data."""
    ls, lines = t.line_state.c, t.lines.c
    return (select(ls.line_id, lines.tenant_id, func.coalesce(lines.site_id, ls.site_id).label("site_id"), lines.name,
                   lines.district, lines.segment, lines.plan_down_mbps, lines.plan_up_mbps)
            .select_from(t.line_state.outerjoin(t.lines, lines.line_id == ls.line_id)).where(scope.fleet_clause()))


def list_lines(conn: Connection, scope: Scope, params: PageParams, q: str | None = None,
               tenant: str | None = None, district: str | None = None, status: str | None = None,
               segment: str | None = None, after: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """One page of lines ordered by line id, and how many match.

    line_state holds one row per line with its tenant, district and newest verdict, so the count and
    the choice of the page's lines read that table alone (the registry is joined only to filter on
    segment; text search goes through the registry's search index) and registry data is fetched for
    the page's lines only. `after` (a line id) pages by key instead of by offset: the page starts
    after that line, at the same cost wherever it is.
    """
    ls, lines = t.line_state.c, t.lines.c
    conds = [scope.fleet_clause()]
    if tenant:
        conds.append(ls.tenant_id == tenant)
    if status:
        conds.append(ls.verdict.is_(None) if status == "no_data" else ls.verdict == status)
    if q:
        # Registered lines by the registry's search index (trigram on PostgreSQL), plus the few lines
        # that report without being registered (by the tenant index's null entries).
        like = _like(q)
        found = select(lines.line_id).where(or_(*(col.ilike(like, escape="\\")
                                                  for col in (lines.line_id, lines.name, lines.site_id))))
        stray = select(ls.line_id).where(ls.tenant_id.is_(None), or_(ls.line_id.ilike(like, escape="\\"),
                                                                      ls.site_id.ilike(like, escape="\\")))
        conds.append(ls.line_id.in_(found.union_all(stray)))
    source: Any = t.line_state
    if segment:  # joined with the district, on the registry's (district, segment) index
        source = t.line_state.outerjoin(t.lines, lines.line_id == ls.line_id)
        conds.append(lines.segment == segment)
    if district:
        conds.append((lines.district if source is not t.line_state else ls.district) == district)
    total = conn.execute(select(func.count()).select_from(source).where(*conds)).scalar_one()
    picked = select(ls.line_id).select_from(source).where(*conds).order_by(ls.line_id).limit(params.per_page)
    picked = picked.where(ls.line_id > after) if after else picked.offset(params.offset)
    page = picked.subquery("page")
    stmt = (select(ls.line_id, lines.tenant_id, func.coalesce(lines.site_id, ls.site_id).label("site_id"), lines.name,
                   lines.district, lines.segment, lines.plan_down_mbps, lines.plan_up_mbps,
                   func.coalesce(ls.verdict, "no_data").label("health"), ls.started_at.label("last_result_at"))
            .select_from(page.join(t.line_state, ls.line_id == page.c.line_id)
                         .outerjoin(t.lines, lines.line_id == ls.line_id))
            .order_by(ls.line_id))
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    _add_agent_state(conn, rows)
    return rows, int(total)


def _add_agent_state(conn: Connection, rows: list[dict[str, Any]]) -> None:
    ids = [r["line_id"] for r in rows]
    agents: dict[str, list[dict[str, Any]]] = {}
    if ids:
        for a in conn.execute(select(t.agents).where(t.agents.c.line_id.in_(ids))).mappings():
            agents.setdefault(a["line_id"], []).append(agent_view(dict(a)))
    from collector.api.promise_queries import worst_by_line

    promises = worst_by_line(conn, ids)
    c = t.tickets.c
    tickets_open = dict(conn.execute(select(c.line_id, func.count()).where(
        c.line_id.in_(ids), c.state.in_(t.OPEN_STATES)).group_by(c.line_id)).all()) if ids else {}
    for r in rows:
        mine = agents.get(r["line_id"], [])
        r["agents_online"] = sum(1 for a in mine if a["online"])
        r["agents"] = len(mine)
        r["open_tickets"] = int(tickets_open.get(r["line_id"], 0))
        r["promise"] = promises.get(r["line_id"])


def line_detail(conn: Connection, scope: Scope, line_id: str) -> dict[str, Any] | None:
    if not scope.can_see_line(conn, line_id):
        return None
    reg = conn.execute(select(t.lines).where(t.lines.c.line_id == line_id)).mappings().first()
    agents = [agent_view(dict(a)) for a in conn.execute(
        select(t.agents).where(t.agents.c.line_id == line_id).order_by(t.agents.c.agent_id)).mappings()]
    add_delivery(conn, agents)
    if reg is None and not agents:
        return None
    ls = t.line_state.c
    latest = conn.execute(select(t.results).join(t.line_state, and_(
        ls.agent_id == t.results.c.agent_id, ls.result_id == t.results.c.result_id,
        ls.started_at == t.results.c.started_at)).where(ls.line_id == line_id)  # started_at: one day partition
    ).mappings().first()
    detail: dict[str, Any] = {"line_id": line_id, "registered": reg is not None, "agents": agents,
                              "latest": result_view(dict(latest)) if latest else None}
    for key in ("tenant_id", "site_id", "name", "district", "segment", "plan_down_mbps", "plan_up_mbps"):
        detail[key] = reg[key] if reg else None
    if reg is None and agents:
        detail["site_id"] = agents[0]["site_id"]
    detail["health"] = latest["verdict"] if latest else "no_data"
    c = t.tickets.c
    detail["open_tickets"] = [
        {"ticket_id": x.ticket_id, "fault_class": x.fault_class, "state": x.state, "summary": x.summary,
         "opened_at": x.opened_at, "detail": x.detail}
        for x in conn.execute(select(c.ticket_id, c.fault_class, c.state, c.summary, c.opened_at, c.detail).where(
            c.line_id == line_id, c.state.in_(t.OPEN_STATES)).order_by(c.opened_at.desc()).limit(50))]
    return detail


def result_view(row: dict[str, Any], with_payload: bool = True) -> dict[str, Any]:
    out = {k: row[k] for k in ("agent_id", "result_id", "seq", "line_id", "site_id", "trigger", "verdict",
                               "agent_version", "started_at", "ended_at", "received_at")}
    out["clock_synced"] = None if row["clock_synced"] is None else bool(row["clock_synced"])
    if with_payload:
        envelope = documents.envelope_dict(row)
        out["checks"] = envelope.get("checks", [])
        out["findings"] = envelope.get("findings", [])
    return out


def line_results(conn: Connection, line_id: str, params: PageParams,
                 since: datetime | None = None) -> tuple[list[dict[str, Any]], int]:
    r = t.results.c
    stmt = select(r.agent_id, r.result_id, r.seq, r.line_id, r.site_id, r.trigger, r.verdict, r.agent_version,
                  r.started_at, r.ended_at, r.received_at, r.clock_synced).where(r.line_id == line_id)
    if since:
        stmt = stmt.where(r.started_at >= since)
    rows, total = paginate(conn, stmt.order_by(r.started_at.desc()), params)
    return [result_view(row, with_payload=False) for row in rows], total


def line_findings(conn: Connection, line_id: str, params: PageParams) -> tuple[list[dict[str, Any]], int]:
    """A page of the line's findings, newest first, each with its `detail` (the parameters its sentence is
    rendered from in the reader's language: linecheck/i18n [findings])."""
    f = t.findings.c
    stmt = (select(f.agent_id, f.result_id, f.idx, f.started_at, f.code, f.severity, f.check_kind, f.location,
                   f.message).where(f.line_id == line_id).order_by(f.started_at.desc(), f.idx))
    rows, total = paginate(conn, stmt, params)
    details = _finding_details(conn, {(r["agent_id"], r["result_id"]) for r in rows})
    for r in rows:
        r["detail"] = details.get((r["agent_id"], r["result_id"], r.pop("idx")), {})
    return rows, total


def _finding_details(conn: Connection, results: set[tuple[str, str]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(agent, result, index) -> the finding's detail, from the stored envelopes (one read per result: the
    findings table keeps what rules query, the envelope keeps the evidence)."""
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    r = t.results.c
    for agent_id, result_id in sorted(results):
        row = conn.execute(select(t.results).where(r.agent_id == agent_id, r.result_id == result_id)).mappings().first()
        try:
            found = documents.envelope_dict(row).get("findings", []) if row else []
        except (ValueError, AttributeError):
            continue  # a row the store kept is valid JSON; a damaged one shows without detail
        for i, f in enumerate(found if isinstance(found, list) else []):
            detail = f.get("detail") if isinstance(f, dict) else None
            out[(agent_id, result_id, i)] = detail if isinstance(detail, dict) else {}
    return out


def one_result(conn: Connection, scope: Scope, agent_id: str, result_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(t.results).where(t.results.c.agent_id == agent_id,
                                               t.results.c.result_id == result_id,
                                               scope.lines_clause(t.results.c.line_id))).mappings().first()
    return result_view(dict(row)) if row else None


MAX_POINTS = 5000


def line_series(conn: Connection, line_id: str, names: list[str], since: datetime) -> dict[str, list[tuple]]:
    """Metric values of one line over time, oldest first: {name: [(started_at, value), ...]}."""
    m = t.metrics.c  # the metrics view carries line and start: no join to checks (a second expansion)
    stmt = (select(m.started_at, m.name, m.value)
            .where(m.line_id == line_id, m.started_at >= since, m.name.in_(names))
            .order_by(m.started_at).limit(MAX_POINTS))
    series: dict[str, list[tuple]] = {n: [] for n in names}
    for started_at, name, value in conn.execute(stmt):
        series[name].append((started_at, value))
    return series


# --- agents --------------------------------------------------------------------------------------


def agent_view(a: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    last_seen = a.get("last_seen")
    status = a.get("status")
    # Without a status message (an agent that never sent one), judge by the last report.
    online = (last_seen is not None and now - last_seen < ONLINE_GRACE) if status is None else status == "online"
    return {"agent_id": a["agent_id"], "line_id": a["line_id"], "site_id": a["site_id"], "online": online,
            "status": status, "status_at": a.get("status_at"), "first_seen": a.get("first_seen"),
            "last_seen": last_seen, "max_seq": a.get("max_seq") or 0, "result_count": a.get("result_count") or 0,
            "missing": None, "spool_backlog": None}  # filled by add_delivery


def online_clause(now: datetime | None = None) -> Any:
    """The SQL twin of agent_view's `online`."""
    a = t.agents.c
    since = (now or datetime.now(UTC)) - ONLINE_GRACE
    # Written so that it is never NULL: NOT(online) must be exactly the offline agents.
    return or_(func.coalesce(a.status, "") == "online",
               and_(a.status.is_(None), a.last_seen.is_not(None), func.coalesce(a.last_seen >= since, False)))


def list_agents(conn: Connection, scope: Scope, params: PageParams, status: str | None = None,
                q: str | None = None) -> tuple[list[dict[str, Any]], int]:
    a = t.agents.c
    stmt = select(t.agents).where(scope.agents_clause())
    if status == "online":
        stmt = stmt.where(online_clause())
    elif status == "offline":
        stmt = stmt.where(~online_clause())
    if q:
        stmt = stmt.where(or_(a.agent_id.ilike(_like(q), escape="\\"), a.line_id.ilike(_like(q), escape="\\")))
    rows, total = paginate(conn, stmt.order_by(a.agent_id), params)
    views = [agent_view(r) for r in rows]
    add_delivery(conn, views)
    return views, total


def add_delivery(conn: Connection, views: list[dict[str, Any]]) -> None:
    """Seq gaps (collector.store.delivery) and the spool backlog each agent last reported, for one page of agents."""
    ids = [v["agent_id"] for v in views]
    if not ids:
        return
    g = t.seq_gaps.c
    missing = dict(conn.execute(select(g.agent_id, func.sum(g.last_seq - g.first_seq + 1))
                                .where(g.agent_id.in_(ids)).group_by(g.agent_id)).all())
    # The agent reports its spool in an `agent` pseudo-check of each result; ingest keeps the newest one's
    # on the agents row (migration 14): reading it from the result's document meant finding that result by
    # (agent, seq) in every day partition.
    a = t.agents.c
    backlog = dict(conn.execute(select(a.agent_id, a.spool_backlog).where(a.agent_id.in_(ids))).all())
    for v in views:
        v["missing"] = int(missing.get(v["agent_id"]) or 0)
        value = backlog.get(v["agent_id"])
        v["spool_backlog"] = None if value is None else int(value)


# --- quarantine ----------------------------------------------------------------------------------


def list_quarantine(conn: Connection, scope: Scope, params: PageParams,
                    agent_id: str | None = None) -> tuple[list[dict[str, Any]], int]:
    q = t.quarantine.c
    stmt = (select(q.id, q.received_at, q.topic, q.agent_id, q.reason, q.payload_bytes)
            .where(scope.quarantine_clause()).order_by(q.id.desc()))
    if agent_id:
        stmt = stmt.where(q.agent_id == agent_id)
    rows, total = paginate(conn, stmt, params)
    return rows, total


def quarantined(conn: Connection, scope: Scope, item_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(t.quarantine).where(t.quarantine.c.id == item_id, scope.quarantine_clause())
                       ).mappings().first()
    if row is None:
        return None
    out = dict(row)
    raw = bytes(out.pop("payload"))
    out["payload_text"] = raw.decode("utf-8", errors="replace")
    return out


# --- overview ------------------------------------------------------------------------------------


def health_counts(conn: Connection, scope: Scope, by_district: bool = False) -> list[tuple[Any, ...]]:
    """Lines per health of their newest result: [(health, n)], or [(district, health, n)] (line_state alone)."""
    ls = t.line_state.c
    health = func.coalesce(ls.verdict, "no_data")
    keys = [ls.district, health] if by_district else [health]
    return [tuple(r) for r in conn.execute(select(*keys, func.count()).where(scope.fleet_clause()).group_by(*keys))]


def overview(conn: Connection, scope: Scope) -> dict[str, Any]:
    """Counts over the caller's lines, each from a summary kept for it (collector/api/fleet_summary.py)."""
    from collector.api import fleet_summary

    by_health = {h: 0 for h in HEALTH}
    for health, n in health_counts(conn, scope):
        by_health[health] = int(n)
    agents_total, agents_online = fleet_summary.agent_counts(conn, scope)
    results_24h, since = fleet_summary.results_received_since(conn, scope, datetime.now(UTC) - timedelta(hours=24))
    return {"lines": sum(by_health.values()), "health": by_health, "agents": agents_total,
            "agents_online": agents_online, "results_24h": results_24h, "results_24h_since": since}
