"""Storage: open the database named by the DSN, migrate it, and write ingest batches in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite

from collector import schema as t
from linecheck.wire import ResultEnvelope

# Ordered migrations: index i brings the schema from version i to i+1. Never edit a shipped one.
MIGRATIONS: list[Callable[[Connection], None]] = [
    lambda conn: t.metadata.create_all(conn, tables=[
        t.agents, t.results, t.checks, t.metrics, t.findings, t.quarantine]),
]


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets readers (API) run beside the writer; FULL because a receipt promises durability.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> int:
    """Apply pending migrations; safe to run from several collectors at once. Returns the version."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7411)")  # serialise concurrent migrators
        t.schema_version.create(conn, checkfirst=True)
        current = conn.execute(select(func.coalesce(func.max(t.schema_version.c.version), 0))).scalar_one()
        for version in range(current, len(MIGRATIONS)):
            MIGRATIONS[version](conn)
            conn.execute(t.schema_version.insert().values(version=version + 1, applied_at=datetime.now(UTC)))
        return len(MIGRATIONS)


def _insert(engine: Engine, table: t.Table):  # type: ignore[no-untyped-def]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


@dataclass
class Quarantined:
    topic: str
    agent_id: str | None
    reason: str
    payload: bytes


class Store:
    def __init__(self, url: str):
        self.engine = make_engine(url)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def ingest(self, envelopes: Sequence[ResultEnvelope], bad: Sequence[Quarantined] = (),
               received_at: datetime | None = None) -> set[tuple[str, str]]:
        """Store a batch in one transaction. Returns the (agent_id, result_id) pairs that were new."""
        now = received_at or datetime.now(UTC)
        with self.engine.begin() as conn:
            new = self._new_keys(conn, envelopes)
            fresh = [e for e in envelopes if (e.agent_id, e.result_id) in new]
            if fresh:
                self._write_results(conn, fresh, now)
            if bad:
                conn.execute(t.quarantine.insert(), [
                    {"received_at": now, "topic": q.topic, "agent_id": q.agent_id, "reason": q.reason[:2000],
                     "payload": q.payload, "payload_bytes": len(q.payload)} for q in bad])
        return new

    def _new_keys(self, conn: Connection, envelopes: Sequence[ResultEnvelope]) -> set[tuple[str, str]]:
        keys = {(e.agent_id, e.result_id) for e in envelopes}
        if not keys:
            return set()
        ids = [rid for _, rid in keys]
        seen = set(conn.execute(select(t.results.c.agent_id, t.results.c.result_id)
                                .where(t.results.c.result_id.in_(ids))).tuples())
        return keys - seen

    def _write_results(self, conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        # ON CONFLICT DO NOTHING: another collector may commit the same result between our check and insert.
        conn.execute(_insert(self.engine, t.results), [{
            "agent_id": e.agent_id, "result_id": e.result_id, "seq": e.seq, "line_id": e.line_id,
            "site_id": e.site_id, "trigger": e.trigger.value, "started_at": e.started_at,
            "ended_at": e.ended_at, "received_at": now, "verdict": e.verdict.value,
            "clock_synced": None if e.clock.synced is None else int(e.clock.synced),
            "agent_version": e.agent_version, "payload": e.model_dump_json(by_alias=True)} for e in fresh])
        check_rows, metric_rows, finding_rows = [], [], []
        for e in fresh:
            for i, c in enumerate(e.checks):
                check_rows.append({"agent_id": e.agent_id, "result_id": e.result_id, "idx": i, "line_id": e.line_id,
                                   "started_at": e.started_at, "kind": c.kind, "target": c.target,
                                   "status": c.status.value, "reason": c.reason, "duration_s": c.duration_s})
                metric_rows += [{"agent_id": e.agent_id, "result_id": e.result_id, "idx": i, "name": n,
                                 "value": None if v is None else float(v)} for n, v in c.metrics.items()]
            finding_rows += [{"agent_id": e.agent_id, "result_id": e.result_id, "idx": i, "line_id": e.line_id,
                              "started_at": e.started_at, "code": f.code, "severity": f.severity,
                              "check_kind": f.check, "location": f.where, "message": f.message}
                             for i, f in enumerate(e.findings)]
        for table, rows in ((t.checks, check_rows), (t.metrics, metric_rows), (t.findings, finding_rows)):
            if rows:
                conn.execute(_insert(self.engine, table), rows)
        self._touch_agents(conn, fresh, now)

    def _touch_agents(self, conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        latest: dict[str, ResultEnvelope] = {}
        counts: dict[str, int] = {}
        for e in fresh:
            counts[e.agent_id] = counts.get(e.agent_id, 0) + 1
            if e.agent_id not in latest or e.seq > latest[e.agent_id].seq:
                latest[e.agent_id] = e
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t.agents)
        greatest = func.max if self.engine.dialect.name == "sqlite" else func.greatest
        for agent_id, e in sorted(latest.items()):  # sorted: a stable lock order between collectors
            stmt_row = stmt.values(agent_id=agent_id, line_id=e.line_id, site_id=e.site_id, first_seen=now,
                                   last_seen=now, max_seq=e.seq, result_count=counts[agent_id])
            conn.execute(stmt_row.on_conflict_do_update(
                index_elements=[t.agents.c.agent_id],
                set_={"line_id": e.line_id, "site_id": e.site_id, "last_seen": now,
                      "max_seq": greatest(t.agents.c.max_seq, e.seq),
                      "result_count": t.agents.c.result_count + counts[agent_id]}))

    def set_agent_status(self, agent_id: str, state: str, at: datetime | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.agents.update().where(t.agents.c.agent_id == agent_id)
                         .values(status=state, status_at=at or datetime.now(UTC)))
