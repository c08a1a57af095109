"""API and console latency on a PostgreSQL fleet of 100,000 lines and 10,000,000 results.

    .venv/bin/python bench/api_at_size.py [--lines 100000] [--results-per-line 100] [--samples 200]
                                          [--ref-lines 1000] [--rebuild] [--no-cache] [--drop-cache]

Loads the fleet with bench/fleet_sql.py (generated inside PostgreSQL; see there what it holds) into
the database `linecheck_apisize_<lines>x<results>_g<version>` and keeps it: later runs reuse it
(the bench only reads; it adds a few users and tokens). The cache is used in place, not cloned from
a template, because a clone copies the whole database (≈12 GB) on every run. `--rebuild` loads it
again, `--no-cache` loads into a throw-away database, `--drop-cache` drops the cached ones and exits.
Migrations added since the load are applied to the cached database when the run opens it.

The reference, built fresh in every run by the same generator: a fleet of `--ref-lines` lines with
the same results per line. Each database gets its own server process (the real app under uvicorn,
console included, on a free port); the same requests go to both, interleaved (so load from other
processes on the machine hits both alike), as the operator (sees every tenant) and as a carrier
admin (a tenant and its enterprise customers: about half the fleet). Prints p50/p95/p99 per
request, p95 as a ratio to the reference fleet's and to /healthz (the app's floor), and whether the
100 ms target of the fleet overview and the line list is met.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench import fleet_sql  # noqa: E402
from collector.api.accounts import Accounts  # noqa: E402
from collector.api.deps import SESSION_COOKIE  # noqa: E402
from collector.store import line_state, partitions  # noqa: E402
from collector.store.database import Store  # noqa: E402

GENERATOR_VERSION = 2  # bump when fleet_sql changes what it writes: cached databases are then rebuilt
TARGET_MS = 100.0
ADMIN_URL = os.environ.get("LINECHECK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CACHE_PREFIX = "linecheck_apisize_"


def _url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _admin() -> psycopg.Connection:
    return psycopg.connect(_dsn(ADMIN_URL), autocommit=True)


def _comment(name: str) -> str | None:
    with _admin() as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           (name,)).fetchone()
    return None if row is None else (row[0] or "")


def _drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build(name: str, lines: int, per_line: int, say=print) -> float:  # type: ignore[no-untyped-def]
    """Create database `name` with the fleet; returns the seconds it took."""
    started = time.perf_counter()
    _drop(name)
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _url(name)
    store = Store(url)  # the schema through the collector's own migrations
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with store.engine.begin() as conn:  # every day of the fleet's results gets its partition, as at ingest
        partitions.ensure_days(conn, fleet_sql.result_days(now, per_line))

    def rebuild() -> int:
        with store.engine.begin() as conn:
            return line_state.rebuild(conn)

    try:
        fleet_sql.load(_dsn(url), lines, per_line, now, rebuild, say=say)
    finally:
        store.close()
    took = time.perf_counter() - started
    with _admin() as conn:
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS 'api_at_size complete {now.isoformat()} {took:.0f}s'")
    return took


def cached(lines: int, per_line: int, rebuild: bool, say=print) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The cached fleet database (built if missing, incomplete or asked); returns (name, how it came)."""
    name = f"{CACHE_PREFIX}{lines}x{per_line}_g{GENERATOR_VERSION}"
    comment = _comment(name)
    if comment and comment.startswith("api_at_size complete") and not rebuild:
        try:
            fleet_sql.check_indexes_valid(_dsn(_url(name)))
            return name, f"reused ({comment.split()[2]}, loaded in {comment.split()[3]})"
        except RuntimeError as exc:  # a cache from before fleet_sql re-created partitioned indexes whole
            say(f"cached {name}: {exc}; loading it again")
    say(f"loading {lines} lines x {per_line} results into {name} (kept for later runs) ...")
    took = build(name, lines, per_line, say)
    return name, f"loaded now in {took:.0f} s"


# --- servers and requests ------------------------------------------------------------------------


def serve(url: str) -> None:
    """Child process: the collector's HTTP app on a free port; prints the port, runs until stdin closes.

    Beside it, the agent-count refresh that `linecheck-collector serve` runs in its background loop.
    """
    import threading

    from collector.api.app import create_app
    from collector.api.fleet_summary import AGENT_COUNTS_EVERY_S, refresh_agent_counts
    from collector.api.server import HTTPServer
    from collector.store.database import make_engine

    engine = make_engine(url)
    done = threading.Event()

    def refresh() -> None:
        while not done.is_set():
            with engine.begin() as conn:
                refresh_agent_counts(conn)
            done.wait(AGENT_COUNTS_EVERY_S)

    refresher = threading.Thread(target=refresh, daemon=True)
    refresher.start()
    server = HTTPServer(create_app(engine), "127.0.0.1", 0)
    server.start()
    print(f"PORT {server.port}", flush=True)
    sys.stdin.read()
    done.set()
    server.stop()
    refresher.join(30)
    engine.dispose()


@dataclass
class Fleet:
    """One database behind its own server process, with clients for the operator and a carrier admin."""
    label: str
    url: str
    lines: int
    proc: subprocess.Popen[str] | None = None
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def start(self) -> None:
        store = Store(self.url)  # applies migrations added since the load
        accounts = Accounts(store.engine)
        tokens: dict[str, tuple[str, str]] = {}
        for user, tenant in (("bench-operator", None), ("bench-carrier-a", "carrier-a")):
            if accounts.user(user) is None:
                accounts.create_user(user, "carrier_admin", tenant)
            tokens[user] = (accounts.issue_token(user, name="api_at_size", ttl=timedelta(hours=6))[1],
                            accounts.issue_token(user, kind="session", ttl=timedelta(hours=6))[1])
        store.close()
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", self.url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the server for {self.label} did not start (said {line!r})")
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        for user, (api, session) in tokens.items():
            self.clients[user] = httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {api}"},
                                              cookies={SESSION_COOKIE: session})

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class Probe:
    label: str
    user: str
    path: str  # "{deep}" = the page in the middle of the fleet, "{mid}" = the line id in the middle
    target: bool = False  # covered by the 100 ms target (fleet overview and line list)


OP, CA = "bench-operator", "bench-carrier-a"
PROBES = [
    Probe("GET /healthz (floor)", OP, "/healthz"),
    Probe("overview, operator", OP, "/api/v1/overview", True),
    Probe("overview, carrier admin", CA, "/api/v1/overview", True),
    Probe("lines page 1, operator", OP, "/api/v1/lines", True),
    Probe("lines page 1, carrier admin", CA, "/api/v1/lines", True),
    Probe("lines ?status=problems", OP, "/api/v1/lines?status=problems", True),
    Probe("lines ?status=no_data", OP, "/api/v1/lines?status=no_data", True),
    Probe("lines ?district=Xuhui&segment=sme", OP, "/api/v1/lines?district=Xuhui&segment=sme", True),
    Probe("lines ?status=problems, carrier", CA, "/api/v1/lines?status=problems&district=Xuhui", True),
    Probe("lines ?q= (id substring)", OP, "/api/v1/lines?q=00042", True),
    Probe("lines deep page (offset)", OP, "/api/v1/lines?page={deep}", True),
    Probe("lines deep page (?after=)", OP, "/api/v1/lines?after={mid}", True),
    Probe("line detail", OP, "/api/v1/lines/line-000007"),
    Probe("line results page", OP, "/api/v1/lines/line-000007/results"),
    Probe("line series (30 days)", OP, "/api/v1/lines/line-000007/series"),
    Probe("agents page 1", OP, "/api/v1/agents"),
    Probe("console: fleet", OP, "/console/"),
    Probe("console: fleet, carrier admin", CA, "/console/"),
    Probe("console: fleet ?status=problems", OP, "/console/?status=problems"),
    Probe("console: line", OP, "/console/lines/line-000007"),
    Probe("console: agents", OP, "/console/agents"),
    Probe("console: tickets", OP, "/console/tickets"),
    Probe("console: promises", OP, "/console/promises"),
]


def _path(probe: Probe, lines: int) -> str:
    return probe.path.format(deep=max(1, lines // 100), mid=f"line-{lines // 2:06d}")


def _get(fleet: Fleet, probe: Probe) -> float:
    client = fleet.clients[probe.user]
    path = _path(probe, fleet.lines)
    start = time.perf_counter()
    response = client.get(path)
    took = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"{fleet.label} {path}: HTTP {response.status_code} {response.text[:200]}")
    return took * 1000


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def measure(fleets: list[Fleet], samples: int, warmup: int = 3) -> dict[tuple[str, str], list[float]]:
    """Every probe on every fleet, round-robin, `samples` times (after `warmup` untimed rounds)."""
    times: dict[tuple[str, str], list[float]] = {(f.label, p.label): [] for f in fleets for p in PROBES}
    for round_ in range(warmup + samples):
        for probe in PROBES:
            for fleet in fleets:
                ms = _get(fleet, probe)
                if round_ >= warmup:
                    times[(fleet.label, probe.label)].append(ms)
    return times


def report(times: dict[tuple[str, str], list[float]], big: Fleet, ref: Fleet) -> bool:
    floor = _pct(times[(big.label, PROBES[0].label)], 95)
    print(f"\n{'request':<38} {'p50':>7} {'p95':>7} {'p99':>7}   {'ref p95':>7} {'x ref':>6} {'x healthz':>9}  target")
    met = True
    for probe in PROBES:
        mine, theirs = times[(big.label, probe.label)], times[(ref.label, probe.label)]
        p95, ref95 = _pct(mine, 95), _pct(theirs, 95)
        verdict = ""
        if probe.target:
            verdict = "met" if p95 <= TARGET_MS else f"MISSED by {p95 - TARGET_MS:.0f} ms"
            met = met and p95 <= TARGET_MS
        print(f"{probe.label:<38} {statistics.median(mine):7.1f} {p95:7.1f} {_pct(mine, 99):7.1f}   "
              f"{ref95:7.1f} {p95 / ref95:6.2f} {p95 / floor:9.1f}  {verdict}")
    print(f"\n(ms; 'x ref' = p95 on {big.label} / p95 on {ref.label}; 'x healthz' = p95 / p95 of /healthz on "
          f"{big.label}; target: fleet overview and line list p95 <= {TARGET_MS:.0f} ms) -> "
          f"{'TARGET MET' if met else 'TARGET MISSED'}")
    return met


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--results-per-line", type=int, default=100)
    ap.add_argument("--ref-lines", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rebuild", action="store_true", help="load the cached fleet again")
    ap.add_argument("--no-cache", action="store_true", help="load into a throw-away database, dropped after")
    ap.add_argument("--drop-cache", action="store_true", help="drop every cached fleet database and exit")
    ap.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.drop_cache:
        with _admin() as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                (CACHE_PREFIX + "%",))]
        for name in names:
            _drop(name)
            print(f"dropped {name}")
        return 0
    if args.lines < 100 or args.ref_lines < 100 or args.results_per_line < 2:
        ap.error("--lines and --ref-lines need at least 100 lines, --results-per-line at least 2")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    run_id = uuid.uuid4().hex[:8]
    throwaway = [f"{CACHE_PREFIX}ref_{run_id}"]
    fleets: list[Fleet] = []
    try:
        if args.no_cache:
            big_name = f"{CACHE_PREFIX}run_{run_id}"
            throwaway.append(big_name)
            how = f"loaded now in {build(big_name, args.lines, args.results_per_line):.0f} s (not kept)"
        else:
            big_name, how = cached(args.lines, args.results_per_line, args.rebuild)
        ref_took = build(throwaway[0], args.ref_lines, args.results_per_line, say=lambda _: None)
        big = Fleet(f"{args.lines} lines", _url(big_name), args.lines)
        ref = Fleet(f"{args.ref_lines} lines", _url(throwaway[0]), args.ref_lines)
        fleets = [big, ref]
        print(f"fleet: {args.lines} lines x {args.results_per_line} results = "
              f"{args.lines * args.results_per_line:,} results in {big_name}: {how}")
        print(f"reference fleet: {args.ref_lines} lines x {args.results_per_line} results in {throwaway[0]}, "
              f"loaded in {ref_took:.0f} s")
        for fleet in fleets:
            fleet.start()
        times = measure(fleets, args.samples)
        report(times, big, ref)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for fleet in fleets:
            fleet.stop()
        for name in throwaway:
            _drop(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
