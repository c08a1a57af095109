"""Retention on PostgreSQL: dropping an expired day partition vs deleting the same day row by row.

    .venv/bin/python bench/retention_drop.py [--results 1000000] [--batch 5000]

Fills two days of a fresh database (migrated to the current layout, one day partition each) with the
same number of scheduled results (the fleet simulator's healthy result as the document, new keys and
times for every row, generated in SQL so that filling is not the bench), then in the same run:

- both days are first folded into daily_metrics with retention's SQL (timed, printed, the same work
  either way), then removed:
- drop: detach and drop the day's partition (what collector/store/retention.py `_drop_expired_days`
  does after the fold when no ticket cites a result of the day);
- delete: DELETE of the other day's rows in batches of `--batch` keys, one transaction each, oldest
  first, as retention did before day partitions (and still does on SQLite).

Each path starts after a CHECKPOINT (so full-page writes weigh the same) and reports wall time, WAL
written (pg_current_wal_insert_lsn difference) and what is left on disk for that day afterwards (the
partition's size and dead tuples before any VACUUM; a dropped partition leaves nothing).
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

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet_sim import HEALTHY, build_result  # noqa: E402
from collector.store import documents, partitions, retention  # noqa: E402
from collector.store.database import make_engine, migrate  # noqa: E402

PG_ADMIN = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DAY_DROP = datetime(2026, 3, 1, tzinfo=UTC)
DAY_DELETE = DAY_DROP + timedelta(days=1)
AGENTS = 10_000


def fill(conn, day: datetime, n: int, doc: str) -> None:  # type: ignore[no-untyped-def]
    """n results spread over the day: AGENTS agents, distinct result ids, the same document."""
    conn.execute(text(
        "INSERT INTO results (agent_id, result_id, seq, line_id, site_id, trigger, started_at, ended_at, "
        "received_at, verdict, clock_synced, agent_version, clock_flag, doc) "
        "SELECT 'gw-' || (i % :agents), gen_random_uuid()::text, i / :agents + 1, 'line-' || (i % :agents), 's', "
        "'schedule', :day + (i * (86400.0 / :n)) * interval '1 second', "
        ":day + (i * (86400.0 / :n) + 12) * interval '1 second', :day + interval '1 day', 'healthy', NULL, "
        "'bench', NULL, CAST(:doc AS jsonb) FROM generate_series(0, :n - 1) i"),
        {"agents": AGENTS, "day": day, "n": n, "doc": doc})


def wal_lsn(conn) -> int:  # type: ignore[no-untyped-def]
    return int(conn.execute(text("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")).scalar_one())


def left_on_disk(conn, name: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(bytes, dead tuples) of a partition, 0 when it no longer exists."""
    if not conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar():
        return 0, 0
    conn.execute(text("SELECT pg_stat_force_next_flush()"))
    size = conn.execute(text("SELECT pg_total_relation_size(CAST(:n AS regclass))"), {"n": name}).scalar_one()
    dead = conn.execute(text("SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relname = :n"),
                        {"n": name}).scalar() or 0
    return int(size), int(dead)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=1_000_000, help="results in each of the two days")
    ap.add_argument("--batch", type=int, default=5000, help="rows per DELETE transaction (retention's default batch)")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"# bench/retention_drop.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  cores={os.cpu_count()}  "
          f"load={load:.2f}  results/day={args.results}")
    sample = build_result("gw-0", "line-0", "s", 1, DAY_DROP, HEALTHY, random.Random(7))
    doc = json.dumps(documents.pack(sample), separators=(",", ":"))
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"linecheck_retention_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        engine = make_engine(url)
        migrate(engine)
        began = time.monotonic()
        with engine.begin() as conn:
            partitions.ensure_days(conn, [DAY_DROP.date(), DAY_DELETE.date()])
            fill(conn, DAY_DROP, args.results, doc)
            fill(conn, DAY_DELETE, args.results, doc)
        auto = create_engine(url, isolation_level="AUTOCOMMIT")
        with auto.connect() as conn:
            conn.execute(text("VACUUM ANALYZE results"))
        print(f"filled 2 x {args.results} results in {time.monotonic() - began:.0f} s")
        drop_part, delete_part = (f"results_p{d:%Y%m%d}" for d in (DAY_DROP, DAY_DELETE))
        rows = []

        # Both days are folded first (the same SQL either way; timed once), then removed: that is what differs.
        folds = []
        for part in (drop_part, delete_part):
            t0 = time.monotonic()
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL work_mem = '256MB'"))  # as retention's fold does
                conn.execute(text(retention._FOLD_DAY.format(part=part)))
            folds.append(time.monotonic() - t0)

        # drop: detach and drop the day (what retention does after the fold; no cited results here)
        with auto.connect() as conn:
            conn.execute(text("CHECKPOINT"))
            wal0 = wal_lsn(conn)
        t0 = time.monotonic()
        with engine.begin() as conn:
            day = next(p for p in partitions.day_partitions(conn) if p.name == drop_part)
            partitions.detach(conn, day)
            partitions.drop(conn, day)
        t_drop = time.monotonic() - t0
        with auto.connect() as conn:
            rows.append(("drop partition", args.results, t_drop, wal_lsn(conn) - wal0, *left_on_disk(conn, drop_part)))

        # delete: the rows in batches, one transaction each, oldest first (retention before day partitions)
        with auto.connect() as conn:
            conn.execute(text("CHECKPOINT"))
            wal0 = wal_lsn(conn)
        t0 = time.monotonic()
        deleted = 0
        while True:
            with engine.begin() as conn:
                n = conn.execute(text(
                    "DELETE FROM results WHERE (agent_id, result_id, started_at) IN (SELECT agent_id, result_id, "
                    "started_at FROM results WHERE started_at >= :lo AND started_at < :hi ORDER BY started_at "
                    "LIMIT :n)"), {"lo": DAY_DELETE, "hi": DAY_DELETE + timedelta(days=1), "n": args.batch}).rowcount
            if not n:
                break
            deleted += n
        t_delete = time.monotonic() - t0
        with engine.connect() as conn:  # the deleting session's counters reach pg_stat when it flushes
            conn.execute(text("SELECT pg_stat_force_next_flush()"))
        with auto.connect() as conn:
            rows.append(("DELETE in batches", deleted, t_delete, wal_lsn(conn) - wal0,
                         *left_on_disk(conn, delete_part)))
        wal_drop, wal_delete = rows[0][3], rows[1][3]
        auto.dispose()
        engine.dispose()
        print(f"{'path':26} {'results':>9} {'time s':>8} {'WAL MB':>8} {'left MB':>8} {'dead rows':>10}")
        for label, n, secs, wal, size, dead in rows:
            print(f"{label:26} {n:>9} {secs:>8.2f} {wal / 2**20:>8.1f} {size / 2**20:>8.1f} {dead:>10}")
        print(f"fold into daily_metrics before either (same SQL): {folds[0]:.1f} s and {folds[1]:.1f} s")
        print(json.dumps({"delete_over_drop_time": round(t_delete / t_drop, 1),
                          "delete_over_drop_wal": round(wal_delete / max(wal_drop, 1), 1)}))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
