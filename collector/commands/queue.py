"""Commands the collector decides on by itself (re-tests), queued in the database and published after commit.

A rule decides to ask for a re-test inside the ingest transaction; it cannot publish there (the
transaction may still roll back), so it writes a `commands` row (an outbox). `Outbox` publishes
due rows after commit on the ingest's MQTT connection and marks them sent, through the same publish
function as the commands people send (collector/commands/outgoing.py: QoS 1 and
retained, so an agent that is briefly offline gets it when it reconnects); the agent ignores it once
expired and runs a command id once. Re-tests skip the people's rate limits (commands/limits.py): at
most one is outstanding per line and fault class. It answers a re-test with a result whose trigger is `retest` and
`trigger_info.command_id` set. A re-test nobody answers expires (no ticket) and is asked again later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy import Connection, Engine, Row, select

from collector.commands.outgoing import log_sent, publish_nowait
from collector.store import schema as t
from collector.store.upsert import insert_for
from linecheck.wire import Command, new_result_id

log = logging.getLogger(__name__)


def new_command_id() -> str:
    return new_result_id()  # time-ordered, like the ids collector.commands.publish.make_command gives


def queue(conn: Connection, *, agent_id: str, action: str, ttl_s: float, checks: Sequence[str] | None = None,
          reason: str | None = None, line_id: str | None = None, fault_class: str | None = None,
          now: datetime | None = None) -> str | None:
    """Queue a command for publishing. For a re-test tied to (line, class) only one may be outstanding:
    returns None when one already is (another collector may have queued it)."""
    now = now or datetime.now(UTC)
    command_id = new_command_id()
    stmt = insert_for(conn, t.commands).values(
        command_id=command_id, agent_id=agent_id, action=action,
        checks=json.dumps(list(checks)) if checks else None, reason=reason, line_id=line_id,
        fault_class=fault_class, state="pending", created_at=now, expires_at=now + timedelta(seconds=ttl_s))
    if line_id and fault_class:
        stmt = stmt.on_conflict_do_nothing(index_elements=["line_id", "fault_class"],
                                           index_where=t.OUTSTANDING_PREDICATE)
    done = conn.execute(stmt.returning(t.commands.c.command_id)).scalar()
    return str(done) if done else None


def outstanding(conn: Connection, line_id: str, fault_class: str | None = None) -> list[Row[Any]]:
    stmt = select(t.commands).where(t.commands.c.line_id == line_id, t.commands.c.state.in_(("pending", "sent")))
    if fault_class:
        stmt = stmt.where(t.commands.c.fault_class == fault_class)
    return list(conn.execute(stmt))


def answer(conn: Connection, command_id: str, state: str, result_id: str, taken_at: datetime) -> None:
    """Record how a re-test came out: confirmed or refuted, by which result, taken when."""
    conn.execute(t.commands.update().where(t.commands.c.command_id == command_id)
                 .values(state=state, answered_at=taken_at, answer_result_id=result_id))


def expire(conn: Connection, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    return conn.execute(t.commands.update().where(t.commands.c.state.in_(("pending", "sent")),
                                                  t.commands.c.expires_at < now)
                        .values(state="expired")).rowcount


def to_wire(row: Row[Any]) -> Command:
    return Command(command_id=row.command_id, action=row.action, expires_at=row.expires_at, reason=row.reason,
                   checks=json.loads(row.checks) if row.checks else None)


class Outbox:
    """Publishes pending commands after commit. Safe with several collectors: rows are claimed with
    SKIP LOCKED on PostgreSQL (SQLite has one writer)."""

    def __init__(self, engine: Engine, client: mqtt.Client):
        self.engine = engine
        self.client = client

    def publish_due(self, now: datetime | None = None, limit: int = 200) -> int:
        now = now or datetime.now(UTC)
        stmt = (select(t.commands).where(t.commands.c.state == "pending", t.commands.c.expires_at > now)
                .order_by(t.commands.c.created_at).limit(limit))
        sent = 0
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            for row in conn.execute(stmt).all():
                command = to_wire(row)
                info = publish_nowait(self.client, row.agent_id, command)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    log.warning("cannot publish command %s now (rc=%s); will retry", row.command_id, info.rc)
                    break
                conn.execute(t.commands.update().where(t.commands.c.command_id == row.command_id)
                             .values(state="sent", sent_at=now))
                sent += 1
                log_sent(command, row.agent_id, "rules")
        return sent
