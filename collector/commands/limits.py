"""Rate limits of remote commands people send (API, console, CLI), counted in the database.

A "check now" costs the customer's line a burst of tests (a throughput test moves hundreds of MB),
so each agent takes at most `commands.per_line` commands per `per_line_window_s` (every command to a
line goes to each of its agents, so this is a per-line limit), and each user at most `per_user` per
`per_user_window_s`. The counts live in `command_log`, so every collector process and the CLI share
them. The row is written before the count is read, in one transaction (on PostgreSQL under an
advisory lock, on SQLite under its single writer lock), so two processes cannot both take the last slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, select, text

from collector.commands.config import RemoteCommandsConfig
from collector.commands.publish import CommandError
from collector.store import schema as t

KEEP_LOG = timedelta(days=30)  # the log doubles as an audit trail of who asked for what
_ADVISORY_KEY = 0x6C63636D64  # "lccmd": serialises admissions across collectors on PostgreSQL


class RateLimited(CommandError):
    """Too many commands: try again after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Admission:
    command_id: str
    agent_id: str
    line_id: str | None
    requested_by: str | None
    action: str


def admit(conn: Connection, cfg: RemoteCommandsConfig, a: Admission, now: datetime | None = None) -> None:
    """Record the command, or raise RateLimited (the caller's transaction then rolls the row back)."""
    now = now or datetime.now(UTC)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
    conn.execute(t.command_log.insert().values(command_id=a.command_id, agent_id=a.agent_id, line_id=a.line_id,
                                               requested_by=a.requested_by, action=a.action, sent_at=now))
    c = t.command_log.c
    where = f"line {a.line_id!r}" if a.line_id else f"agent {a.agent_id!r}"
    _check(conn, c.agent_id == a.agent_id, cfg.per_line, cfg.per_line_window_s, now,
           f"{where} already had {cfg.per_line} remote commands in the last {_span(cfg.per_line_window_s)} "
           f"(commands.per_line)")
    if a.requested_by:
        _check(conn, c.requested_by == a.requested_by, cfg.per_user, cfg.per_user_window_s, now,
               f"{a.requested_by} already sent {cfg.per_user} remote commands in the last "
               f"{_span(cfg.per_user_window_s)} (commands.per_user)")
    conn.execute(delete(t.command_log).where(c.sent_at < now - KEEP_LOG))


def forget(conn: Connection, command_id: str) -> None:
    """A command the broker never took does not count."""
    conn.execute(delete(t.command_log).where(t.command_log.c.command_id == command_id))


def _check(conn: Connection, who: object, limit: int, window_s: float, now: datetime, message: str) -> None:
    since = now - timedelta(seconds=window_s)
    c = t.command_log.c
    count, oldest = conn.execute(select(func.count(), func.min(c.sent_at))
                                 .where(who, c.sent_at > since)).one()  # type: ignore[arg-type]
    if count <= limit:  # the row just written is counted
        return
    # The slot frees when the oldest command in the window leaves it (the window slides).
    retry = max(1, math.ceil((oldest + timedelta(seconds=window_s) - now).total_seconds()))
    raise RateLimited(f"{message}; try again in {retry} s", retry)


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
