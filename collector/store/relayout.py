"""Copy an existing database's results into the layout of migration 13, online, in batches.

Migration 13 is instant on any size: it keeps a non-empty old `results` table as `results_v12` and
creates the new one. Collectors run (ingest writes the new table) while this module moves the old rows
over, one bounded transaction per batch: read the next rows (by primary key), write them as documents
into `results` (creating their day partitions on PostgreSQL), check that every one of them is now
there, delete them from `results_v12`, commit. Stopped at any point it resumes where it stopped (what
is left in `results_v12` is exactly what was not copied); a re-sent result that ingest stored meanwhile
is not copied twice (ON CONFLICT DO NOTHING, and the check counts it). The old table is dropped when empty.

    .venv/bin/python -m collector.store.relayout --database URL [--batch 5000] [--max-batches N]

Until it finishes, readers see the old results appear batch by batch (the newest ones are found by
ingest's duplicate check in `results_v12`, `legacy_payloads`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine, inspect, text

from collector.store import documents, partitions
from collector.store import schema as t
from collector.store.migrations import LEGACY_RESULTS
from collector.store.types import as_utc
from collector.store.upsert import insert_for

log = logging.getLogger(__name__)
_LOCK = 7415  # one copier at a time across collectors (PostgreSQL advisory lock)
_COLUMNS = ("agent_id", "result_id", "seq", "line_id", "site_id", "trigger", "started_at", "ended_at", "received_at",
            "verdict", "clock_synced", "agent_version", "clock_flag", "payload")


class CopyMismatch(RuntimeError):
    """A batch's rows are not all in the new table after the insert: nothing of the batch was deleted."""


@dataclass
class Progress:
    copied: int = 0  # rows moved from results_v12 (inserted now or already there from ingest)
    inserted: int = 0  # of those, rows this copy inserted
    batches: int = 0
    left: int = 0  # rows still in results_v12 (0 = done, table dropped)
    seconds: float = 0.0


def legacy_exists(conn: Connection) -> bool:
    return inspect(conn).has_table(LEGACY_RESULTS)


def legacy_payloads(conn: Connection, keys: Iterable[tuple[str, str]]) -> list:  # type: ignore[type-arg]
    """(agent_id, result_id, payload) of these keys still waiting in results_v12 (none once it is gone)."""
    keys = sorted(keys)
    if not keys or not legacy_exists(conn):
        return []
    out = []
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        marks = ", ".join(f"(:a{j}, :r{j})" for j in range(len(chunk)))
        params = {f"a{j}": a for j, (a, _) in enumerate(chunk)} | {f"r{j}": r for j, (_, r) in enumerate(chunk)}
        out += conn.execute(text(f"SELECT agent_id, result_id, payload FROM {LEGACY_RESULTS} "
                                 f"WHERE (agent_id, result_id) IN ({marks})"), params).all()
    return out


def copy_batch(conn: Connection, batch: int) -> tuple[int, int]:
    """Move up to `batch` rows; returns (moved, inserted). Raises CopyMismatch (the transaction rolls back)."""
    rows = conn.execute(text(f"SELECT {', '.join(_COLUMNS)} FROM {LEGACY_RESULTS} "
                             "ORDER BY agent_id, result_id LIMIT :n"), {"n": batch}).mappings().all()
    if not rows:
        return 0, 0
    new = []
    for row in rows:
        values = {k: row[k] for k in _COLUMNS if k != "payload"}
        for k in ("started_at", "ended_at", "received_at"):
            values[k] = as_utc(values[k]) if not isinstance(values[k], str) else as_utc(_parse(values[k]))
        values["doc"] = documents.pack_dict(json.loads(row["payload"]))
        new.append(values)
    partitions.ensure_days(conn, _days(new))
    inserted = _insert(conn, new)
    keys = sorted((v["agent_id"], v["result_id"]) for v in new)
    marks = ", ".join(f"(:a{j}, :r{j})" for j in range(len(keys)))
    params = {f"a{j}": a for j, (a, _) in enumerate(keys)} | {f"r{j}": r for j, (_, r) in enumerate(keys)}
    present = conn.execute(text(f"SELECT count(*) FROM results WHERE (agent_id, result_id) IN ({marks})"),
                           params).scalar_one()
    if present != len(keys):
        raise CopyMismatch(f"{len(keys)} rows read from {LEGACY_RESULTS}, {present} of them in results after the copy")
    deleted = conn.execute(text(f"DELETE FROM {LEGACY_RESULTS} WHERE (agent_id, result_id) IN ({marks})"),
                           params).rowcount
    if deleted != len(keys):
        raise CopyMismatch(f"{len(keys)} rows copied, {deleted} deleted from {LEGACY_RESULTS} "
                           "(moved by another copier?)")
    return len(keys), inserted


def _insert(conn: Connection, rows: list[dict]) -> int:  # type: ignore[type-arg]
    """Insert what is not there yet (ingest may have stored a re-sent one); returns how many were inserted."""
    stmt = insert_for(conn, t.results).on_conflict_do_nothing().returning(t.results.c.result_id)
    return len(conn.execute(stmt, rows).all())


def _parse(value: str):  # type: ignore[no-untyped-def]
    from datetime import datetime
    return datetime.fromisoformat(value)


def _days(rows: list[dict]) -> set[date]:  # type: ignore[type-arg]
    # Only plausible days get a partition; an agent clock of 1970 or 2090 lands in the default partition.
    years = range(2000, 2100)
    return {r["started_at"].date() for r in rows if r["started_at"].year in years}


def run(engine: Engine, batch: int = 5000, max_batches: int | None = None) -> Progress:
    """Copy until results_v12 is empty (then drop it) or `max_batches` ran. Safe to stop and call again."""
    progress = Progress()
    began = time.monotonic()
    while max_batches is None or progress.batches < max_batches:
        with engine.begin() as conn:
            if not legacy_exists(conn):
                break
            if conn.dialect.name == "postgresql" and not conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK}).scalar():
                log.info("relayout: another collector is copying; stopping here")
                break
            moved, inserted = copy_batch(conn, batch)
            if not moved:
                conn.execute(text(f"DROP TABLE {LEGACY_RESULTS}"))
                log.info("relayout: %s is empty and dropped", LEGACY_RESULTS)
                break
        progress.copied += moved
        progress.inserted += inserted
        progress.batches += 1
    with engine.connect() as conn:
        progress.left = conn.execute(text(f"SELECT count(*) FROM {LEGACY_RESULTS}")).scalar_one() \
            if legacy_exists(conn) else 0
    progress.seconds = time.monotonic() - began
    return progress


def main(argv: list[str] | None = None) -> int:
    from collector.store.database import make_engine, migrate

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", required=True, help="the collector's `database:` URL")
    ap.add_argument("--batch", type=int, default=5000, help="rows per transaction (default 5000)")
    ap.add_argument("--max-batches", type=int, help="stop after this many batches (resume later)")
    args = ap.parse_args(argv)
    engine = make_engine(args.database)
    try:
        migrate(engine)
        p = run(engine, args.batch, args.max_batches)
    finally:
        engine.dispose()
    print(f"relayout: {p.copied} results copied ({p.inserted} inserted, {p.copied - p.inserted} already there) "
          f"in {p.batches} batches, {p.seconds:.1f} s; {p.left} left in {LEGACY_RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
