"""Latency of the queries rules, API, promises and Grafana run, old result layout vs new, same data, same run.

    .venv/bin/python bench/layout_queries.py [--lines 2000] [--days 7]

Two fresh PostgreSQL databases hold the same results: `lines` lines x one scheduled result an hour
for `days` days (the fleet simulator's healthy result, every 10th line with a throughput check),
day partitions created as the collector does. `old` = schema version 12 (checks, metrics, findings
tables, filled from the same documents), `new` = the current layout (views over the document). Each
query is the readers' (collector/rules/engine.py `_ranked` itself; the SQL of collector/api/queries.py
`line_series` and collector/promises/ledger.py `_check_metrics`) or the
dashboard's SQL (dashboards/fleet-health.json "Measured download as a share of plan"), each in the form
its layout ships (version 12's joins, today's joins on started_at too); best of 5 runs after one
warm-up, through the collector's own engine (JIT off, migration 13).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import legacy_layout  # noqa: E402
from bench.fleet_sim import HEALTHY, build_result  # noqa: E402
from collector.rules.engine import _ranked  # noqa: E402
from collector.store import documents, partitions  # noqa: E402
from collector.store import schema as t  # noqa: E402
from collector.store.database import make_engine, migrate  # noqa: E402
from collector.store.migrations import v13_pg_views  # noqa: E402
from tests.factory import throughput_check  # noqa: E402

PG_ADMIN = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
END = datetime(2026, 11, 30, tzinfo=UTC)

_FILL = ("INSERT INTO {table} (agent_id, result_id, seq, line_id, site_id, trigger, started_at, ended_at, received_at, "
         "verdict, clock_synced, agent_version, clock_flag, {doc_col}) "
         "SELECT 'gw-' || (i % :lines), gen_random_uuid()::text, i / :lines + 1, 'line-' || (i % :lines), 's', "
         "'schedule', :start + (i / :lines) * interval '1 hour' + (i % :lines) * interval '1 ms', "
         ":start + (i / :lines) * interval '1 hour' + interval '12 s', :start, 'healthy', NULL, 'bench', NULL, "
         "CASE WHEN i % 10 = 0 THEN CAST(:tp AS {doc_type}) ELSE CAST(:plain AS {doc_type}) END "
         "FROM generate_series(0, :n - 1) i")


def _docs() -> tuple[dict[str, Any], dict[str, Any]]:
    e = build_result("gw-0", "line-0", "s", 1, END, HEALTHY, random.Random(7))
    with_tp = e.model_copy(update={"checks": [*e.checks, throughput_check(420.0, 95.0)]})
    return documents.pack(e), documents.pack(with_tp)


def fill_new(url: str, lines: int, days: int) -> None:
    engine = make_engine(url)
    migrate(engine)
    plain, tp = _docs()
    start = END - timedelta(days=days)
    with engine.begin() as conn:
        partitions.ensure_days(conn, [(start + timedelta(days=d)).date() for d in range(days + 1)])
        conn.execute(text(_FILL.format(table="results", doc_col="doc", doc_type="jsonb")),
                     {"lines": lines, "start": start, "n": lines * days * 24, "plain": json.dumps(plain),
                      "tp": json.dumps(tp)})
    engine.dispose()


def fill_new_json(url: str, lines: int, days: int) -> None:
    """The new layout with a `json` (text) document instead of `jsonb`: the alternative weighed (smaller, parsed
    on every read)."""
    fill_new(url, lines, days)
    engine = make_engine(url)
    with engine.begin() as conn:
        for name in ("checks", "metrics", "findings"):
            conn.execute(text(f"DROP VIEW {name}"))
        conn.execute(text("ALTER TABLE results ALTER COLUMN doc TYPE json"))
        for name, body in v13_pg_views("json").items():
            conn.execute(text(f"CREATE VIEW {name} AS {body}"))
    engine.dispose()


def fill_old(url: str, lines: int, days: int) -> None:
    """Version 12 with the same rows: results from the same documents (full envelopes as payload), then
    checks, metrics and findings expanded from them in SQL as version 12's ingest would have written them."""
    engine = make_engine(url)
    plain, tp = _docs()
    full = {k: {**d, "schema": 1, "trigger_info": {}, "findings": d.get("findings", [])} for k, d in
            (("plain", plain), ("tp", tp))}
    start = END - timedelta(days=days)
    with engine.begin() as conn:
        legacy_layout.create(conn)
        conn.execute(text(_FILL.format(table="results", doc_col="payload", doc_type="text")),
                     {"lines": lines, "start": start, "n": lines * days * 24, "plain": json.dumps(full["plain"]),
                      "tp": json.dumps(full["tp"])})
        expand = ("FROM results r CROSS JOIN LATERAL jsonb_array_elements(r.payload::jsonb->'checks') "
                  "WITH ORDINALITY c(item, ord)")
        conn.execute(text(
            "INSERT INTO checks SELECT r.agent_id, r.result_id, c.ord - 1, r.line_id, r.started_at, c.item->>'kind', "
            f"c.item->>'target', c.item->>'status', c.item->>'reason', (c.item->'duration_s')::float8 {expand}"))
        conn.execute(text(
            "INSERT INTO metrics SELECT r.agent_id, r.result_id, c.ord - 1, m.key, "
            f"CASE jsonb_typeof(m.value) WHEN 'number' THEN (m.value)::float8 END {expand} "
            "CROSS JOIN LATERAL jsonb_each(c.item->'metrics') m"))
    engine.dispose()


def queries(lines: int, layout: str) -> dict[str, Any]:
    some = [f"line-{i}" for i in range(0, min(lines, 2000), max(1, min(lines, 2000) // 200))][:200]
    week = END - timedelta(days=7)
    # The panel's SQL as each layout ships it: version 12 joined metrics to checks for time and line; the
    # metrics view carries both (dashboards/generate.py), a join of two views would read every day.
    panel = {"old": ("SELECT floor(extract(epoch from c.started_at)/86400)*86400 AS time, "
                     "coalesce(l.district, '(none)'), percentile_cont(0.5) WITHIN GROUP (ORDER BY m.value / 500.0) "
                     "FROM metrics m JOIN checks c ON c.agent_id = m.agent_id AND c.result_id = m.result_id "
                     "AND c.idx = m.idx LEFT JOIN lines l ON l.line_id = c.line_id WHERE m.name = 'down_mbps' "
                     "AND m.value IS NOT NULL AND c.started_at BETWEEN :a AND :b GROUP BY 1, 2 ORDER BY 1"),
             "new": ("SELECT floor(extract(epoch from m.started_at)/86400)*86400 AS time, "
                     "coalesce(l.district, '(none)'), percentile_cont(0.5) WITHIN GROUP (ORDER BY m.value / 500.0) "
                     "FROM metrics m LEFT JOIN lines l ON l.line_id = m.line_id WHERE m.name = 'down_mbps' "
                     "AND m.value IS NOT NULL AND m.started_at BETWEEN :a AND :b GROUP BY 1, 2 ORDER BY 1")
             }["old" if layout == "old" else "new"]
    # Version 12's readers joined metrics to checks on (agent_id, result_id, idx); today's add started_at
    # (the metrics view has it), which prunes the other side to one day partition.
    on = "m.agent_id = c.agent_id AND m.result_id = c.result_id AND m.idx = c.idx" + (
        "" if layout == "old" else " AND m.started_at = c.started_at")
    series = (f"SELECT c.started_at, m.name, m.value FROM checks c JOIN metrics m ON {on} WHERE c.line_id = :line "
              "AND c.started_at >= :since AND m.name IN ('loss_pct', 'rtt_avg_ms') ORDER BY c.started_at LIMIT 5000")
    ledger = (f"SELECT c.agent_id, c.result_id, c.idx, c.line_id, c.kind, c.target, c.status, c.reason, c.started_at, "
              f"m.name, m.value FROM checks c LEFT JOIN metrics m ON {on} WHERE c.line_id = ANY(:lines) "
              "AND c.kind IN ('throughput', 'ping') AND c.started_at >= :since AND c.started_at <= :until")
    return {
        "rules: newest per (line, kind), 200 lines":
            lambda c: list(_ranked(c, t.checks, t.checks.c.kind, ["dns", "ping", "throughput"], some, 48)),
        "api: line series, 1 line, 7 d": lambda c: c.execute(text(series), {"line": "line-3", "since": week}).all(),
        "promises: checks + metrics, 200 lines, 7 d":
            lambda c: c.execute(text(ledger), {"lines": some, "since": week, "until": END}).all(),
        "grafana: download share per day, all lines, 7 d":
            lambda c: c.execute(text(panel), {"a": week, "b": END}).all(),
    }


def timed(url: str, lines: int, layout: str) -> dict[str, float]:
    engine = make_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()  # a database-wide ANALYZE left open would hold shared-catalog locks other sessions wait on
            tables = ("results", "checks", "metrics", "findings") if layout == "old" else ("results",)
            size = sum(conn.execute(text("SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
                                         "FROM pg_partition_tree(CAST(:t AS regclass))"), {"t": name}).scalar_one()
                       or conn.execute(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"),
                                       {"t": name}).scalar_one() for name in tables)
            count = conn.execute(text("SELECT count(*) FROM results")).scalar_one()
            out["bytes per result (tables + indexes)"] = float(size) / count
            for label, run in queries(lines, layout).items():  # noqa: B007
                run(conn)
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    run(conn)
                    best = min(best, time.perf_counter() - t0)
                out[label] = best * 1000
    finally:
        engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="also the new layout with a json (text) document")
    args = ap.parse_args(argv)
    print(f"# bench/layout_queries.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  cores={os.cpu_count()}  "
          f"load={os.getloadavg()[0]:.2f}  lines={args.lines}  results={args.lines * args.days * 24}")
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    names = {layout: f"linecheck_layout_{layout.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
             for layout in ("old", "new", "new-json")}
    try:
        results = {}
        layouts = {"old": fill_old, "new": fill_new, "new-json": fill_new_json}
        for layout in ("old", "new", *(["new-json"] if args.json else [])):
            fill = layouts[layout]
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{names[layout]}"'))
            url = PG_ADMIN.rsplit("/", 1)[0] + "/" + names[layout]
            began = time.monotonic()
            fill(url, args.lines, args.days)
            print(f"filled {layout} layout in {time.monotonic() - began:.0f} s")
            results[layout] = timed(url, args.lines, layout)
        shown = list(results)
        print(f"{'query (ms) / size':50} " + " ".join(f"{name:>9}" for name in shown) + f" {'new/old':>8}")
        for label in results["old"]:
            old, new = results["old"][label], results["new"][label]
            print(f"{label:50} " + " ".join(f"{results[n][label]:>9.1f}" for n in shown) + f" {new / old:>8.2f}")
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
