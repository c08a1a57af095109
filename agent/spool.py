"""The durable spool: every result stays on disk until the collector's receipt says it is stored.

SQLite in WAL mode with synchronous=FULL, so a committed result survives kill -9 and power loss.
The per-agent sequence number is allocated in the same transaction as the insert, so it is
strictly increasing across restarts and never reused even after results are deleted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from linecheck.wire import ResultEnvelope

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,
    result_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
"""


class PayloadTooLarge(ValueError):
    """A result bigger than the broker accepts: refused at enqueue so it can never wedge the queue."""


@dataclass(frozen=True)
class Pending:
    seq: int
    result_id: str
    payload: bytes


class Spool:
    def __init__(self, path: Path | str, max_payload_bytes: int = 256 * 1024):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_payload_bytes = max_payload_bytes
        # One connection shared by the scheduler and the publisher threads, guarded by a lock:
        # writes are small and rare, and this keeps SQLite's locking out of the picture.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', 1)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, envelope: ResultEnvelope) -> ResultEnvelope:
        """Give the envelope its seq, store it durably, and return it as stored."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (seq,) = self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
                stamped = envelope.model_copy(update={"seq": seq})
                payload = ResultEnvelope.model_validate(stamped.model_dump(by_alias=True)).to_json()
                if len(payload) > self.max_payload_bytes:
                    raise PayloadTooLarge(
                        f"result {envelope.result_id} is {len(payload)} bytes, above the "
                        f"{self.max_payload_bytes}-byte limit (mqtt.max_payload_bytes)")
                self._db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seq + 1,))
                self._db.execute("INSERT INTO results(seq, result_id, payload, created_at) VALUES (?,?,?,?)",
                                 (seq, stamped.result_id, payload, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stamped

    def due(self, limit: int, resend_after_s: float, now: float | None = None) -> list[Pending]:
        """Results never sent, or sent longer ago than resend_after_s without a receipt; oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, result_id, payload FROM results WHERE sent_at IS NULL OR sent_at < ? "
                "ORDER BY seq LIMIT ?", (now - resend_after_s, limit)).fetchall()
        return [Pending(seq, rid, bytes(payload)) for seq, rid, payload in rows]

    def mark_sent(self, result_ids: list[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._db.executemany("UPDATE results SET sent_at=?, attempts=attempts+1 WHERE result_id=?",
                                 [(now, rid) for rid in result_ids])

    def unsend_all(self) -> None:
        """After a reconnect nothing is in flight any more: make everything due again."""
        with self._lock:
            self._db.execute("UPDATE results SET sent_at=NULL")

    def acknowledge(self, result_ids: list[str]) -> int:
        """The collector has committed these: forget them. Returns how many were still here."""
        with self._lock:
            cur = self._db.executemany("DELETE FROM results WHERE result_id=?", [(r,) for r in result_ids])
            return cur.rowcount

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM results").fetchone()[0])

    def next_seq(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
