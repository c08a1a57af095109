"""Storage: open the database named by the DSN, migrate it, and write ingest batches in one transaction.

Side effects of new results (rules → tickets → notification outbox) run as ingest hooks INSIDE the
same transaction, so a result is never stored without its consequences and a receipt is only sent
after both are committed.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, bindparam, case, create_engine, event, func, select, tuple_
from sqlalchemy.exc import DBAPIError

from collector.ingest import binding
from collector.store import documents, line_state, partitions, relayout
from collector.store import migrations as m
from collector.store import schema as t
from collector.store.delivery import account_quarantined, lock_agents, track_sequences
from collector.store.timeflags import clock_flag
from collector.store.upsert import insert_for
from linecheck.wire import ResultEnvelope, results_topic

log = logging.getLogger(__name__)

# Ordered migrations: index i brings the schema from version i to i+1. Never edit a shipped one;
# append (see collector/store/migrations.py for why each carries its own DDL).
MIGRATIONS: list[Callable[[Connection], None]] = [
    m.v1_foundation,
    m.v2_registry,
    m.v3_enrolment,
    m.v4_console_access,
    m.v5_clock_flag,
    m.v6_tickets,
    m.v7_seq_gaps,
    m.v8_promises,
    m.v9_fleet_summary,
    m.v10_command_log,
    m.v11_ticket_event_phrases,
    m.v12_access_incidents,
    m.v13_compact_results,
    m.v14_agent_spool_backlog,
    m.v15_check_metrics_column,
]

def _spool_backlog(e: ResultEnvelope) -> int | None:
    """The spool backlog the agent reports in the `agent` pseudo-check of each result (agent/spool.py)."""
    for check in e.checks:
        if check.kind == "agent":
            value = check.metrics.get("spool_backlog_count")
            # a count the agent cannot have (negative, infinite, beyond 2^53) is not kept: it must
            # not fail the batch's agents upsert (BIGINT) for the other agents in it
            if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 2 ** 53:
                return int(value)
            return None
    return None


# A hook sees the connection of the ingest transaction, the envelopes that were new in this batch
# (never duplicates) and the batch's receive time. What it writes commits with the results.
IngestHook = Callable[[Connection, Sequence[ResultEnvelope], datetime], None]

# PostgreSQL deadlock / serialization failure: the whole batch is retried (it is idempotent).
_RETRY_SQLSTATES = {"40P01", "40001"}
_RETRIES = 5


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


PG_CONNECT_TIMEOUT_S = 10


def _compact_json(value: object) -> str:
    """JSON for document columns: no spaces (stored once per result, read by machines)."""
    return json.dumps(value, separators=(",", ":"))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, json_serializer=_compact_json)

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
    # Without a connect timeout psycopg waits for ever on a server that accepts but never answers: a
    # CLI command hung silently. The URL's own ?connect_timeout= wins.
    connect_args: dict[str, object] = {} if "connect_timeout=" in url else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    # JIT off: the result views' row estimates would make it compile for seconds (migrations.v13 _jit_off).
    if "options=" not in url:
        connect_args["options"] = "-c jit=off"
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, json_serializer=_compact_json)


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
        partitions.ensure(conn)  # today's and the next days' partitions exist before the first insert
        return len(MIGRATIONS)


@dataclass
class Quarantined:
    topic: str
    agent_id: str | None
    reason: str
    payload: bytes
    seq: int | None = None  # the agent's seq when known: not counted as missing (collector/store/delivery.py)


Key = tuple[str, str]  # (agent_id, result_id)
REUSED_ID = "result_id reused with different content"


@dataclass
class IngestOutcome:
    new: set[Key] = field(default_factory=set)
    # Quarantined here (binding, revocation, reused id), by position in the batch: an identical re-send of
    # a result is a duplicate even when another message in the batch reuses its id with other content.
    refused: dict[int, str] = field(default_factory=dict)


class Store:
    def __init__(self, url: str, hooks: Sequence[IngestHook] = (), unenrolled: binding.UnenrolledPolicy = "bind_first"):
        self.engine = make_engine(url)
        self.hooks: list[IngestHook] = list(hooks)
        self.unenrolled: binding.UnenrolledPolicy = unenrolled  # collector config ingest.unenrolled
        # This process's row in each hourly counter (collector/line_state.count_received): collectors
        # writing at once mostly touch different rows, so none waits on another's commit.
        self.shard = random.randrange(64)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def add_hook(self, hook: IngestHook) -> None:
        """Run `hook(conn, fresh_envelopes, received_at)` inside every ingest transaction that stored something."""
        self.hooks.append(hook)

    def ingest(self, envelopes: Sequence[ResultEnvelope], bad: Sequence[Quarantined] = (),
               received_at: datetime | None = None) -> set[tuple[str, str]]:
        """Store a batch in one transaction. Returns the (agent_id, result_id) pairs that were new."""
        return self.ingest_outcome(envelopes, bad, received_at).new

    def ingest_outcome(self, envelopes: Sequence[ResultEnvelope], bad: Sequence[Quarantined] = (),
                       received_at: datetime | None = None, raw: Sequence[bytes] | None = None) -> IngestOutcome:
        """Store a batch in one transaction: the new results, and in quarantine `bad` plus the results this
        store refuses (not bound to the line they name, revoked agent, result id reused with other content).
        `raw[i]` is envelope i's payload as received, kept as the quarantine's evidence."""
        now = received_at or datetime.now(UTC)
        for attempt in range(_RETRIES):
            try:
                return self._ingest_once(envelopes, bad, now, raw or ())
            except DBAPIError as exc:
                # Two collectors writing the same lines can deadlock on PostgreSQL; one of them is
                # told so and simply tries again (nothing was committed).
                if not _retryable(exc) or attempt == _RETRIES - 1:
                    raise
                log.info("ingest batch retried after %s", getattr(exc.orig, "sqlstate", "?"))
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _ingest_once(self, envelopes: Sequence[ResultEnvelope], bad: Sequence[Quarantined],
                     now: datetime, raw: Sequence[bytes]) -> IngestOutcome:
        refused: dict[int, str] = {}
        with self.engine.begin() as conn:
            lock_agents(conn, [e.agent_id for e in envelopes])
            # Custody first: nothing below (results, agents, line state, hooks) sees an unbound result.
            admitted = binding.admit(conn, envelopes, self.unenrolled, refused)
            new = self._new_keys(conn, envelopes, admitted, refused)
            fresh, taken = [], {}
            for i in admitted:  # a batch may hold two copies of one result: write it once
                e = envelopes[i]
                key = (e.agent_id, e.result_id)
                if i in refused:
                    continue
                if key in taken:  # the first version stands; another one under its id is evidence
                    if not _same_content(taken[key], e):
                        refused[i] = REUSED_ID
                elif key in new:
                    taken[key] = e
                    fresh.append(e)
            new = set(taken)
            if fresh:
                # Only what this transaction really inserted counts as new (and reaches the hooks).
                fresh = self._write_results(conn, fresh, now)
                new = {(e.agent_id, e.result_id) for e in fresh}
            if fresh:
                for hook in self.hooks:
                    self._run_hook(conn, hook, fresh, now)
                line_state.count_received(conn, fresh, now, self.shard)
            evidence = list(bad) + self._refused_evidence(envelopes, refused, raw)
            if evidence:
                conn.execute(t.quarantine.insert(), [
                    {"received_at": now, "topic": q.topic, "agent_id": q.agent_id, "reason": q.reason[:2000],
                     "payload": q.payload, "payload_bytes": len(q.payload)} for q in evidence])
                account_quarantined(conn, [(q.agent_id, q.seq) for q in evidence if q.agent_id and q.seq], now)
        return IngestOutcome(new, refused)

    @staticmethod
    def _refused_evidence(envelopes: Sequence[ResultEnvelope], refused: Mapping[int, str],
                          raw: Sequence[bytes]) -> list[Quarantined]:
        """One row per message refused, with its bytes as received (else its validated form)."""
        out = []
        for i, reason in sorted(refused.items()):
            e = envelopes[i]
            out.append(Quarantined(results_topic(e.agent_id), e.agent_id, reason,
                                   raw[i] if i < len(raw) else e.to_json(), e.seq))
        return out

    @staticmethod
    def _run_hook(conn: Connection, hook: IngestHook, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        # A savepoint isolates a failing hook: the results still commit (and are receipted) and the
        # hook's work is re-derived from the stored results on the next batch. Database conflicts
        # (deadlock, serialization) are not bugs: they abort the batch so that it is retried whole.
        try:
            with conn.begin_nested():
                hook(conn, fresh, now)
        except DBAPIError as exc:
            if _retryable(exc):
                raise
            log.exception("ingest hook %s failed; results stored without its side effects",
                          getattr(hook, "__qualname__", hook))
        except Exception:
            log.exception("ingest hook %s failed; results stored without its side effects",
                          getattr(hook, "__qualname__", hook))

    def _new_keys(self, conn: Connection, envelopes: Sequence[ResultEnvelope], admitted: Sequence[int],
                  refused: dict[int, str]) -> set[tuple[str, str]]:
        """Keys not stored yet. A message under a stored key with other content goes into `refused`: an
        identical re-send is a duplicate, another result under a used id is evidence, not noise."""
        keys = {(envelopes[i].agent_id, envelopes[i].result_id) for i in admitted}
        if not keys:
            return set()
        r = t.results
        rows = conn.execute(select(r).where(tuple_(r.c.agent_id, r.c.result_id).in_(sorted(keys)))).mappings().all()
        stored: dict[Key, object] = {(row["agent_id"], row["result_id"]): row for row in rows}
        # While an old database is being copied to this layout (relayout.py), its results not copied yet
        # still count as stored: a re-sent old result is a duplicate, not new.
        for row in relayout.legacy_payloads(conn, keys - set(stored)):
            stored[(row.agent_id, row.result_id)] = row.payload
        for i in admitted:
            e = envelopes[i]
            key = (e.agent_id, e.result_id)
            if key in stored and not _same_stored(stored[key], e):
                refused[i] = REUSED_ID
        return keys - set(stored)

    def _write_results(self, conn: Connection, candidates: Sequence[ResultEnvelope],
                       now: datetime) -> list[ResultEnvelope]:
        # ON CONFLICT DO NOTHING: another collector may commit the same result between our check and
        # insert; RETURNING tells which rows were ours, so nothing downstream runs twice.
        insert_results = (insert_for(conn, t.results).on_conflict_do_nothing()
                          .returning(t.results.c.agent_id, t.results.c.result_id))
        inserted = conn.execute(insert_results, [{
            "agent_id": e.agent_id, "result_id": e.result_id, "seq": e.seq, "line_id": e.line_id,
            "site_id": e.site_id, "trigger": e.trigger.value, "started_at": e.started_at,
            "ended_at": e.ended_at, "received_at": now, "verdict": e.verdict.value,
            "clock_synced": None if e.clock.synced is None else int(e.clock.synced),
            "clock_flag": clock_flag(e.started_at, e.ended_at, now),
            "agent_version": e.agent_version, "doc": documents.pack(e)} for e in candidates])
        ours = {(r.agent_id, r.result_id) for r in inserted}
        fresh = [e for e in candidates if (e.agent_id, e.result_id) in ours]
        track_sequences(conn, fresh, now)  # reads max_seq before _touch_agents raises it
        self._touch_agents(conn, fresh, now)
        line_state.record(conn, fresh, now)
        return fresh

    def _touch_agents(self, conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime) -> None:
        latest: dict[str, ResultEnvelope] = {}
        counts: dict[str, int] = {}
        for e in fresh:
            counts[e.agent_id] = counts.get(e.agent_id, 0) + 1
            if e.agent_id not in latest or e.seq > latest[e.agent_id].seq:
                latest[e.agent_id] = e
        if not latest:
            return
        stmt = insert_for(conn, t.agents)
        greatest = func.max if self.engine.dialect.name == "sqlite" else func.greatest
        # One executemany for the batch (a statement per agent cost a round trip each on
        # PostgreSQL), rows sorted by agent: a stable row-lock order between collectors.
        # line_id and site_id are written only with a new row (its binding, collector/ingest/binding.py): ingest
        # never moves an agent between lines, only enrolment and the registry do.
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[t.agents.c.agent_id],
            set_={"last_seen": stmt.excluded.last_seen,
                  "first_seen": func.coalesce(t.agents.c.first_seen, stmt.excluded.first_seen),  # enrolled, 1st report
                  "max_seq": greatest(t.agents.c.max_seq, stmt.excluded.max_seq),
                  # what the newest result (the highest seq) reported; an older one arriving late does not count
                  "spool_backlog": case((stmt.excluded.max_seq >= t.agents.c.max_seq, stmt.excluded.spool_backlog),
                                        else_=t.agents.c.spool_backlog),
                  "result_count": t.agents.c.result_count + stmt.excluded.result_count}),
            [{"agent_id": agent_id, "line_id": e.line_id, "site_id": e.site_id, "first_seen": now, "last_seen": now,
              "max_seq": e.seq, "spool_backlog": _spool_backlog(e), "result_count": counts[agent_id]}
             for agent_id, e in sorted(latest.items())])

    def set_agent_statuses(self, statuses: dict[str, tuple[str, datetime]]) -> set[str]:
        """Record online/offline of many agents in one transaction; returns the agents that have a row
        (the others' first result is still coming). One commit for a reconnecting fleet, not one each."""
        if not statuses:
            return set()
        with self.engine.begin() as conn:
            ids = sorted(statuses)
            known: set[str] = set()
            for i in range(0, len(ids), 500):
                known.update(conn.execute(select(t.agents.c.agent_id)
                                          .where(t.agents.c.agent_id.in_(ids[i:i + 500]))).scalars())
            if known:
                conn.execute(t.agents.update().where(t.agents.c.agent_id == bindparam("b_agent"))
                             .values(status=bindparam("b_status"), status_at=bindparam("b_at")),
                             [{"b_agent": a, "b_status": statuses[a][0], "b_at": statuses[a][1]}
                              for a in sorted(known)])
        return known

    def set_agent_status(self, agent_id: str, state: str, at: datetime | None = None) -> bool:
        """Record online/offline. False when the agent has no row yet (its first result is still coming)."""
        with self.engine.begin() as conn:
            return conn.execute(t.agents.update().where(t.agents.c.agent_id == agent_id)
                                .values(status=state, status_at=at or datetime.now(UTC))).rowcount > 0


def _same_content(a: ResultEnvelope, b: ResultEnvelope) -> bool:
    return a.model_dump(mode="json", by_alias=True) == b.model_dump(mode="json", by_alias=True)


def _same_stored(stored: object, e: ResultEnvelope) -> bool:
    """Compare as envelopes (defaults filled in the same way), or as JSON when the stored one no longer
    validates (stored before a bound was added). `stored` is a results row, or an old layout's payload text."""
    mine = e.model_dump(mode="json", by_alias=True)
    try:
        if isinstance(stored, str):
            return ResultEnvelope.from_json(stored).model_dump(mode="json", by_alias=True) == mine
        return documents.envelope(stored).model_dump(mode="json", by_alias=True) == mine  # type: ignore[arg-type]
    except ValueError:
        try:
            raw = json.loads(stored) if isinstance(stored, str) else documents.unpack(stored)  # type: ignore[arg-type]
            return bool(raw == mine)
        except ValueError:
            return False
