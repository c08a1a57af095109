"""The spool's ledger: what the spool should hold, kept outside the spool file.

A spool that is corrupted, emptied, replaced or loses its write-ahead log cannot say what it used
to hold, nor which sequence number comes next. The ledger, a small JSON file beside it (written
atomically with fsync, agent/statefile.py), can: the next seq, the seqs held, and the seq being
committed right now. It is written inside the spool's own write transaction, before COMMIT, so
two processes sharing a spool (the daemon and `linecheck-agent check`) write it in the order the
database serialises them, and a result can never be published before its seq is recorded.

With it, the spool (agent/spool.py) keeps seq strictly increasing across any loss of the spool
file, and counts exactly which unsent results a loss took. It also keeps the cumulative recovery
counters, which must outlive the spool file they are about.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.statefile import load_json, save_json

log = logging.getLogger(__name__)


def to_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """[1, 2, 3, 7, 9, 10] -> [[1, 3], [7, 7], [9, 10]]: a backlog is mostly runs of seqs."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def from_ranges(ranges: object) -> set[int] | None:
    """The seqs of `to_ranges` output, or None when the value is not a list of [lo, hi] pairs."""
    if not isinstance(ranges, list):
        return None
    seqs: set[int] = set()
    for pair in ranges:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) for v in pair)):
            return None
        lo, hi = pair
        if hi < lo or hi - lo > 10_000_000:
            return None
        seqs.update(range(lo, hi + 1))
    return seqs


@dataclass
class Recovery:
    """One loss the spool recovered from, as reported in the `agent` pseudo-check."""

    reason: str
    salvaged: int
    lost: int
    evidence: str | None


@dataclass
class Ledger:
    path: Path
    next_seq: int = 0  # 0 = unknown (no ledger yet: a spool from before the ledger, or a fresh agent)
    held: set[int] | None = None  # None = unknown
    pending: int | None = None  # the seq being committed when the ledger was last written
    recoveries: int = 0
    salvaged: int = 0
    lost: int = 0
    reported_recoveries: int = 0
    reported_lost: int = 0  # `lost` when the last recovery was reported
    last: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        # A writer killed between writing its temporary file and renaming it leaves the file behind;
        # one older than a minute belongs to no live write.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 60:
                    stale.unlink()
        data = load_json(path)

        def count(key: str) -> int:
            value = data.get(key, 0)
            return value if isinstance(value, int) and value >= 0 else 0

        pending = data.get("pending")
        last = data.get("last_recovery")
        return cls(path, next_seq=count("next_seq"), held=from_ranges(data.get("held")),
                   pending=pending if isinstance(pending, int) else None, recoveries=count("recoveries"),
                   salvaged=count("salvaged"), lost=count("lost"), reported_recoveries=count("reported_recoveries"),
                   reported_lost=count("reported_lost"),
                   last=last if isinstance(last, dict) else {})

    @property
    def known(self) -> bool:
        return self.next_seq > 0 and self.held is not None

    def record(self, next_seq: int, held: Iterable[int], pending: int | None = None) -> None:
        """What the spool holds now (or will once the current transaction commits); written durably.

        next_seq never goes down: the ledger is the high mark the spool is checked against."""
        self.next_seq = max(self.next_seq, next_seq)
        self.held = set(held)
        self.pending = pending
        self.save()

    def note_recovery(self, recovery: Recovery) -> None:
        self.recoveries += 1
        self.salvaged += recovery.salvaged
        self.lost += recovery.lost
        self.last = {"at": round(time.time(), 3), "reason": recovery.reason[:500], "salvaged": recovery.salvaged,
                     "lost": recovery.lost, "evidence": recovery.evidence}
        self.save()

    def unreported(self) -> dict[str, Any] | None:
        """The last recovery if one happened since the previous report; marks it reported (the caller
        saves the ledger in the same transaction as the result that carries the report)."""
        if self.recoveries <= self.reported_recoveries:
            return None
        self.reported_recoveries = self.recoveries
        return dict(self.last)

    def _merge_disk(self) -> None:
        """Take the larger cumulative counters from the file: another process sharing the spool (the
        daemon and `linecheck-agent check`) may have written it since we read it."""
        disk = Ledger.load(self.path)
        if disk.recoveries > self.recoveries:
            self.last = disk.last
        for name in ("next_seq", "recoveries", "salvaged", "lost", "reported_recoveries", "reported_lost"):
            setattr(self, name, max(getattr(self, name), getattr(disk, name)))

    def save(self) -> None:
        self._merge_disk()
        data = {"next_seq": self.next_seq, "held": to_ranges(self.held or ()), "pending": self.pending,
                "recoveries": self.recoveries, "salvaged": self.salvaged, "lost": self.lost,
                "reported_recoveries": self.reported_recoveries, "reported_lost": self.reported_lost,
                "last_recovery": self.last}
        if self.held is None:
            data.pop("held")
        try:
            save_json(self.path, data)
        except OSError as exc:  # a full disk: the spool itself will say so; the ledger catches up next time
            log.warning("cannot write the spool ledger %s: %s", self.path, exc)
