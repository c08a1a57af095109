"""The durable spool: every result stays on disk until the collector's receipt says it is stored.

SQLite in WAL mode with synchronous=FULL, so a committed result survives kill -9 and power loss
(in WAL mode, NORMAL may roll back the last commits on power loss). The per-agent sequence number
is allocated in the same transaction as the insert, so it is strictly increasing across restarts
and never reused, even after results are deleted.

The spool is bounded by bytes, by age and by the free space of its filesystem. When over a bound
it gives up the least valuable data first: healthy results are compacted to verdict summaries
before results with problems, summaries are dropped only when compaction is not enough, and the
newest result is never dropped. Every compaction and drop is counted, and the counts travel to
the collector in the `agent` pseudo-check of the next result (see `agent_check`).

A damaged spool never stops the agent and never loses what can still be read. On open, the file is
checked (header, integrity_check or quick_check, every payload a valid envelope); a damaged file, or
one that turns out damaged while in use ("database disk image is malformed"), is moved aside as
evidence (<name>.corrupt-<UTC time>), every readable row is salvaged into a fresh spool
(agent/spool_salvage.py) and what could not be read is counted. A ledger beside the spool
(agent/spool_ledger.py) keeps the next seq and the seqs held, so a spool that was emptied, replaced
or lost its write-ahead log neither restarts seq at 1 nor loses results uncounted: the next result
carries a seq above every seq used before, the collector sees the missing ones as a gap, and the
`agent` pseudo-check reports the recovery (spool_recovered_count, spool_salvaged_count,
spool_lost_count). The spool's files are 0600 in a 0700 directory.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from agent.envelope import rebuilt, sealed
from agent.findings import finding
from agent.reasons import because, reason_fields
from agent.spool_ledger import Ledger, Recovery
from agent.spool_salvage import diagnose, is_corruption, move_aside, salvage
from agent.statefile import PRIVATE_FILE_MODE, private_dir, private_file
from linecheck.wire import AGENT_CHECK, CheckResult, Finding, MetricValue, ResultEnvelope, Status, Verdict

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

SPOOL_SCHEMA_VERSION = 3  # PRAGMA user_version; 0 = the foundation's spool (no eviction columns), 2 = no crc

_SCHEMA_V1 = """
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
_SCHEMA_V2 = """
ALTER TABLE results ADD COLUMN value_rank INTEGER NOT NULL DEFAULT 0;
ALTER TABLE results ADD COLUMN compacted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS ix_results_eviction ON results(compacted, value_rank, seq);
CREATE TABLE IF NOT EXISTS evictions (
    seq INTEGER PRIMARY KEY,
    result_id TEXT NOT NULL,
    action TEXT NOT NULL,  -- compacted | dropped
    cause TEXT NOT NULL,   -- bytes | age | disk
    at REAL NOT NULL
);
"""
# A checksum of each payload: flash can flip a digit of a metric and leave a valid envelope behind,
# which no parse would catch; a result must arrive as it was measured or be counted as lost.
_SCHEMA_V3 = """
ALTER TABLE results ADD COLUMN crc INTEGER;  -- zlib.crc32(payload), NULL on older rows (comments here: no semicolons)
"""
_COUNTERS = ("next_seq", "receipted", "compacted", "evicted", "refused", "reported_compacted", "reported_evicted")

# Keep this many eviction records (the counters are kept forever); enough to audit a bad month.
EVICTION_LOG_ROWS = 10_000
# A clock before 2020 was never set (gateways without an RTC boot in 1970): no age judgement.
PLAUSIBLE_EPOCH = 1_577_836_800.0
# Reserve for SQLite's own growth (pages, WAL) beyond the payload bytes it counts.
DISK_SLACK_BYTES = 256 * 1024


class _Damaged(Exception):
    """A row read back is not what was stored (checksum mismatch, text that is not UTF-8)."""


class SpoolRefused(Exception):
    """A result the spool would not take; it has no seq and will not be delivered."""


class PayloadTooLarge(SpoolRefused, ValueError):
    """A result bigger than the broker accepts: refused at enqueue so it can never wedge the queue."""


class SpoolFull(SpoolRefused):
    """The filesystem is full even after evicting everything evictable."""


@dataclass(frozen=True)
class Pending:
    seq: int
    result_id: str
    payload: bytes


@dataclass(frozen=True)
class SpoolStats:
    backlog_count: int
    payload_bytes: int
    oldest_created_at: float | None
    next_seq: int
    receipted: int
    compacted: int
    evicted: int
    refused: int


def value_rank(envelope: ResultEnvelope) -> int:
    """0 = healthy or unknown (given up first), 1 = problems found (kept longest)."""
    return 1 if envelope.findings or envelope.verdict is Verdict.PROBLEMS else 0


def summarize(payload: bytes) -> bytes:
    """The verdict summary kept when a result must shrink: identity, times, verdict, findings and
    each check's status survive; metrics, reasons beyond 200 characters and finding details go.
    The summary is itself a valid envelope, flagged by `spool_compacted_flag` in its agent check."""
    env = ResultEnvelope.from_json(payload)
    checks: list[CheckResult] = []
    agent_metrics: dict[str, float | int | None] = {}
    for c in env.checks:
        if c.kind == AGENT_CHECK:
            agent_metrics = dict(c.metrics)
            continue
        checks.append(c.model_copy(update={"metrics": {}, "reason": c.reason[:200] if c.reason else None}))
    agent_metrics["spool_compacted_flag"] = 1
    checks.append(CheckResult(kind=AGENT_CHECK, status=Status.DEGRADED, duration_s=0.0, metrics=agent_metrics,
                              **reason_fields(because("spool_compacted"))))
    findings = [f.model_copy(update={"detail": {}}) for f in env.findings]
    return rebuilt(env, checks=checks, findings=findings).to_json()


def _is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


class Spool:
    def __init__(self, path: Path | str, max_payload_bytes: int = 256 * 1024, *,
                 max_bytes: int = 16 * 1024 * 1024, max_age_s: float = 90 * 86400.0,
                 min_free_bytes: int = 1024 * 1024, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        private_dir(self.path.parent)
        self.ledger = Ledger.load(self.path.with_name(f"{self.path.stem}-ledger.json"))
        self.max_payload_bytes = max_payload_bytes
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.min_free_bytes = min_free_bytes
        self.clock = clock  # the agent's wall clock (created_at, age bound); injectable for simulations
        self.refused_unsaved = 0  # refusals we could not even count on disk (disk full)
        # One connection shared by the scheduler and the publisher threads, guarded by a lock:
        # writes are small and rare, and this keeps SQLite's locking out of the picture.
        self._lock = threading.Lock()
        with self._lock:
            self._open()

    # --- opening, and recovering from a damaged spool -------------------------------------------------
    def _connect(self) -> None:
        private_file(self.path)  # SQLite gives the -wal and -shm files the database file's mode
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.chmod(PRIVATE_FILE_MODE)  # left by an older agent with the umask's mode
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # Checkpoint often and truncate the WAL afterwards, so the spool's footprint on a small
        # flash stays near its payload bound instead of keeping a 4 MB WAL around.
        self._db.execute("PRAGMA wal_autocheckpoint=100")
        self._db.execute("PRAGMA journal_size_limit=1048576")
        self._migrate()

    def _open(self) -> None:
        reason = diagnose(self.path)
        if reason is None:
            try:
                self._connect()
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                self._close_quietly()
                reason = f"opening the spool failed: {exc}"
        if reason is not None:
            self._rebuild(reason)
        self._reconcile()

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def _rebuild(self, reason: str) -> None:
        """Move the damaged file aside, salvage its readable rows into a fresh spool, count the loss."""
        log.error("spool %s is damaged (%s): moving it aside and salvaging its readable results", self.path, reason)
        evidence = move_aside(self.path)
        found = salvage(evidence, _COUNTERS)
        held = self.ledger.held if self.ledger.known else None
        # Freed pages keep old rows: only results still held by the ledger are restored (a receipted
        # result must not come back). Without a ledger (an older agent's spool) all are restored;
        # the collector's idempotent insert absorbs any that were already stored.
        rows = [r for seq, r in sorted(found.rows.items()) if held is None or seq in held]
        self._connect()
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO results(seq, result_id, payload, created_at, sent_at, attempts, value_rank, "
                "compacted, crc) VALUES (?,?,?,?,?,?,?,?,?)",
                [(r.seq, r.result_id, r.payload, r.created_at, r.sent_at, r.attempts, r.value_rank, r.compacted,
                  zlib.crc32(r.payload)) for r in rows])
            for key, value in found.counters.items():
                if key != "next_seq":
                    self._set(key, value)
            old_next = found.counters.get("next_seq", 0)
            self._set("next_seq", max(old_next, rows[-1].seq + 1 if rows else 1, self.ledger.next_seq, 1))
        if held is not None:
            lost_seqs = held - {r.seq for r in rows}
            pending = self.ledger.pending
            if pending is not None and 0 < old_next <= pending:
                lost_seqs.discard(pending)  # its transaction never committed: nothing was there to lose
            lost = len(lost_seqs)
        else:  # no ledger: what was found but unreadable is all we can count
            lost = len(found.damaged)
        log.error("spool salvaged %d results, lost %d; the damaged file is kept as %s", len(rows), lost, evidence)
        self.ledger.note_recovery(Recovery(reason, salvaged=len(rows), lost=lost, evidence=str(evidence)))

    def _reconcile(self) -> None:
        """Hold the spool against its ledger: a spool behind it was emptied, replaced or lost its WAL."""
        meta_next = self._counter("next_seq")
        present = {seq for (seq,) in self._db.execute("SELECT seq FROM results")}
        ledger = self.ledger
        # Killed between writing the ledger and COMMIT: that one seq was never used, nor published.
        uncommitted = ledger.pending is not None and ledger.pending == meta_next == ledger.next_seq - 1
        floor = ledger.next_seq - 1 if uncommitted else ledger.next_seq
        if ledger.known and floor > meta_next:
            assert ledger.held is not None
            lost = len(ledger.held - present)
            reason = (f"the spool is behind its ledger (next seq {meta_next}, ledger {floor}): the file was "
                      "emptied, replaced or lost its write-ahead log")
            log.error("%s; %d unsent results lost; seq continues at %d", reason, lost, floor)
            with self._transaction():
                self._set("next_seq", floor)
            ledger.note_recovery(Recovery(reason, salvaged=0, lost=lost, evidence=None))
        ledger.record(self._counter("next_seq"), present)

    def _guarded(self, op: Callable[[], T]) -> T:
        """Run `op` (caller holds the lock); if the spool turns out damaged, rebuild it and run it again.

        Without this a damaged page reached at run time (e.g. by mark_sent) fails every call for ever,
        and the readable results behind it are never sent."""
        try:
            return op()
        except (sqlite3.DatabaseError, _Damaged, UnicodeDecodeError) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not is_corruption(exc):
                raise
            reason = f"{exc} (found while in use)"
        self._close_quietly()
        self._rebuild(reason)
        self._reconcile()
        return op()

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version >= SPOOL_SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = self._db.execute("PRAGMA user_version").fetchone()  # another opener may have won
            if version < SPOOL_SCHEMA_VERSION:
                steps = (_SCHEMA_V1 + _SCHEMA_V2 if version < 2 else "") + _SCHEMA_V3
                for statement in steps.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                                     [(k, 1 if k == "next_seq" else 0) for k in _COUNTERS])
                self._db.execute(f"PRAGMA user_version={SPOOL_SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writing ----------------------------------------------------------------------------------
    def enqueue(self, envelope: ResultEnvelope, report_health: bool = True) -> ResultEnvelope:
        """Give the envelope its seq (and the `agent` pseudo-check), store it durably, return it as stored.

        The seq is handed out here, inside the write transaction (agent/envelope.py `sealed`): the
        envelope's own seq (0 for a draft) is ignored, so two processes sharing the spool (the daemon
        and `linecheck-agent check`) get increasing seqs without gaps in the order they commit.

        Raises PayloadTooLarge for a result above max_payload_bytes and SpoolFull when the disk has
        no room even after eviction; both are counted in `spool_refused_count`."""
        with self._lock:
            return self._guarded(lambda: self._enqueue_with_room(envelope, report_health))

    def _enqueue_with_room(self, envelope: ResultEnvelope, report_health: bool) -> ResultEnvelope:
        try:
            return self._enqueue_locked(envelope, report_health)
        except sqlite3.Error as exc:
            if not _is_disk_full(exc):
                raise
            log.warning("spool: disk full while storing %s; evicting and retrying", envelope.result_id)
        # The filesystem is fuller than disk_usage said (another writer, reserved blocks):
        # give back room, then try once more.
        try:
            self._shrink_for_disk()
            return self._enqueue_locked(envelope, report_health)
        except sqlite3.Error as exc:
            if not _is_disk_full(exc):
                raise
            self._count_refused()
            raise SpoolFull(f"result {envelope.result_id} refused: the spool's filesystem "
                            f"({self.path.parent}) is full even after eviction") from exc

    def _enqueue_locked(self, envelope: ResultEnvelope, report_health: bool) -> ResultEnvelope:
        now = self.clock()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._counter("next_seq")
            health = [self._agent_check(now)] if report_health else []
            stamped = sealed(envelope, seq, add_checks=health, add_findings=self._loss_finding() if health else [])
            payload = stamped.to_json()
            if len(payload) > self.max_payload_bytes:
                self._db.execute("ROLLBACK")
                self._count_refused()
                raise PayloadTooLarge(
                    f"result {envelope.result_id} is {len(payload)} bytes, above the "
                    f"{self.max_payload_bytes}-byte limit (mqtt.max_payload_bytes)")
            limit = self._limit(self._payload_bytes())
            self._set("next_seq", seq + 1)
            self._db.execute(
                "INSERT INTO results(seq, result_id, payload, created_at, value_rank, crc) VALUES (?,?,?,?,?,?)",
                (seq, stamped.result_id, payload, now, value_rank(stamped), zlib.crc32(payload)))
            if report_health:
                self._set("reported_compacted", self._counter("compacted"))
                self._set("reported_evicted", self._counter("evicted"))
                self.ledger.reported_recoveries = self.ledger.recoveries
                self.ledger.reported_lost = self.ledger.lost
            self._enforce_bounds(now, limit, protect_seq=seq)
            # Inside the transaction: the high mark is on disk before the result can be published.
            self.ledger.record(seq + 1, self._held_seqs(), pending=seq)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return stamped

    def _count_refused(self) -> None:
        try:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key='refused'", (1 + self.refused_unsaved,))
            self.refused_unsaved = 0
        except sqlite3.Error:
            self.refused_unsaved += 1  # reported from memory until the disk has room again

    def _agent_check(self, now: float) -> CheckResult:
        """The spool's own health, reported in every result so evictions reach the collector."""
        backlog, size, oldest = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0), min(created_at) FROM results").fetchone()
        compacted, evicted = self._counter("compacted"), self._counter("evicted")
        new_compacted = compacted - self._counter("reported_compacted")
        new_evicted = evicted - self._counter("reported_evicted")
        ledger = self.ledger
        metrics: dict[str, float | int | None] = {
            "spool_backlog_count": backlog,
            "spool_bytes": size,
            "spool_limit_bytes": self._limit(size),
            "spool_oldest_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
            "spool_evicted_count": evicted,
            "spool_compacted_count": compacted,
            "spool_refused_count": self._counter("refused") + self.refused_unsaved,
            "spool_recovered_count": ledger.recoveries,
            "spool_salvaged_count": ledger.salvaged,
            "spool_lost_count": ledger.lost,
        }
        reasons = []
        if ledger.recoveries > ledger.reported_recoveries:
            last = ledger.last
            reasons.append(because("spool_damaged", diagnostic=str(last.get("reason"))[:500],
                                   salvaged=int(last.get("salvaged") or 0), lost=int(last.get("lost") or 0)))
            if last.get("evidence"):
                reasons.append(because("spool_evidence_kept", path=str(last["evidence"])))
        if new_compacted or new_evicted:
            reasons.append(because("spool_bounds", evicted=new_evicted, compacted=new_compacted))
        if reasons:
            return CheckResult(kind=AGENT_CHECK, status=Status.DEGRADED, duration_s=0.0, metrics=metrics,
                               **reason_fields(reasons))
        return CheckResult(kind=AGENT_CHECK, status=Status.OK, duration_s=0.0, metrics=metrics)

    def _loss_finding(self) -> list[Finding]:
        """`spool_results_lost` on the first result after a recovery that lost results. About the
        agent, not the line: the envelope's verdict (the line's) is left as the checks made it."""
        lost = self.ledger.lost - self.ledger.reported_lost
        if lost <= 0:
            return []
        last = self.ledger.last
        detail: dict[str, MetricValue | str] = {"lost_count": lost, "salvaged_count": int(last.get("salvaged") or 0)}
        if last.get("evidence"):
            detail["evidence"] = str(last["evidence"])
        message = (f"The agent's spool was damaged ({last.get('reason')}); {lost} unsent results could not be "
                   "read back and are lost.")
        return [finding("spool_results_lost", "warning", AGENT_CHECK, message[:1000], detail)]

    # --- bounds -----------------------------------------------------------------------------------
    def _limit(self, current_bytes: int) -> int:
        """max_bytes, lowered so the filesystem keeps min_free_bytes (plus slack for SQLite) free.

        Room = what the spool holds + SQLite's free pages (reused before the file grows) + the
        filesystem's free space, less the reserve."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return self.max_bytes
        (pages,) = self._db.execute("PRAGMA freelist_count").fetchone()
        (page_size,) = self._db.execute("PRAGMA page_size").fetchone()
        room = current_bytes + pages * page_size + free - self.min_free_bytes - DISK_SLACK_BYTES
        return max(0, min(self.max_bytes, room))

    def _enforce_bounds(self, now: float, limit: int, protect_seq: int) -> None:
        if now >= PLAUSIBLE_EPOCH:
            old = self._db.execute(
                "SELECT seq, result_id FROM results WHERE created_at < ? AND created_at >= ? AND seq != ? "
                "ORDER BY seq", (now - self.max_age_s, PLAUSIBLE_EPOCH, protect_seq)).fetchall()
            self._drop(old, "age", now)
        total = self._payload_bytes()
        if total <= limit:
            return
        cause = "bytes" if limit >= self.max_bytes else "disk"
        total = self._compact_until(total, limit, cause, now)
        if total <= limit:
            return
        victims = []
        for seq, rid, size in self._db.execute(
                "SELECT seq, result_id, length(payload) FROM results WHERE seq != ? "
                "ORDER BY value_rank, seq", (protect_seq,)).fetchall():
            if total <= limit:
                break
            victims.append((seq, rid))
            total -= size
        self._drop(victims, cause, now)

    def _compact_until(self, total: int, limit: int, cause: str, now: float) -> int:
        candidates = self._db.execute(
            "SELECT seq, result_id FROM results WHERE compacted = 0 ORDER BY value_rank, seq").fetchall()
        for seq, rid in candidates:
            if total <= limit:
                break
            (payload,) = self._db.execute("SELECT payload FROM results WHERE seq = ?", (seq,)).fetchone()
            try:
                summary = summarize(bytes(payload))
            except ValueError:  # unreadable (should not happen): leave it to the drop pass
                continue
            saved = len(payload) - len(summary)
            if saved <= 0:
                self._db.execute("UPDATE results SET compacted = 1 WHERE seq = ?", (seq,))
                continue
            self._db.execute("UPDATE results SET payload = ?, compacted = 1, crc = ? WHERE seq = ?",
                             (summary, zlib.crc32(summary), seq))
            self._record(seq, rid, "compacted", cause, now)
            self._db.execute("UPDATE meta SET value = value + 1 WHERE key='compacted'")
            total -= saved
        return total

    def _drop(self, victims: list[tuple[int, str]], cause: str, now: float) -> None:
        if not victims:
            return
        self._db.executemany("DELETE FROM results WHERE seq = ?", [(seq,) for seq, _ in victims])
        for seq, rid in victims:
            self._record(seq, rid, "dropped", cause, now)
        self._db.execute("UPDATE meta SET value = value + ? WHERE key='evicted'", (len(victims),))
        log.warning("spool: dropped %d unsent results (%s bound)", len(victims), cause)

    def _record(self, seq: int, rid: str, action: str, cause: str, now: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO evictions(seq, result_id, action, cause, at) VALUES (?,?,?,?,?)",
                         (seq, rid, action, cause, now))
        self._db.execute("DELETE FROM evictions WHERE seq <= ? - ?", (seq, EVICTION_LOG_ROWS))

    def _shrink_for_disk(self) -> None:
        """After SQLITE_FULL: give SQLite room by dropping a quarter of what is held (least valuable
        first). The WAL is emptied first and the drops go in small transactions, because on a full
        disk even a DELETE needs WAL space and one big transaction would fail like the insert did."""
        self._checkpoint()
        total = self._payload_bytes()
        target = total * 3 // 4
        victims: list[tuple[int, str]] = []
        for seq, rid, size in self._db.execute(
                "SELECT seq, result_id, length(payload) FROM results ORDER BY value_rank, seq").fetchall():
            if total <= target:
                break
            victims.append((seq, rid))
            total -= size
        now = self.clock()
        for i in range(0, len(victims), 25):
            with self._transaction():
                self._drop(victims[i:i + 25], "disk", now)
                self.ledger.record(self._counter("next_seq"), self._held_seqs())
            self._checkpoint()

    def _checkpoint(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # a reader holds the WAL: the next checkpoint will do
            log.debug("spool checkpoint skipped: %s", exc)

    # --- reading and receipts ---------------------------------------------------------------------
    def pending(self, limit: int, exclude: Collection[str] = ()) -> list[Pending]:
        """The oldest `limit` results not in `exclude` (the publisher's in-flight set)."""
        with self._lock:
            rows = self._guarded(lambda: _checked(self._db.execute(
                "SELECT seq, result_id, payload, crc FROM results ORDER BY seq LIMIT ?",
                (limit + len(exclude),)).fetchall()))
        return [Pending(seq, rid, bytes(p)) for seq, rid, p in rows if rid not in exclude][:limit]

    def due(self, limit: int, resend_after_s: float, now: float | None = None) -> list[Pending]:
        """Results never sent, or sent longer ago than resend_after_s without a receipt; oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._guarded(lambda: _checked(self._db.execute(
                "SELECT seq, result_id, payload, crc FROM results WHERE sent_at IS NULL OR sent_at < ? "
                "ORDER BY seq LIMIT ?", (now - resend_after_s, limit)).fetchall()))
        return [Pending(seq, rid, bytes(payload)) for seq, rid, payload in rows]

    def mark_sent(self, result_ids: list[str], now: float | None = None) -> None:
        """Record the publication (for diagnostics: sent_at, attempts); delivery state lives in the publisher."""
        if not result_ids:
            return
        at = time.time() if now is None else now

        def mark() -> None:
            with self._transaction():
                self._db.executemany("UPDATE results SET sent_at=?, attempts=attempts+1 WHERE result_id=?",
                                     [(at, rid) for rid in result_ids])

        with self._lock:
            self._guarded(mark)

    def unsend_all(self) -> None:
        with self._lock:
            self._guarded(lambda: self._db.execute("UPDATE results SET sent_at=NULL"))

    def acknowledge(self, result_ids: list[str]) -> int:
        """The collector has committed these: forget them. Returns how many were still here."""
        if not result_ids:
            return 0

        def forget() -> int:
            with self._transaction():
                cur = self._db.executemany("DELETE FROM results WHERE result_id=?", [(r,) for r in result_ids])
                gone = max(cur.rowcount, 0)
                self._db.execute("UPDATE meta SET value = value + ? WHERE key='receipted'", (gone,))
                if gone:
                    self.ledger.record(self._counter("next_seq"), self._held_seqs())
            return gone

        with self._lock:
            return self._guarded(forget)

    def count(self) -> int:
        with self._lock:
            return self._guarded(lambda: int(self._db.execute("SELECT count(*) FROM results").fetchone()[0]))

    def next_seq(self) -> int:
        with self._lock:
            return self._guarded(lambda: self._counter("next_seq"))

    def stats(self) -> SpoolStats:
        def read() -> SpoolStats:
            backlog, size, oldest = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0), min(created_at) FROM results").fetchone()
            return SpoolStats(backlog, size, oldest, self._counter("next_seq"), self._counter("receipted"),
                              self._counter("compacted"), self._counter("evicted"),
                              self._counter("refused") + self.refused_unsaved)

        with self._lock:
            return self._guarded(read)

    def evictions(self) -> list[tuple[int, str, str, str]]:
        """(seq, result_id, action, cause) of the most recent compactions and drops, oldest first."""
        with self._lock:
            return self._guarded(lambda: self._db.execute(
                "SELECT seq, result_id, action, cause FROM evictions ORDER BY seq").fetchall())

    # --- small helpers (caller holds the lock) -----------------------------------------------------
    def _counter(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

    def _set(self, key: str, value: int) -> None:
        self._db.execute("UPDATE meta SET value=? WHERE key=?", (value, key))

    def _held_seqs(self) -> list[int]:
        return [seq for (seq,) in self._db.execute("SELECT seq FROM results")]

    def _payload_bytes(self) -> int:
        return int(self._db.execute("SELECT coalesce(sum(length(payload)), 0) FROM results").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _checked(rows: list[tuple[int, str, bytes, int | None]]) -> list[tuple[int, str, bytes]]:
    """(seq, result_id, payload) of rows whose payload still matches its checksum; raises _Damaged
    otherwise, so the spool is salvaged rather than a damaged result published as a measurement."""
    for seq, _rid, payload, crc in rows:
        if crc is not None and zlib.crc32(payload) != crc:
            raise _Damaged(f"result seq {seq} no longer matches its checksum")
    return [(seq, rid, payload) for seq, rid, payload, _crc in rows]


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): one fsync for a batch of statements."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def open_spool(cfg: AgentConfig, clock: Callable[[], float] = time.time) -> Spool:
    """The agent's spool in data_dir, with the bounds from its config."""
    return Spool(cfg.data_dir / "spool.sqlite", cfg.mqtt.max_payload_bytes, max_bytes=cfg.spool.max_bytes,
                 max_age_s=cfg.spool.max_age_days * 86400.0, min_free_bytes=cfg.spool.min_free_bytes, clock=clock)
