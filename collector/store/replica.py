"""Reads off the primary: the API's and console's reads from a PostgreSQL streaming replica (`database_read:`).

`ReadRouting` stands where the HTTP app keeps its engine (`app.state.engine`). Each request says what it
is through `request_context` (set by collector/api/read_after.py): a read (GET, HEAD, OPTIONS) and the
newest primary WAL position (LSN) its caller wrote, or anything else. Then:

- anything but a read, and any use outside a request (ingest, background jobs, the CLI), gets the primary;
- a read gets the replica, unless the replica has not replayed the caller's own last write yet
  (`pg_last_wal_replay_lsn()` below the caller's LSN): then the primary, so a user never sees a ticket
  state older than the one they just set (read-your-writes). The check runs on the connection that then
  serves the read, and replay only moves forward, so what the check saw the read sees too;
- a replica that cannot be reached serves nothing for `retry_after_s`: reads go to the primary and the
  reason is logged once (the API keeps answering).

An LSN a caller claims beyond anything the primary has written is ignored (it would send that caller's
reads to the primary for ever): the primary's position is re-read to tell, a query that touches no table.
docs/storage.md ("Read replica") says why this design.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

from collector.store.unavailable import masked

log = logging.getLogger(__name__)

# A replica that does not answer within this is taken as down for the request (the primary serves it).
REPLICA_CONNECT_TIMEOUT_S = 2


def parse_lsn(text: str) -> int:
    """PostgreSQL's 'XXXXXXXX/YYYYYYYY' as one number (high word << 32 | low word)."""
    high, sep, low = text.partition("/")
    if not sep or not (1 <= len(high) <= 8 and 1 <= len(low) <= 8):
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class RequestRouting:
    """What one HTTP request asks of the database; mutable because the app's worker threads run in copies
    of the request's context: they write into this object, not into the variable."""

    read: bool  # GET/HEAD/OPTIONS: may be served by the replica
    min_lsn: int = 0  # the caller's newest write on the primary (0: none known)
    committed: bool = False  # a transaction of this request committed on the primary
    served_by: str = ""  # "replica" or "primary" for the last connection handed out (tests, logs)


request_context: ContextVar[RequestRouting | None] = ContextVar("linecheck_read_routing", default=None)


class ReadRouting:
    """The primary engine with a replica beside it; hands each connection to the right one (module doc)."""

    def __init__(self, primary: Engine, replica_url: str, *, retry_after_s: float = 5.0):
        self.primary = primary
        self.replica_url = replica_url
        connect_args = {} if "connect_timeout=" in replica_url else {"connect_timeout": REPLICA_CONNECT_TIMEOUT_S}
        self.replica = create_engine(replica_url, pool_pre_ping=True, connect_args=connect_args)
        self.retry_after_s = retry_after_s
        self.served: Counter[str] = Counter()  # "replica", "primary:<why>": how reads were served
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down = False  # said once per outage: warning when it starts, info when the replica answers again
        self._primary_lsn = 0
        if not event.contains(primary, "commit", _mark_committed):  # one listener however many apps share it
            event.listen(primary, "commit", _mark_committed)

    # Everything the app reads off an engine besides connections (dialect, url, ...) is the primary's.
    def __getattr__(self, name: str) -> Any:
        return getattr(self.primary, name)

    def dispose(self) -> None:
        self.replica.dispose()

    def connect(self) -> Connection:
        ctx = request_context.get()
        if ctx is None or not ctx.read:
            return self.primary.connect()
        conn = self._replica_connection(ctx)
        if conn is not None:
            return conn
        ctx.served_by = "primary"
        return self.primary.connect()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.connect() as conn, conn.begin():
            yield conn

    @property
    def replica_down(self) -> bool:
        """Whether the replica is taken as down now (reads go to the primary until it answers again)."""
        return self._down

    # --- the replica ------------------------------------------------------------------------
    def _replica_connection(self, ctx: RequestRouting) -> Connection | None:
        if time.monotonic() < self._down_until:
            self.served["primary:replica down"] += 1
            return None
        try:
            conn = self.replica.connect()
        except DBAPIError as exc:
            self._mark_down(exc)
            return None
        if ctx.min_lsn and not self._replayed(conn, ctx):
            conn.close()
            self.served["primary:own write not replayed"] += 1
            return None
        ctx.served_by = "replica"
        self.served["replica"] += 1
        if self._down:
            self._down = False
            log.info("reads from the read replica %s again", masked(self.replica_url))
        return conn

    def _replayed(self, conn: Connection, ctx: RequestRouting) -> bool:
        """Whether this replica connection already sees the caller's last write."""
        try:
            replayed = conn.exec_driver_sql("SELECT pg_last_wal_replay_lsn()::text").scalar()
            conn.rollback()  # hand the connection over outside a transaction (the caller may begin() one)
        except DBAPIError as exc:
            self._mark_down(exc)
            return False
        if replayed is None:  # not in recovery: a promoted replica is a primary and sees everything
            return True
        if parse_lsn(replayed) >= ctx.min_lsn:
            return True
        if ctx.min_lsn > self.primary_lsn(at_least=ctx.min_lsn):
            log.info("read-after position %s is beyond the primary's WAL: ignored", format_lsn(ctx.min_lsn))
            ctx.min_lsn = 0
            return True
        return False

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            was_up, self._down = not self._down, True
            self._down_until = time.monotonic() + self.retry_after_s
        self.served["primary:replica down"] += 1
        if was_up:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()
            log.warning("reads from the primary: read replica %s unreachable (%s); trying it again in %.0f s",
                        masked(self.replica_url), reason[0] if reason else type(exc).__name__, self.retry_after_s)

    # --- the primary's WAL position ----------------------------------------------------------
    def current_lsn(self) -> int:
        """The primary's WAL insert position now: read after a commit it is at or past that commit's record.
        Not pg_current_wal_lsn() (what is written out): with synchronous_commit off a commit returns before
        its record is written, and a replica at that position would not have it yet."""
        with self.primary.connect() as conn:
            value = parse_lsn(conn.exec_driver_sql("SELECT pg_current_wal_insert_lsn()::text").scalar_one())
        with self._lock:
            self._primary_lsn = max(self._primary_lsn, value)
        return value

    def primary_lsn(self, at_least: int) -> int:
        """The primary's position as last seen, re-read when `at_least` is beyond it. That read is one cheap
        function call on the primary (no table), the whole cost a forged position can cause."""
        with self._lock:
            if self._primary_lsn >= at_least:
                return self._primary_lsn
        return self.current_lsn()


def _mark_committed(conn: Connection) -> None:
    """Engine event: a transaction commits on the primary during a request (its LSN is read afterwards)."""
    ctx = request_context.get()
    if ctx is not None:
        ctx.committed = True
