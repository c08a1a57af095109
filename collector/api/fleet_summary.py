"""The overview's fleet-wide counts, read from summaries instead of counted over the fleet per request.

- Lines per health: line_state, one row per line (collector/store/line_state.py), kept at write time.
- Results in 24 h: results_hourly (per hour and tenant, kept at ingest), in whole hours: from the first
  full hour inside the last 24 h (so 23-24 h of results, never one older than 24 h). The part-hour before
  it is not counted raw: results are partitioned by the day they started, not by when they arrived, so
  counting it scans every day's partition (0.9 s at 10M results, bench/api_at_size.py).
- Agents and agents online: agent_counts, per tenant, recomputed every AGENT_COUNTS_EVERY_S by each
  collector (`refresh_agent_counts`; "online" depends on the clock, so it cannot be kept at write
  time). Read while at most AGENT_COUNTS_MAX_AGE old, counted live otherwise (no collector running).
A technician's scope is a few assigned lines, not tenants: its counts are always live (and small).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, case, delete, func, select

from collector.api.accounts import Role
from collector.api.queries import online_clause
from collector.api.scope import Scope
from collector.store import schema as t
from collector.store.upsert import insert_for

AGENT_COUNTS_EVERY_S = 15.0
AGENT_COUNTS_MAX_AGE = timedelta(seconds=4 * AGENT_COUNTS_EVERY_S)


def _live_agent_counts(conn: Connection, scope: Scope, now: datetime) -> tuple[int, int]:
    online = case((online_clause(now), 1), else_=0)
    total, up = conn.execute(select(func.count(), func.coalesce(func.sum(online), 0))
                             .where(scope.agents_clause())).one()
    return int(total), int(up)


def refresh_agent_counts(conn: Connection, now: datetime | None = None) -> int:
    """Recount agents and agents online per tenant of their line (one grouped scan). Returns the rows written."""
    now = now or datetime.now(UTC)
    a, ls, c = t.agents.c, t.line_state.c, t.agent_counts
    tenant = func.coalesce(ls.tenant_id, "")
    online = case((online_clause(now), 1), else_=0)
    rows = [{"tenant_id": k, "agents": int(n), "agents_online": int(up), "computed_at": now}
            for k, n, up in conn.execute(select(tenant, func.count(), func.coalesce(func.sum(online), 0))
                                         .select_from(t.agents.outerjoin(t.line_state, ls.line_id == a.line_id))
                                         .group_by(tenant))]
    # Upsert, then drop tenants that have no agent any more: several collectors may refresh at once.
    if rows:
        stmt = insert_for(conn, c)
        conn.execute(stmt.on_conflict_do_update(index_elements=[c.c.tenant_id], set_={
            k: stmt.excluded[k] for k in ("agents", "agents_online", "computed_at")}), rows)
    conn.execute(delete(c).where(c.c.tenant_id.not_in([r["tenant_id"] for r in rows])))
    return len(rows)


def agent_counts(conn: Connection, scope: Scope, now: datetime | None = None) -> tuple[int, int]:
    """(agents, agents online) in the caller's scope."""
    now = now or datetime.now(UTC)
    if scope.principal.role != Role.TECHNICIAN:
        c = t.agent_counts.c
        computed = conn.execute(select(func.min(c.computed_at))).scalar()
        if computed is not None and computed >= now - AGENT_COUNTS_MAX_AGE:
            total, up = conn.execute(select(func.coalesce(func.sum(c.agents), 0),
                                            func.coalesce(func.sum(c.agents_online), 0))
                                     .where(scope.tenant_clause(c.tenant_id))).one()
            return int(total), int(up)
    return _live_agent_counts(conn, scope, now)


def results_received_since(conn: Connection, scope: Scope, since: datetime) -> tuple[int, datetime]:
    """(results received from `from_`, `from_`): the first whole hour at or after `since` from results_hourly;
    a technician's few lines are counted raw from `since` itself."""
    if scope.principal.role == Role.TECHNICIAN:
        r = t.results.c
        return int(conn.execute(select(func.count()).select_from(t.results).where(
            r.received_at >= since, scope.lines_clause(r.line_id))).scalar_one()), since
    whole = since.replace(minute=0, second=0, microsecond=0)
    if whole < since:
        whole += timedelta(hours=1)
    h = t.results_hourly.c
    counted = conn.execute(select(func.coalesce(func.sum(h.results), 0)).where(
        h.hour >= whole, scope.tenant_clause(h.tenant_id))).scalar_one()
    return int(counted), whole
