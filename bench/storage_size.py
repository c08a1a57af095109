"""Bytes on disk per stored result, for the capacity model (docs/scaling.md).

    .venv/bin/python bench/storage_size.py [--results 5000] [--no-pg]

Takes one real envelope from `linecheck-agent check --json` on this machine (every check the
example config enables; what cannot reach its target here fails with a reason, which is the
same size as a success) and the fleet simulator's lighter scheduled results, stores N copies of
each (new agent ids, sequence numbers, result ids) through the collector's own ingest path into
a fresh SQLite file and a fresh PostgreSQL database, and prints bytes per result on disk (tables
and indexes) as a ratio to the envelope's JSON size measured in the same run.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet_sim import HEALTHY, build_result  # noqa: E402
from collector.store.database import Store  # noqa: E402
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


def store_all(url: str, envelopes: list[ResultEnvelope]) -> Store:
    store = Store(url)
    for i in range(0, len(envelopes), BATCH):
        store.ingest(envelopes[i:i + BATCH])
    return store


def sqlite_bytes(envelopes: list[ResultEnvelope]) -> float:
    with tempfile.TemporaryDirectory(prefix="linecheck-size-") as tmp:
        path = Path(tmp) / "size.db"
        empty = store_all(f"sqlite:///{path}", [])
        with empty.engine.begin() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        base = path.stat().st_size
        empty.close()
        store = store_all(f"sqlite:///{path}", envelopes)
        with store.engine.begin() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        size = path.stat().st_size - base
        store.close()
    return size / len(envelopes)


def pg_bytes(envelopes: list[ResultEnvelope]) -> float:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"linecheck_size_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        store = store_all(url, envelopes)
        store.close()
        engine = create_engine(url, isolation_level="AUTOCOMMIT")  # VACUUM runs outside a transaction
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
            sizes = dict(conn.execute(text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' "
                "AND c.relname IN ('results', 'checks', 'metrics', 'findings')")).all())
        engine.dispose()
        size = sum(sizes.values())
        print("   postgresql bytes per result by table (with indexes): " + ", ".join(
            f"{k} {v / len(envelopes):.0f}" for k, v in sorted(sizes.items())))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
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
    print(f"{'shape':28} {'checks':>6} {'metrics':>7} {'json B':>7} {'backend':>10} {'disk B':>7} {'ratio':>6}")
    for label, template in shapes:
        envelopes = copies(template, args.results) if template else simulated(args.results)
        sample = envelopes[len(envelopes) // 2]
        json_bytes = sum(len(e.model_dump_json().encode()) for e in envelopes) / len(envelopes)
        n_metrics = sum(len(c.metrics) for c in sample.checks)
        backends = [("sqlite", sqlite_bytes)] + ([] if args.no_pg else [("postgresql", pg_bytes)])
        for backend, measure in backends:
            per = measure(envelopes)
            print(f"{label:28} {len(sample.checks):>6} {n_metrics:>7} {json_bytes:>7.0f} {backend:>10} "
                  f"{per:>7.0f} {per / json_bytes:>6.2f}")
    print(json.dumps({"note": "ratio = bytes on disk per result / the envelope's JSON bytes"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
