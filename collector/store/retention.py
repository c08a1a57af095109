"""Retention: raw results are kept `raw_days`, then folded into daily figures and deleted.

On PostgreSQL a whole expired day is one partition of `results` (collector/store/partitions.py): it is
folded by one SQL statement, its cited results are moved to the default partition, and it is detached
and dropped — no row-by-row DELETE, no dead tuples, no vacuum debt (bench/retention_drop.py measures
both). What is left over (SQLite, the default partition's rows, results a ticket no longer cites) goes
the row-by-row way below.

Each run takes the oldest expired results (a bounded batch), adds their checks and metrics to
`daily_metrics` (per UTC day, line, check kind and metric: samples, sum, min, max, and how many
results carried the check and how many of those failed it; the row named `_check` counts checks
that carried no metric), and deletes them (checks, metrics and findings are inside each result's document)
in the same transaction, so a result is counted exactly once. Results a ticket cites as evidence
are kept. Daily figures older than `aggregate_days` are deleted. With several collectors only one
runs it at a time (a PostgreSQL advisory lock; the others skip that round).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import Connection, and_, exists, func, select, text, tuple_

from collector.store import line_state, partitions
from collector.store import schema as t
from collector.store.upsert import insert_for
from linecheck.configfile import Strict

log = logging.getLogger(__name__)
_LOCK = 7414  # pg_try_advisory_xact_lock: one retention run at a time across collectors


class RetentionConfig(Strict):
    raw_days: float = Field(default=90, ge=0, description="keep raw results this long; 0 = forever")
    aggregate_days: float = Field(default=730, ge=0, description="keep daily figures this long; 0 = forever")
    interval_s: float = Field(default=3600, ge=10, le=86400, description="how often a collector applies it")
    batch: int = Field(default=5000, ge=100, le=10_000, description="results folded per transaction")


def apply(conn: Connection, cfg: RetentionConfig, now: datetime | None = None) -> dict[str, int]:
    """One bounded round. Returns {"folded": results aggregated and deleted, "expired_days": rows dropped}."""
    now = now or datetime.now(UTC)
    if conn.dialect.name == "postgresql" and not conn.execute(select(func.pg_try_advisory_xact_lock(_LOCK))).scalar():
        return {"folded": 0, "expired_days": 0}
    folded = 0
    if cfg.raw_days:
        partitions.ensure(conn, now)  # the coming days exist before ingest needs them
        folded = _drop_expired_days(conn, now - timedelta(days=cfg.raw_days))
        folded += _fold(conn, cfg, now)  # what no day partition holds: SQLite, the default partition, cited rows
    expired = 0
    if cfg.aggregate_days:
        day = (now - timedelta(days=cfg.aggregate_days)).date()
        expired = conn.execute(t.daily_metrics.delete().where(t.daily_metrics.c.day < day)).rowcount or 0
    expired += line_state.prune_hourly(conn, now)
    if folded or expired:
        log.info("retention: folded %d raw results into daily figures, dropped %d old daily rows", folded, expired)
    return {"folded": folded, "expired_days": expired}


def _fold(conn: Connection, cfg: RetentionConfig, now: datetime) -> int:
    r, ev = t.results, t.ticket_evidence
    cited = exists().where(and_(ev.c.agent_id == r.c.agent_id, ev.c.result_id == r.c.result_id))
    old = conn.execute(select(r.c.agent_id, r.c.result_id, r.c.line_id, r.c.started_at)
                       .where(r.c.started_at < now - timedelta(days=cfg.raw_days), ~cited)
                       .order_by(r.c.started_at).limit(cfg.batch)).all()
    if not old:
        return 0
    keys = [(o.agent_id, o.result_id) for o in old]
    meta = {(o.agent_id, o.result_id): (o.started_at.date(), o.line_id) for o in old}
    c, m = t.checks, t.metrics
    checks = conn.execute(select(c.c.agent_id, c.c.result_id, c.c.idx, c.c.kind, c.c.status)
                          .where(tuple_(c.c.agent_id, c.c.result_id).in_(keys))).all()
    values = conn.execute(select(m.c.agent_id, m.c.result_id, m.c.idx, m.c.name, m.c.value)
                          .where(tuple_(m.c.agent_id, m.c.result_id).in_(keys))).all()
    kind_of = {(x.agent_id, x.result_id, x.idx): x.kind for x in checks}
    # Per (day, line, kind): which results carried the kind, which of them failed it.
    carried: dict[tuple[Any, str, str], set[tuple[str, str]]] = defaultdict(set)
    failed: dict[tuple[Any, str, str], set[tuple[str, str]]] = defaultdict(set)
    for x in checks:
        day, line = meta[(x.agent_id, x.result_id)]
        carried[(day, line, x.kind)].add((x.agent_id, x.result_id))
        if x.status == "failed":
            failed[(day, line, x.kind)].add((x.agent_id, x.result_id))
    agg: dict[tuple[Any, str, str, str], list[float]] = defaultdict(list)
    for kdl in carried:
        agg[(*kdl, "_check")]  # noqa: B018 - every kind gets a row, with or without metrics
    for v in values:
        day, line = meta[(v.agent_id, v.result_id)]
        bucket = agg[(day, line, kind_of[(v.agent_id, v.result_id, v.idx)], v.name)]
        if v.value is not None:
            bucket.append(float(v.value))
    least, greatest = (func.min, func.max) if conn.dialect.name == "sqlite" else (func.least, func.greatest)
    d = t.daily_metrics
    for (day, line, kind, name), vals in agg.items():
        row = {"day": day, "line_id": line, "kind": kind, "name": name, "samples": len(vals),
               "total": sum(vals), "minimum": min(vals) if vals else None, "maximum": max(vals) if vals else None,
               "results": len(carried[(day, line, kind)]), "failed": len(failed[(day, line, kind)])}
        stmt = insert_for(conn, d).values(row)
        conn.execute(stmt.on_conflict_do_update(index_elements=[d.c.day, d.c.line_id, d.c.kind, d.c.name], set_={
            "samples": d.c.samples + stmt.excluded.samples, "total": d.c.total + stmt.excluded.total,
            # least/greatest of NULL: coalesce so a day's first measured value is not lost.
            "minimum": least(func.coalesce(d.c.minimum, stmt.excluded.minimum),
                             func.coalesce(stmt.excluded.minimum, d.c.minimum)),
            "maximum": greatest(func.coalesce(d.c.maximum, stmt.excluded.maximum),
                                func.coalesce(stmt.excluded.maximum, d.c.maximum)),
            "results": d.c.results + stmt.excluded.results, "failed": d.c.failed + stmt.excluded.failed}))
    # A line whose newest result goes falls back to its newest one left (or to no data).
    ls = t.line_state.c
    orphaned = conn.execute(select(ls.line_id).where(tuple_(ls.agent_id, ls.result_id).in_(keys))).scalars().all()
    conn.execute(r.delete().where(tuple_(r.c.agent_id, r.c.result_id).in_(keys)))
    line_state.refresh(conn, orphaned)
    return len(keys)


# The fold of one whole day partition in SQL (same figures as _fold; tests/test_store_partitions.py
# compares them): results are counted per (day, line, kind), values per metric, cited results skipped.
_FOLD_DAY = """
WITH src AS (
  SELECT r.agent_id || ' ' || r.result_id AS rk, r.line_id, (r.started_at AT TIME ZONE 'UTC')::date AS day,
         c.item->>'kind' AS kind, c.item->>'status' = 'failed' AS failed, c.item->'metrics' AS metrics
  FROM {part} r CROSS JOIN LATERAL jsonb_array_elements(r.doc->'checks') c(item)
  WHERE NOT EXISTS (SELECT 1 FROM ticket_evidence ev WHERE ev.agent_id = r.agent_id AND ev.result_id = r.result_id)),
per_result AS (  -- a result with two checks of one kind counts once, as failed if either failed
  SELECT day, line_id, kind, rk, bool_or(failed) AS failed FROM src GROUP BY 1, 2, 3, 4),
kinds AS (
  SELECT day, line_id, kind, count(*) AS results, count(*) FILTER (WHERE failed) AS failed
  FROM per_result GROUP BY 1, 2, 3),
vals AS (
  SELECT day, line_id, kind, m.key AS name,
         CASE jsonb_typeof(m.value) WHEN 'number' THEN (m.value)::float8
              WHEN 'boolean' THEN CASE WHEN (m.value)::boolean THEN 1.0 ELSE 0.0 END END AS v
  FROM src CROSS JOIN LATERAL jsonb_each(src.metrics) m),
agg AS (
  SELECT day, line_id, kind, name, count(v) AS samples, coalesce(sum(v), 0) AS total, min(v) AS minimum,
         max(v) AS maximum FROM vals GROUP BY 1, 2, 3, 4
  UNION ALL SELECT day, line_id, kind, '_check', 0, 0, NULL, NULL FROM kinds)
INSERT INTO daily_metrics AS d (day, line_id, kind, name, samples, total, minimum, maximum, results, failed)
SELECT a.day, a.line_id, a.kind, a.name, a.samples, a.total, a.minimum, a.maximum, k.results, k.failed
FROM agg a JOIN kinds k USING (day, line_id, kind)
ON CONFLICT (day, line_id, kind, name) DO UPDATE SET
  samples = d.samples + excluded.samples, total = d.total + excluded.total,
  minimum = least(coalesce(d.minimum, excluded.minimum), coalesce(excluded.minimum, d.minimum)),
  maximum = greatest(coalesce(d.maximum, excluded.maximum), coalesce(excluded.maximum, d.maximum)),
  results = d.results + excluded.results, failed = d.failed + excluded.failed
"""
_CITED = ("EXISTS (SELECT 1 FROM ticket_evidence ev WHERE ev.agent_id = r.agent_id "
          "AND ev.result_id = r.result_id)")


def _drop_expired_days(conn: Connection, cutoff: datetime) -> int:
    """Fold and drop every day partition that ends before `cutoff`. Returns the results folded."""
    if not partitions.partitioned(conn):
        return 0
    folded = 0
    for p in partitions.day_partitions(conn):
        if p.end > cutoff:
            break
        # The planner guesses 100 rows per jsonb_each call: with more sort memory than that guess needs it
        # aggregates a day of results in memory instead of spilling (LOCAL: this transaction only).
        conn.execute(text("SET LOCAL work_mem = '256MB'"))
        conn.execute(text(_FOLD_DAY.format(part=p.name)))
        folded += conn.execute(text(f"SELECT count(*) FROM {p.name} r WHERE NOT {_CITED}")).scalar_one()
        orphaned = conn.execute(text(
            f"SELECT s.line_id FROM line_state s JOIN {p.name} r ON r.agent_id = s.agent_id "
            "AND r.result_id = s.result_id")).scalars().all()
        partitions.detach(conn, p)
        # Cited results stay (in the default partition, whose rows retention folds one by one once uncited).
        conn.execute(text(f"INSERT INTO results SELECT * FROM {p.name} r WHERE {_CITED}"))
        partitions.drop(conn, p)
        line_state.refresh(conn, orphaned)
        log.info("retention: dropped day partition %s", p.name)
    return folded
