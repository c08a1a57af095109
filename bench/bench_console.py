"""How the console's queries scale with the fleet: one page of lines stays cheap as the fleet grows.

    .venv/bin/python bench/bench_console.py [LINES] [RESULTS_PER_LINE] [--pg]

Builds a registry of LINES lines (20 districts, two carriers) with RESULTS_PER_LINE results each,
written with the collector's own ingest path, then times over HTTP (the real app under uvicorn, an
operator token) the requests a console user makes: the first fleet page, a page deep in the fleet,
the fleet filtered by health (every line's latest verdict is looked at), the overview counts, one
line, and a line's history. The reference, measured in the same run, is one ingest batch of 500
results (what the collector does anyway many times a minute). Prints each request's median time
and its ratio to the reference.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from collector.api.accounts import Accounts  # noqa: E402
from collector.api.app import create_app  # noqa: E402
from collector.api.server import HTTPServer  # noqa: E402
from collector.fleet import registry  # noqa: E402
from collector.store.database import Store  # noqa: E402
from linecheck.wire import CheckResult, Finding, ResultEnvelope, Status, new_result_id  # noqa: E402

NOW = datetime.now(UTC).replace(microsecond=0)


def envelope(line: int, i: int, seq: int) -> ResultEnvelope:
    at = NOW - timedelta(hours=6 * i + line % 6)
    bad = (line % 7 == 0) and i == 0
    checks = [CheckResult(kind="ping", status=Status.DEGRADED if bad else Status.OK, duration_s=2,
                          metrics={"loss_pct": 8.0 if bad else 0.0, "rtt_avg_ms": 6.0 + line % 5}),
              CheckResult(kind="throughput", status=Status.OK, duration_s=10,
                          metrics={"down_mbps": 470.0 - line % 50, "up_mbps": 280.0})]
    findings = [Finding(code="packet_loss", severity="warning", check="ping", where="wan",
                        message="loss")] if bad else []
    return ResultEnvelope(result_id=new_result_id(int(at.timestamp() * 1000)), agent_id=f"gw-{line}", seq=seq,
                          line_id=f"line-{line:06d}", site_id=f"site-{line // 10:05d}", trigger="schedule",
                          started_at=at, ended_at=at + timedelta(seconds=20), agent_version="bench",
                          checks=checks, findings=findings,
                          verdict="problems" if bad else "healthy")


def build(url: str, lines: int, per_line: int) -> Store:
    store = Store(url)
    reg = {"tenants": [{"tenant_id": "carrier-a", "name": "A", "kind": "carrier"},
                       {"tenant_id": "carrier-b", "name": "B", "kind": "carrier"}],
           "sites": [{"site_id": f"site-{s:05d}", "tenant_id": "carrier-a" if s % 2 else "carrier-b",
                      "district": f"District {s % 20:02d}"} for s in range(lines // 10 + 1)],
           "lines": [{"line_id": f"line-{n:06d}", "tenant_id": "carrier-a" if (n // 10) % 2 else "carrier-b",
                      "site_id": f"site-{n // 10:05d}", "plan_down_mbps": 500, "plan_up_mbps": 300}
                     for n in range(lines)],
           "agents": [{"agent_id": f"gw-{n}", "line_id": f"line-{n:06d}"} for n in range(lines)]}
    with store.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate(reg))
    batch: list[ResultEnvelope] = []
    for n in range(lines):
        for i in range(per_line):
            batch.append(envelope(n, i, per_line - i))
            if len(batch) >= 2000:
                store.ingest(batch)
                batch = []
    if batch:
        store.ingest(batch)
    return store


def timed(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    lines = int(args[0]) if args else 20000
    per_line = int(args[1]) if len(args) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        if "--pg" not in sys.argv:
            return run(f"sqlite:///{tmp}/bench.db", lines, per_line)
        import uuid

        from sqlalchemy import create_engine, text

        admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
        name = f"bench_console_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            return run(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", lines, per_line)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def run(url: str, lines: int, per_line: int) -> int:
    started = time.perf_counter()
    store = build(url, lines, per_line)
    print(f"fleet: {lines} lines x {per_line} results on {url.split(':')[0]}, built in "
          f"{time.perf_counter() - started:.1f} s")
    counter = iter(range(10**9))

    def reference() -> None:  # one ingest batch of 500 new results: the collector's routine work
        k = next(counter)
        store.ingest([envelope(lines + k * 500 + j, 0, 1) for j in range(500)])

    ref = timed(reference, 3)
    accounts = Accounts(store.engine)
    accounts.create_user("bench", "carrier_admin", None)
    token = accounts.issue_token("bench")[1]
    server = HTTPServer(create_app(store.engine, console=False), "127.0.0.1", 0)
    server.start()
    api = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers={"Authorization": f"Bearer {token}"},
                       timeout=120)
    deep = max(1, lines // 50 // 2)
    requests = {
        "fleet page 1 (50 lines)": "/api/v1/lines",
        f"fleet page {deep}": f"/api/v1/lines?page={deep}",
        "fleet filtered: problems": "/api/v1/lines?status=problems",
        "fleet filtered: district": "/api/v1/lines?district=District%2007",
        "overview counts": "/api/v1/overview",
        "one line": "/api/v1/lines/line-000007",
        "line history page": "/api/v1/lines/line-000007/results",
        "agents page": "/api/v1/agents",
    }
    print(f"reference: one ingest batch of 500 results = {ref * 1000:.0f} ms")
    try:
        for label, path in requests.items():
            api.get(path).raise_for_status()
            t = timed(lambda p=path: api.get(p).raise_for_status())
            print(f"  {label:<28} {t * 1000:8.1f} ms   {t / ref:6.2f} x reference")
    finally:
        server.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
