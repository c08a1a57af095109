"""Bytes on disk per stored result, for the capacity model (docs/scaling.md): old layout vs new.

    .venv/bin/python bench/storage_size.py [--results 5000] [--no-pg] [--envelope saved.json]

Takes one real envelope from `linecheck-agent check --json` on this machine (every check the
example config enables; what cannot reach its target here fails with a reason, which is the
same size as a success) and the fleet simulator's lighter scheduled results, stores N copies of
each (new agent ids, sequence numbers, result ids) through the collector's own ingest path into
a fresh SQLite file and a fresh PostgreSQL database, and prints bytes per result on disk (tables
and indexes; on PostgreSQL the growth from the empty schema, so the fixed pages of empty tables,
indexes and partitions created ahead do not count per result) as a ratio to the envelope's JSON size
measured in the same run.

Two layouts per backend, same envelopes, same run: `old` = schema version 12 (results with the JSON
payload, one row per check, metric and finding; written the way ingest wrote them then), `new` = the
current one (one row per result with a compact document, day partitions on PostgreSQL: the days the
results fall on are created first, as the collector does ahead of time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import legacy_layout  # noqa: E402
from bench.fleet_sim import HEALTHY, build_result  # noqa: E402
from collector.store import partitions  # noqa: E402
from collector.store.database import Store, make_engine  # noqa: E402
from collector.store.database import migrate as migrate_all  # noqa: E402
from linecheck.wire import ResultEnvelope, new_result_id  # noqa: E402

PG_ADMIN = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BATCH = 500


def real_envelope() -> ResultEnvelope:
    out = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--json", "--config",
                          str(ROOT / "config" / "agent.example.yaml")], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    if out.returncode not in (0, 1):
        raise SystemExit(f"linecheck-agent check failed ({out.returncode}): {out.stderr[-500:]}")
    return ResultEnvelope.model_validate_json(out.stdout)


def copies(template: ResultEnvelope, n: int) -> list[ResultEnvelope]:
    """n distinct results shaped like the template: 100 agents, consecutive seqs, hourly."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made = []
    for i in range(n):
        at = start + timedelta(hours=i // 100)
        made.append(template.model_copy(update={
            "agent_id": f"size-gw-{i % 100:03d}", "line_id": f"size-line-{i % 100:03d}", "seq": i // 100 + 1,
            "result_id": new_result_id(int(at.timestamp() * 1000) + i % 100), "started_at": at,
            "ended_at": at + timedelta(seconds=30)}))
    return made


def simulated(n: int) -> list[ResultEnvelope]:
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [build_result(f"sim-gw-{i % 100:03d}", f"sim-line-{i % 100:03d}", "s", i // 100 + 1,
                         start + timedelta(hours=i // 100, milliseconds=i % 100), HEALTHY, rng) for i in range(n)]


def store_new(url: str, envelopes: list[ResultEnvelope], days: set[date] | None = None) -> None:
    engine = make_engine(url)
    migrate_all(engine)
    with engine.begin() as conn:
        partitions.ensure_days(conn, days if days is not None else {e.started_at.date() for e in envelopes})
    engine.dispose()
    store = Store(url)
    for i in range(0, len(envelopes), BATCH):
        store.ingest(envelopes[i:i + BATCH])
    store.close()


def store_old(url: str, envelopes: list[ResultEnvelope], days: set[date] | None = None) -> None:
    """Schema version 12 and the rows its ingest wrote (results + payload, checks, metrics, findings)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        legacy_layout.create(conn)
    with engine.begin() as conn:
        legacy_layout.write(conn, envelopes)
    engine.dispose()


LAYOUTS = {"old": store_old, "new": store_new}
TABLES = ("results", "checks", "metrics", "findings")  # views in the new layout (no size of their own)


def sqlite_bytes(envelopes: list[ResultEnvelope], layout: str) -> float:
    """Growth of the database file when the results are added to a migrated, empty one."""
    with tempfile.TemporaryDirectory(prefix="linecheck-size-") as tmp:
        path = Path(tmp) / "size.db"
        url = f"sqlite:///{path}"
        sizes = []
        for batch in ([], envelopes):
            LAYOUTS[layout](url, batch)
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            engine.dispose()
            sizes.append(path.stat().st_size)
    return (sizes[1] - sizes[0]) / len(envelopes)


def _pg_sizes(url: str) -> dict[str, int]:
    """Bytes of each result table with its indexes (a partitioned one: all its partitions), after VACUUM."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")  # VACUUM runs outside a transaction
    try:
        with engine.connect() as conn:
            present = [t for t in TABLES if conn.execute(text(
                "SELECT 1 FROM pg_class WHERE relname = :t AND relkind IN ('r', 'p')"), {"t": t}).first()]
            for table in present:  # not database-wide: that also takes the shared catalogs other sessions hold
                conn.execute(text(f"VACUUM ANALYZE {table}"))
            return {t: int(conn.execute(text(
                "SELECT CASE WHEN c.relkind = 'p' THEN (SELECT sum(pg_total_relation_size(relid)) "
                "FROM pg_partition_tree(c.oid)) ELSE pg_total_relation_size(c.oid) END "
                "FROM pg_class c WHERE c.oid = CAST(:t AS regclass)"), {"t": t}).scalar_one()) for t in present}
    finally:
        engine.dispose()


def pg_bytes(envelopes: list[ResultEnvelope], layout: str) -> float:
    """Growth of the result tables per result, from the empty migrated schema (with the results' day partitions
    created, as the collector creates them ahead) to the same schema holding the results."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    db = f"linecheck_size_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    try:
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
        days = {e.started_at.date() for e in envelopes}
        LAYOUTS[layout](url, [], days)
        before = _pg_sizes(url)
        LAYOUTS[layout](url, envelopes, days)
        sizes = {t: v - before.get(t, 0) for t, v in _pg_sizes(url).items()}
        size = sum(sizes.values())
        print(f"   postgresql {layout} bytes per result by table (with indexes): " + ", ".join(
            f"{k} {v / len(envelopes):.0f}" for k, v in sorted(sizes.items())))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
    return float(size) / len(envelopes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=5000, help="results stored per shape and backend")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--envelope", type=Path, help="saved `linecheck-agent check --json` output (default: run one now)")
    args = ap.parse_args(argv)
    print(f"# bench/storage_size.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  cores={os.cpu_count()}  "
          f"results={args.results}")
    full = ResultEnvelope.model_validate_json(args.envelope.read_text()) if args.envelope else real_envelope()
    shapes = [("full check (this machine)", full), ("scheduled (fleet_sim)", None)]
    print(f"{'shape':28} {'checks':>6} {'metrics':>7} {'json B':>7} {'backend':>10} {'layout':>6} {'disk B':>7} "
          f"{'ratio':>6} {'new/old':>7}")
    for label, template in shapes:
        envelopes = copies(template, args.results) if template else simulated(args.results)
        sample = envelopes[len(envelopes) // 2]
        json_bytes = sum(len(e.model_dump_json().encode()) for e in envelopes) / len(envelopes)
        n_metrics = sum(len(c.metrics) for c in sample.checks)
        backends = [("sqlite", sqlite_bytes)] + ([] if args.no_pg else [("postgresql", pg_bytes)])
        for backend, measure in backends:
            old = measure(envelopes, "old")
            new = measure(envelopes, "new")
            for layout, per in (("old", old), ("new", new)):
                print(f"{label:28} {len(sample.checks):>6} {n_metrics:>7} {json_bytes:>7.0f} {backend:>10} {layout:>6} "
                      f"{per:>7.0f} {per / json_bytes:>6.2f} {per / old:>7.2f}")
    print(json.dumps({"note": "ratio = bytes on disk per result / the envelope's JSON bytes"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
