"""line_state: one row per line the collector knows, with its tenant, district and newest result.

Why: the fleet list's health column and filter and the overview's counts need every line's newest
result. Looking it up per line grows with the fleet times its history; one narrow row per line,
kept up to date where results and the registry change, makes those reads one index scan.

Who writes it, always inside the transaction that makes the change (never as an ingest hook: a
failure must abort the batch, so no receipt goes out while the row is stale):
- ingest (`record`): the newly stored results replace a line's newest one where they are newer,
  "newer" meaning a greater (started_at, result_id) — the order the line detail lists results in,
  the result id deciding ties — so a late result with an older start changes nothing, nor does a
  re-sent one. A line seen for the first time and not registered gets a row with no tenant.
- the registry (`registered`, `unregistered`): copies a line's tenant and district on import,
  clears them when the line leaves the registry.
- retention (`refresh`): re-derives lines whose newest result it deleted.
`count_received` adds the batch to results_hourly (per hour and tenant) in the same transaction.
Ingest and the registry touch different columns of the same row through upserts on its key, so
whichever commits first, the other one's change is applied on top of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, exists, func, select, tuple_

from collector.store import schema as t
from collector.store.timeflags import clock_flag
from collector.store.upsert import insert_for
from linecheck.wire import ResultEnvelope

HOURLY_KEEP = timedelta(days=2)  # the overview needs 24 h; a day more for late readers
RESULT_COLUMNS = ("agent_id", "result_id", "site_id", "started_at", "verdict")
_CHUNK = 500




def record(conn: Connection, fresh: Sequence[ResultEnvelope], received_at: datetime | None = None) -> None:
    """Let newly stored results replace their line's newest result where they are newer.

    A result dated ahead of the collector's clock (flagged `future`, collector/store/timeflags.py) never becomes
    the newest: ranked by its start it would stay newest for ever (one result dated 9999 froze a line's
    health). It is stored and listed, flagged, like any other."""
    now = received_at or datetime.now(UTC)
    newest: dict[str, ResultEnvelope] = {}
    for e in fresh:
        if clock_flag(e.started_at, e.ended_at, now) == "future":
            continue
        old = newest.get(e.line_id)
        if old is None or (e.started_at, e.result_id) > (old.started_at, old.result_id):
            newest[e.line_id] = e
    if not newest:
        return
    ls = t.line_state.c
    stmt = insert_for(conn, t.line_state)
    # One row per line (ON CONFLICT may touch a row once per statement); sorted, so two collectors
    # updating the same lines take their row locks in the same order.
    rows = [{"line_id": e.line_id, "agent_id": e.agent_id, "result_id": e.result_id, "site_id": e.site_id,
             "started_at": e.started_at, "verdict": e.verdict.value} for _, e in sorted(newest.items())]
    # A row without a result (a registered line reporting for the first time) takes any; otherwise only newer.
    newer = ls.result_id.is_(None) | (tuple_(ls.started_at, ls.result_id)
                                      < tuple_(stmt.excluded.started_at, stmt.excluded.result_id))
    conn.execute(stmt.on_conflict_do_update(index_elements=[ls.line_id],
                                            set_={c: stmt.excluded[c] for c in RESULT_COLUMNS}, where=newer), rows)


def count_received(conn: Connection, fresh: Sequence[ResultEnvelope], received_at: datetime, shard: int) -> None:
    """Add the newly stored results to results_hourly, per tenant of their line ('' = not registered).

    Run after record() (so every line has its row) and last in the transaction: the counter rows are
    the ones other collectors could wait on, and they stay locked only until the commit.
    """
    if not fresh:
        return
    ls, h = t.line_state.c, t.results_hourly
    line_ids = sorted({e.line_id for e in fresh})
    tenant: dict[str, str | None] = {}
    for start in range(0, len(line_ids), _CHUNK):
        tenant.update(conn.execute(select(ls.line_id, ls.tenant_id).where(
            ls.line_id.in_(line_ids[start:start + _CHUNK]))).all())
    counts: dict[str, int] = {}
    for e in fresh:
        key = tenant.get(e.line_id) or ""
        counts[key] = counts.get(key, 0) + 1
    hour = received_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)  # received_at is aware
    stmt = insert_for(conn, h)
    conn.execute(stmt.on_conflict_do_update(index_elements=[h.c.hour, h.c.tenant_id, h.c.shard],
                                            set_={"results": h.c.results + stmt.excluded.results}),
                 [{"hour": hour, "tenant_id": k, "shard": shard, "results": n} for k, n in sorted(counts.items())])


def prune_hourly(conn: Connection, now: datetime) -> int:
    """Drop hourly counts the overview no longer reads."""
    h = t.results_hourly.c
    return conn.execute(t.results_hourly.delete().where(h.hour < now - HOURLY_KEEP)).rowcount or 0


def registered(conn: Connection, line_ids: Iterable[str]) -> None:
    """Copy these lines' tenant and district from the registry (after it imported them)."""
    ids = sorted(set(line_ids))
    ls, lines = t.line_state.c, t.lines.c
    for start in range(0, len(ids), _CHUNK):
        stmt = insert_for(conn, t.line_state).from_select(["line_id", "tenant_id", "district"], select(
            lines.line_id, lines.tenant_id, lines.district).where(lines.line_id.in_(ids[start:start + _CHUNK])))
        conn.execute(stmt.on_conflict_do_update(index_elements=[ls.line_id], set_={
            "tenant_id": stmt.excluded.tenant_id, "district": stmt.excluded.district}))


def unregistered(conn: Connection, line_id: str) -> None:
    """The line left the registry: only the operator sees it now, and only while it has a result or an agent."""
    ls = t.line_state.c
    conn.execute(t.line_state.update().where(ls.line_id == line_id).values(tenant_id=None, district=None))
    conn.execute(t.line_state.delete().where(ls.line_id == line_id, ls.result_id.is_(None),
                                             ~exists().where(t.agents.c.line_id == line_id)))


def _newest(line_ids: Sequence[str] | None):  # type: ignore[no-untyped-def]
    r = t.results.c
    rank = func.row_number().over(partition_by=r.line_id, order_by=(r.started_at.desc(), r.result_id.desc()))
    # Never a result flagged `future` (see record); those are the only ones left out.
    inner = select(r.line_id, *(r[c] for c in RESULT_COLUMNS), rank.label("rank")).where(
        r.clock_flag.is_(None) | (r.clock_flag != "future"))
    if line_ids is not None:
        inner = inner.where(r.line_id.in_(line_ids))
    ranked = inner.subquery("ranked")
    return select(ranked.c.line_id, *(ranked.c[c] for c in RESULT_COLUMNS)).where(ranked.c.rank == 1)


def refresh(conn: Connection, line_ids: Iterable[str]) -> None:
    """Re-derive these lines' newest result from the stored results (none left: no result)."""
    ids = sorted(set(line_ids))
    ls = t.line_state.c
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        found = {row.line_id: row for row in conn.execute(_newest(chunk))}
        for line_id in chunk:
            row = found.get(line_id)
            values = {c: (row._mapping[c] if row is not None else None) for c in RESULT_COLUMNS}
            conn.execute(t.line_state.update().where(ls.line_id == line_id).values(**values))


def rebuild(conn: Connection) -> int:
    """Re-derive every row from the registry, the results and the agents. Returns the number of lines."""
    ls, lines, a = t.line_state, t.lines.c, t.agents.c
    conn.execute(ls.delete())
    newest = _newest(None).subquery("newest")
    conn.execute(ls.insert().from_select(["line_id", "tenant_id", "district", *RESULT_COLUMNS], select(
        lines.line_id, lines.tenant_id, lines.district, *(newest.c[c] for c in RESULT_COLUMNS))
        .select_from(t.lines.outerjoin(newest, newest.c.line_id == lines.line_id))))
    conn.execute(ls.insert().from_select(["line_id", *RESULT_COLUMNS], select(newest).where(
        newest.c.line_id.not_in(select(lines.line_id)))))
    conn.execute(ls.insert().from_select(["line_id", "site_id"], select(a.line_id, func.min(a.site_id))
                                         .where(a.line_id.not_in(select(ls.c.line_id))).group_by(a.line_id)))
    return int(conn.execute(select(func.count()).select_from(ls)).scalar_one())
