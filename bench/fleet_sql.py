"""A large synthetic fleet generated inside PostgreSQL (generate_series), for bench/api_at_size.py.

The fleet: LINES reporting lines `line-NNNNNN`, one agent `gw-N` each, RESULTS results per line
every 20 hours (so 100 results span 82.5 days, inside the default 90-day retention); 1 % of the
reporting lines are not in the registry (the operator sees them), and LINES/100 more lines are
registered but never reported (no data). Two carriers with ten enterprise customers each, sixteen
districts, three segments. Latest verdicts: problems on every 7th line (each with an open ticket
and a finding), unknown on every 31st, healthy otherwise; older results have problems now and then.
Every 5th registered line has a speed promise with a verdict.

Results are written time-major (all lines' first result, then the second, ...) like a collector
stores them: one row each with its compact document (checks, metrics, findings; the views `checks`,
`metrics` and `findings` expand it), into day partitions made before the load. Indexes and keys of
`results` are dropped for the load and rebuilt after it (exactly as the migrations defined them),
line_state is derived by collector/line_state.rebuild,
and the database is vacuumed and analysed, as autovacuum would leave it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

import psycopg

INTERVAL_S = 72000  # 20 h between a line's results
DISTRICTS = ("Huangpu", "Xuhui", "Changning", "Jing'an", "Putuo", "Hongkou", "Yangpu", "Minhang", "Baoshan",
             "Jiading", "Pudong", "Jinshan", "Songjiang", "Qingpu", "Fengxian", "Chongming")
BIG_TABLES = ("results",)  # checks, metrics and findings are views over its documents

# SQL expressions over n (line number) and i (result number of the line), both bigint.
LINE_ID = "('line-' || lpad(n::text, 6, '0'))"
SITE_ID = "('site-' || lpad((n / 10)::text, 5, '0'))"
TENANT = ("(CASE WHEN (n / 10) % 3 = 0 THEN 'ent-' || lpad(((n / 10) / 3 % 20)::text, 2, '0') "
          "WHEN (n / 10) % 2 = 1 THEN 'carrier-a' ELSE 'carrier-b' END)")
PLAN_DOWN = "(CASE WHEN n % 10 IN (0, 1, 2) THEN 1000 ELSE 500 END)"
PLAN_UP = "(CASE WHEN n % 10 = 0 THEN 1000 ELSE 300 END)"
SEGMENT = "(CASE WHEN n % 10 = 0 THEN 'dedicated' WHEN n % 10 IN (1, 2) THEN 'retail' ELSE 'sme' END)"
REGISTERED = "(n % 100 <> 99)"


def _iso(col: str) -> str:
    return f"to_char(({col}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _result_rows(now: datetime, per_line: int, lines: int, i_from: int, i_to: int) -> str:
    """FROM clause: one row per (i, n) with st (started_at), bad, unk, rid and metric values."""
    return f"""
      FROM generate_series({i_from}::bigint, {i_to - 1}::bigint) AS i
      CROSS JOIN generate_series(0::bigint, {lines - 1}::bigint) AS n
      CROSS JOIN LATERAL (SELECT
          timestamptz '{now.isoformat()}'
            - ((({per_line} - 1 - i) * {INTERVAL_S} + n % 3600) * interval '1 second') AS st,
          ((i = {per_line} - 1 AND n % 7 = 0) OR (i < {per_line} - 1 AND (n * 7 + i) % 19 = 0)) AS bad,
          (i = {per_line} - 1 AND n % 7 <> 0 AND n % 31 = 0) AS unk) a
      CROSS JOIN LATERAL (SELECT
          lpad(to_hex((extract(epoch FROM a.st) * 1000)::bigint), 12, '0') AS ms,
          CASE WHEN a.bad THEN 8.0 ELSE 0.0 END AS loss,
          CASE WHEN a.bad THEN 40.0 ELSE 6.0 + (n + i) % 3 END AS rtt,
          round({PLAN_DOWN} * CASE WHEN a.bad THEN 0.45 ELSE 0.93 + (i % 5) * 0.01 END, 1) AS down,
          round({PLAN_UP} * 0.9, 1) AS up) b
      CROSS JOIN LATERAL (SELECT
          substr(b.ms, 1, 8) || '-' || substr(b.ms, 9, 4) || '-7' || lpad(to_hex(i % 4096), 3, '0') || '-8000-'
          || lpad(to_hex(n), 12, '0') AS rid,
          CASE WHEN a.bad THEN 'problems' WHEN a.unk THEN 'unknown' ELSE 'healthy' END AS verdict) c"""


def _insert_results(now: datetime, per_line: int, lines: int, i_from: int, i_to: int) -> str:
    # The compact document of collector/store/documents.py: what the typed columns do not already hold.
    doc = """('{"clock":{"synced":true,"source":"ntp"},"checks":['
        || '{"kind":"ping","status":"' || CASE WHEN a.bad THEN 'degraded' ELSE 'ok' END
        || '","metrics":{"loss_pct":' || b.loss || ',"rtt_avg_ms":' || b.rtt
        || '},"duration_s":2.0,"target":"198.18.0.1"},{"kind":"throughput","status":"ok",'
        || '"metrics":{"down_mbps":' || b.down || ',"up_mbps":' || b.up || '},"duration_s":10.0}]'
        || CASE WHEN a.bad THEN ',"findings":[{"code":"packet_loss","severity":"warning","check":"ping",'
           || '"where":"wan","message":"packet loss 8.0%"}]' ELSE '' END || '}')::jsonb"""
    return f"""INSERT INTO results (agent_id, result_id, seq, line_id, site_id, trigger, started_at, ended_at,
        received_at, verdict, clock_synced, agent_version, doc, clock_flag)
      SELECT 'gw-' || n, c.rid, i + 1, {LINE_ID}, {SITE_ID}, 'schedule', a.st, a.st + interval '20 seconds',
        a.st + interval '21 seconds', c.verdict, 1, '1.0.0', {doc}, NULL
      {_result_rows(now, per_line, lines, i_from, i_to)}"""


def result_days(now: datetime, per_line: int) -> list[date]:
    """The days the fleet's results start on (their day partitions are made before the load)."""
    first = now - timedelta(seconds=(per_line - 1) * INTERVAL_S + 3600)
    return [(first + timedelta(days=d)).date() for d in range((now - first).days + 2)]


def _registry(now: datetime, lines: int, per_line: int) -> list[str]:
    every = lines + lines // 100  # reporting lines, then registered lines that never reported
    sites = -(-every // 10)
    first = now - timedelta(seconds=(per_line - 1) * INTERVAL_S + 3600)
    ts = f"timestamptz '{now.isoformat()}'"
    districts = "ARRAY[" + ", ".join("'" + d.replace("'", "''") + "'" for d in DISTRICTS) + "]"
    return [
        f"""INSERT INTO tenants (tenant_id, name, kind, parent_id, created_at, updated_at) VALUES
            ('carrier-a', 'Shanghai Telecom', 'carrier', NULL, {ts}, {ts}),
            ('carrier-b', 'Shanghai Mobile', 'carrier', NULL, {ts}, {ts})""",
        f"""INSERT INTO tenants (tenant_id, name, kind, parent_id, created_at, updated_at)
          SELECT 'ent-' || lpad(e::text, 2, '0'), 'Enterprise ' || e, 'enterprise',
            CASE WHEN e % 2 = 0 THEN 'carrier-a' ELSE 'carrier-b' END, {ts}, {ts}
          FROM generate_series(0, 19) AS e""",
        f"""INSERT INTO sites (site_id, tenant_id, name, address, district, created_at, updated_at)
          SELECT {SITE_ID.replace('n / 10', 's')}, {TENANT.replace('n / 10', 's')}, 'Site ' || s, NULL,
            ({districts})[s % 16 + 1], {ts}, {ts}
          FROM generate_series(0::bigint, {sites - 1}::bigint) AS s""",
        f"""INSERT INTO lines (line_id, tenant_id, site_id, name, district, segment, plan_down_mbps, plan_up_mbps,
            account_since, created_at, updated_at)
          SELECT {LINE_ID}, {TENANT}, {SITE_ID}, 'Line ' || n, ({districts})[(n / 10) % 16 + 1], {SEGMENT},
            {PLAN_DOWN}, {PLAN_UP}, date '2019-01-01' + (n % 1000)::int, {ts}, {ts}
          FROM generate_series(0::bigint, {every - 1}::bigint) AS n WHERE n >= {lines} OR {REGISTERED}""",
        f"""INSERT INTO agents (agent_id, line_id, site_id, first_seen, last_seen, max_seq, result_count, status,
            status_at, enrolled_at, report_interval_s)
          SELECT 'gw-' || n, {LINE_ID}, {SITE_ID},
            CASE WHEN n < {lines} THEN timestamptz '{first.isoformat()}' END,
            CASE WHEN n < {lines} THEN {ts} - (n % 3600) * interval '1 second' + interval '21 seconds' END,
            CASE WHEN n < {lines} THEN {per_line} ELSE 0 END, CASE WHEN n < {lines} THEN {per_line} ELSE 0 END,
            CASE WHEN n >= {lines} THEN NULL WHEN n % 20 = 0 THEN 'offline' ELSE 'online' END,
            CASE WHEN n < {lines} THEN {ts} - interval '1 hour' END,
            CASE WHEN n >= {lines} OR {REGISTERED} THEN timestamptz '{first.isoformat()}' - interval '1 day' END,
            {INTERVAL_S}
          FROM generate_series(0::bigint, {every - 1}::bigint) AS n""",
    ]


def _tickets_and_promises(now: datetime, lines: int, per_line: int) -> list[str]:
    ts = f"timestamptz '{now.isoformat()}'"
    effective = (now - timedelta(days=60)).date().isoformat()
    latest = f"({ts} - (n % 3600) * interval '1 second')"
    return [
        f"""INSERT INTO tickets (line_id, fault_class, state, severity, location, summary, tenant_id, site_id,
            agent_id, opened_by, opened_at, updated_at)
          SELECT {LINE_ID}, 'packet_loss', 'open', 'warning', 'wan', 'packet_loss on ' || {LINE_ID}, {TENANT},
            {SITE_ID}, 'gw-' || n, 'rule', {latest} + interval '25 seconds', {latest} + interval '25 seconds'
          FROM generate_series(0::bigint, {lines - 1}::bigint) AS n WHERE n % 7 = 0 AND {REGISTERED}""",
        """INSERT INTO ticket_events (ticket_id, at, kind, from_state, to_state, actor)
          SELECT ticket_id, opened_at, 'opened', NULL, 'open', 'rule' FROM tickets""",
        """INSERT INTO ticket_evidence (ticket_id, agent_id, result_id, role, added_at)
          SELECT k.ticket_id, l.agent_id, l.result_id, 'trigger', k.opened_at
          FROM tickets k JOIN line_state l ON l.line_id = k.line_id WHERE l.result_id IS NOT NULL""",
        f"""INSERT INTO promises (promise_id, line_id, kind, effective, grace_days, terms, note, created_at, updated_at)
          SELECT {LINE_ID} || '-speed', {LINE_ID}, 'speed', date '{effective}', 0,
            '{{"id":"' || {LINE_ID} || '-speed","line_id":"' || {LINE_ID} || '","effective":"{effective}",'
            || '"grace_days":0,"note":null,"kind":"speed","down_mbps":' || {PLAN_DOWN} || '.0,"up_mbps":'
            || {PLAN_UP} || '.0,"steps":[]}}', NULL, {ts}, {ts}
          FROM generate_series(0::bigint, {lines - 1}::bigint) AS n WHERE n % 5 = 0 AND {REGISTERED}""",
        f"""INSERT INTO promise_verdicts (promise_id, line_id, kind, outcome, in_grace, summary, detail,
            delivered_ratio, evaluated_at, judgeable_from, outcome_since, ticket_id)
          SELECT p.promise_id, p.line_id, 'speed', o.outcome, false, o.outcome || ' (bench)',
            '{{"promise_id":"' || p.promise_id || '","detail":{{}},"fixes":[]}}', o.ratio, {ts},
            {ts} - interval '50 days', {ts} - interval '3 days', NULL
          FROM promises p CROSS JOIN LATERAL (SELECT substr(p.line_id, 6)::bigint / 5 % 10 AS k) q
          CROSS JOIN LATERAL (SELECT CASE WHEN q.k < 7 THEN 'delivered' WHEN q.k = 7 THEN 'not_delivered'
              WHEN q.k = 8 THEN 'inconclusive' ELSE 'limited_by_local_equipment' END AS outcome,
            CASE WHEN q.k = 7 THEN 0.55 WHEN q.k = 8 THEN NULL ELSE 0.95 END AS ratio) o""",
    ]


def _big_table_ddl(cur: psycopg.Cursor) -> tuple[list[str], list[str], list[str]]:
    """(drop statements, re-create statements for keys and indexes, re-create statements for foreign keys)."""
    cons = cur.execute("""SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
                          FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) AND contype IN ('p', 'f')""",
                       (list(BIG_TABLES),)).fetchall()
    idx = cur.execute("""SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)
                         AND indexname NOT IN (SELECT conname FROM pg_constraint)""", (list(BIG_TABLES),)).fetchall()
    fks = [c for c in cons if c[2] == "f"]
    pks = [c for c in cons if c[2] == "p"]
    drop = [f'ALTER TABLE {tbl} DROP CONSTRAINT "{name}"' for tbl, name, _, _ in fks + pks]
    drop += [f'DROP INDEX "{name}"' for _, name, _ in idx]
    keys = [f'ALTER TABLE {tbl} ADD CONSTRAINT "{name}" {ddl}' for tbl, name, _, ddl in pks]
    # pg_indexes spells an index of a partitioned table `ON ONLY results`: re-created that way it would
    # cover no partition and stay INVALID (every query a sequential scan of every day). Without ONLY it
    # is built on each partition and attached.
    keys += [ddl.replace(" ON ONLY ", " ON ", 1) for _, _, ddl in idx]
    return drop, keys, [f'ALTER TABLE {tbl} ADD CONSTRAINT "{name}" {ddl}' for tbl, name, _, ddl in fks]


def _parallel(dsn: str, statements: list[str], workers: int) -> None:
    """Run independent statements on `workers` connections at once (2 cores: two at a time)."""
    queue = list(statements)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute("SET work_mem = '64MB'")
            while True:
                with lock:
                    if not queue or errors:
                        return
                    sql = queue.pop(0)
                try:
                    conn.execute(sql)  # type: ignore[arg-type]
                except BaseException as exc:  # noqa: BLE001 - reported by the caller
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


def check_indexes_valid(dsn: str) -> None:
    """Raise when an index is INVALID (never built on every partition): the figures would measure scans."""
    with psycopg.connect(dsn) as conn:
        bad = [r[0] for r in conn.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")]
    if bad:
        raise RuntimeError(f"invalid indexes after the load: {', '.join(bad)}")


def load(dsn: str, lines: int, per_line: int, now: datetime, rebuild_state: Callable[[], int],
         say: Callable[[str], None] = print, workers: int = 2) -> dict[str, float]:
    """Fill a freshly migrated database. `rebuild_state` derives line_state (the collector's own code).

    Returns the seconds each phase took.
    """
    took: dict[str, float] = {}

    def phase(name: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        fn()
        took[name] = time.perf_counter() - start
        say(f"  {name}: {took[name]:.1f} s")

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor()
        drop, keys, fks = _big_table_ddl(cur)
        phase("registry and agents", lambda: [cur.execute(s) for s in _registry(now, lines, per_line)])  # type: ignore[call-overload]
        phase("drop keys of the big tables", lambda: [cur.execute(s) for s in drop])  # type: ignore[call-overload]
    # Split the results into slices of the time axis, so each slice is one transaction of bounded size.
    step = max(1, -(-per_line // 10))
    slices = [(lo, min(per_line, lo + step)) for lo in range(0, per_line, step)]
    phase("results", lambda: _parallel(dsn, [_insert_results(now, per_line, lines, lo, hi) for lo, hi in slices],
                                       workers))
    phase("keys and indexes", lambda: _parallel(dsn, keys, workers))
    phase("foreign keys", lambda: _parallel(dsn, fks, 1))
    check_indexes_valid(dsn)
    phase("line_state (collector.store.line_state.rebuild)", rebuild_state)
    with psycopg.connect(dsn, autocommit=True) as conn:
        phase("tickets and promises", lambda: [conn.execute(s) for s in _tickets_and_promises(now, lines, per_line)])  # type: ignore[call-overload]
        phase("vacuum analyze", lambda: conn.execute("VACUUM (ANALYZE)"))
    return took
