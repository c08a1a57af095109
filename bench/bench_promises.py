"""Judge a fleet's speed promises and compare with storing the evidence they rest on.

    .venv/bin/python bench/bench_promises.py [LINES] [TESTS_PER_LINE] [--pg]

Builds LINES lines, each with a 500/300 speed promise and TESTS_PER_LINE daily results carrying
a link and a throughput check (a mix of good, slow, port-limited and failed lines), stores them
with the collector's ingest path (the reference: the work every result already costs), then runs
the ledger over the whole fleet in one transaction (evidence loading, verdicts, saving them,
tickets). Prints both times and the ratio ledger / ingest, plus verdicts per second and the
outcome counts. --pg runs on a fresh database on the local PostgreSQL instead of SQLite.
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.fleet import registry  # noqa: E402
from collector.promises import ledger  # noqa: E402
from collector.promises.consequences import run_ledger  # noqa: E402
from collector.promises.criterion import PromisePolicy  # noqa: E402
from collector.promises.model import SpeedPromise  # noqa: E402
from collector.store.database import Store  # noqa: E402
from linecheck.wire import CheckResult, ResultEnvelope, Status, new_result_id  # noqa: E402

NOW = datetime(2024, 6, 30, 12, tzinfo=UTC)


def results(line: str, n: int, profile: str, rng: random.Random) -> list[ResultEnvelope]:
    out = []
    for i in range(n):
        at = NOW - timedelta(days=i, hours=rng.randint(0, 23), minutes=rng.randint(0, 59))
        port = 100.0 if profile == "port" else 1000.0
        down, up = {"good": (478.0, 287.0), "slow": (96.0, 48.0), "port": (94.0, 94.0),
                    "mixed": (rng.choice([478.0, 300.0]), 287.0)}.get(profile, (None, None))
        if profile == "failed" and rng.random() < 0.5:
            down, up = 478.0, 287.0
        tp = CheckResult(kind="throughput", status=Status.OK if down else Status.FAILED, duration_s=8.0,
                         reason=None if down else "server busy",
                         metrics={"capacity_down_mbps": down, "capacity_up_mbps": up, "down_mbps": down,
                                  "up_mbps": up, "cpu_max_pct": rng.uniform(10, 60) if down else None,
                                  "cross_traffic_high_flag": (1 if rng.random() < 0.05 else 0) if down else None})
        link = CheckResult(kind="link", status=Status.OK, duration_s=0.1, metrics={"wan_speed_mbps": port})
        out.append(ResultEnvelope(
            result_id=new_result_id(int(at.timestamp() * 1000)), agent_id=f"{line}-gw", seq=i + 1, line_id=line,
            site_id="bench-site", trigger="schedule", started_at=at, ended_at=at + timedelta(seconds=9),
            agent_version="bench", checks=[link, tp]))
    return out


def pg_url() -> tuple[str, object]:
    from sqlalchemy import create_engine, text

    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    name = f"linecheck_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", (admin, name)


def main(lines: int, per_line: int, use_pg: bool) -> int:
    logging.disable(logging.WARNING)
    rng = random.Random(7)
    tmp = tempfile.TemporaryDirectory()
    cleanup = None
    url = f"sqlite:///{tmp.name}/bench.db"
    if use_pg:
        url, cleanup = pg_url()
    store = Store(url)
    try:
        ids = [f"bench-{i:06d}" for i in range(lines)]
        data = registry.Registry.model_validate({
            "tenants": [{"tenant_id": "bench", "name": "Bench Telecom", "kind": "carrier"}],
            "sites": [{"site_id": "bench-site", "tenant_id": "bench", "district": "Xuhui"}],
            "lines": [{"line_id": line, "tenant_id": "bench", "site_id": "bench-site", "segment": "sme"}
                      for line in ids]})
        promises = [SpeedPromise(id=f"{line}-up", line_id=line, effective=date(2024, 1, 1), down_mbps=500,
                                 up_mbps=300) for line in ids]
        with store.engine.begin() as conn:
            registry.import_registry(conn, data)
            ledger.import_promises(conn, promises)
        profiles = ["good"] * 6 + ["slow", "port", "mixed", "failed"]
        batches = [results(line, per_line, profiles[i % len(profiles)], rng) for i, line in enumerate(ids)]

        started = time.perf_counter()
        for batch in batches:
            store.ingest(batch, received_at=NOW)
        ingest_s = time.perf_counter() - started

        started = time.perf_counter()
        with store.engine.begin() as conn:
            run = run_ledger(conn, PromisePolicy(), NOW)
        ledger_s = time.perf_counter() - started

        outcomes = Counter(v.outcome.value for v in run.verdicts)
        backend = "postgresql" if use_pg else "sqlite"
        print(f"backend {backend}: {lines} lines x {per_line} results = {lines * per_line} results")
        print(f"ingest (reference): {ingest_s:.2f} s ({lines * per_line / ingest_s:.0f} results/s)")
        print(f"ledger, whole fleet: {ledger_s:.2f} s ({len(run.verdicts) / ledger_s:.0f} verdicts/s), "
              f"{len(run.opened)} tickets opened")
        print(f"ratio ledger / ingest: {ledger_s / ingest_s:.3f}")
        print("outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items())))
    finally:
        store.close()
        if cleanup is not None:
            from sqlalchemy import text

            admin, name = cleanup  # type: ignore[misc]
            with admin.connect() as conn:  # type: ignore[attr-defined]
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(int(args[0]) if args else 2000, int(args[1]) if len(args) > 1 else 30, "--pg" in sys.argv))
