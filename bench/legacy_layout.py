"""The result layout before migration 13 (schema version 12), written the way its ingest wrote it.

For comparisons in the same run (bench/storage_size.py) and for the migration test of an existing
database (tests/test_store_layout.py): results with the envelope's JSON `payload`, one row per check,
per metric and per finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import BindParameter, Connection, bindparam, inspect, text

from collector.store.database import MIGRATIONS
from collector.store.types import UtcDateTime
from linecheck.wire import ResultEnvelope

V12 = 12


def create(conn: Connection) -> None:
    """Schema version 12 on an empty database (nothing when it is there already)."""
    if inspect(conn).has_table("schema_version"):
        return
    conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"))
    for version, step in enumerate(MIGRATIONS[:V12], start=1):
        step(conn)
        conn.execute(text("INSERT INTO schema_version VALUES (:v, :at)"), {"v": version, "at": datetime.now(UTC)})


def write(conn: Connection, envelopes: Sequence[ResultEnvelope], received: datetime | None = None) -> None:
    received = received or datetime.now(UTC)
    for i in range(0, len(envelopes), 500):
        chunk = envelopes[i:i + 500]
        conn.execute(text(
            "INSERT INTO results (agent_id, result_id, seq, line_id, site_id, trigger, started_at, ended_at, "
            "received_at, verdict, clock_synced, agent_version, payload, clock_flag) VALUES (:a, :r, :seq, :l, "
            ":s, :tr, :st, :en, :rc, :v, :cs, :av, :p, NULL)").bindparams(*_stamps("st", "en", "rc")),
            [{"a": e.agent_id, "r": e.result_id, "seq": e.seq, "l": e.line_id, "s": e.site_id,
              "tr": e.trigger.value, "st": e.started_at, "en": e.ended_at, "rc": received, "v": e.verdict.value,
              "cs": None if e.clock.synced is None else int(e.clock.synced), "av": e.agent_version,
              "p": e.model_dump_json(by_alias=True)} for e in chunk])
        checks = [{"a": e.agent_id, "r": e.result_id, "i": i, "l": e.line_id, "st": e.started_at, "k": c.kind,
                   "t": c.target, "s": c.status.value, "re": c.reason, "d": c.duration_s}
                  for e in chunk for i, c in enumerate(e.checks)]
        if checks:
            conn.execute(text("INSERT INTO checks VALUES (:a, :r, :i, :l, :st, :k, :t, :s, :re, :d)")
                         .bindparams(*_stamps("st")), checks)
        metrics = [{"a": e.agent_id, "r": e.result_id, "i": i, "n": n, "v": None if v is None else float(v)}
                   for e in chunk for i, c in enumerate(e.checks) for n, v in c.metrics.items()]
        if metrics:
            conn.execute(text("INSERT INTO metrics VALUES (:a, :r, :i, :n, :v)"), metrics)
        found = [{"a": e.agent_id, "r": e.result_id, "i": i, "l": e.line_id, "st": e.started_at, "c": f.code,
                  "s": f.severity, "k": f.check, "w": f.where, "m": f.message}
                 for e in chunk for i, f in enumerate(e.findings)]
        if found:
            conn.execute(text("INSERT INTO findings VALUES (:a, :r, :i, :l, :st, :c, :s, :k, :w, :m)")
                         .bindparams(*_stamps("st")), found)


def _stamps(*names: str) -> list[BindParameter[datetime]]:
    """Times bound as the collector binds them (SQLite: the same text UtcDateTime writes)."""
    return [bindparam(n, type_=UtcDateTime()) for n in names]
