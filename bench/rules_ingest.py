"""What the rules cost on ingest: the same fleet stored with and without the rules hook.

    .venv/bin/python bench/rules_ingest.py [LINES] [RESULTS_PER_LINE] [--pg]

Builds LINES lines (with plans in the registry); each agent sends RESULTS_PER_LINE results with a
link, a ping and a throughput check, in batches of 500 as the ingest worker commits them. A tenth
of the lines are down for a stretch, a tenth lossy, a tenth slow, so rules open tickets and ask for
re-tests along the way. Stores the fleet once without rules (the reference: what storing already
costs) and once with the rule engine as an ingest hook, each into a fresh database, and prints both
times, the ratio, results per second, and the tickets and re-tests created. --pg uses fresh
databases on the local PostgreSQL instead of SQLite files.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, select, text  # noqa: E402

from collector.fleet import registry  # noqa: E402
from collector.rules.engine import RuleEngine, RulesConfig  # noqa: E402
from collector.store import schema as t  # noqa: E402
from collector.store.database import Store  # noqa: E402
from linecheck.wire import ResultEnvelope  # noqa: E402
from tests.factory import envelope, finding, link_check, ping_check, throughput_check  # noqa: E402

PG_ADMIN = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def fleet(lines: int, per_line: int, rng: random.Random) -> list[ResultEnvelope]:
    out = []
    for r in range(per_line):  # round by round across the fleet, as results arrive
        for i in range(lines):
            kind = i % 10
            bad = 3 <= r < 8
            if kind == 0 and bad:
                checks, found = [link_check(up=False), ping_check(100)], [finding("line_down")]
            elif kind == 1 and bad:
                checks, found = [link_check(), ping_check(12)], [finding("packet_loss")]
            else:
                down = rng.uniform(150, 200) if kind == 2 and bad else rng.uniform(450, 480)
                checks, found = [link_check(), ping_check(0), throughput_check(down, rng.uniform(250, 290))], []
            out.append(envelope(f"gw-{i}", f"line-{i}", checks, found))
    return out


@contextmanager
def database(pg: bool) -> Iterator[str]:
    if not pg:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"linecheck_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(url: str, lines: int, results: list[ResultEnvelope], with_rules: bool) -> tuple[float, Counter[str]]:
    store = Store(url)
    try:
        with store.engine.begin() as conn:
            registry.import_registry(conn, registry.Registry.model_validate({
                "tenants": [{"tenant_id": "c", "name": "Carrier", "kind": "carrier"}],
                "sites": [{"site_id": "site-1", "tenant_id": "c"}],
                "lines": [{"line_id": f"line-{i}", "tenant_id": "c", "site_id": "site-1", "plan_down_mbps": 500,
                           "plan_up_mbps": 300} for i in range(lines)]}))
        if with_rules:
            store.add_hook(RuleEngine(RulesConfig()).on_ingest)
        started = time.perf_counter()
        for i in range(0, len(results), 500):
            store.ingest(results[i:i + 500])
        elapsed = time.perf_counter() - started
        with store.engine.connect() as conn:
            made = Counter(r.fault_class for r in conn.execute(select(t.tickets.c.fault_class)))
            made.update(f"retest:{r.fault_class}" for r in conn.execute(select(t.commands.c.fault_class)))
        return elapsed, made
    finally:
        store.close()


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    lines = int(args[0]) if args else 500
    per_line = int(args[1]) if len(args) > 1 else 12
    pg = "--pg" in sys.argv
    logging.basicConfig(level=logging.ERROR)
    results = fleet(lines, per_line, random.Random(7))
    with database(pg) as url:
        plain, _ = run(url, lines, results, with_rules=False)
    # The same envelopes again (fresh database): parsing and ids are identical work in both runs.
    with database(pg) as url:
        ruled, made = run(url, lines, results, with_rules=True)
    n = len(results)
    print(f"backend: {'postgresql' if pg else 'sqlite'}; {lines} lines x {per_line} results = {n} results, "
          f"batches of 500; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"ingest without rules (reference): {plain:.2f} s ({n / plain:.0f} results/s)")
    print(f"ingest with rules:                {ruled:.2f} s ({n / ruled:.0f} results/s)")
    print(f"ratio with/without rules: {ruled / plain:.2f}")
    print("created: " + ", ".join(f"{k} {v}" for k, v in sorted(made.items())))


if __name__ == "__main__":
    main()
