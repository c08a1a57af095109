"""Day partitions of `results` on PostgreSQL: created ahead of time, dropped at the end of retention.

`results` is partitioned by RANGE (started_at), one partition per UTC day named results_pYYYYMMDD, plus
results_default for rows no day partition takes (agent clocks far in the past or future, days not
created yet). `ensure` creates the days around now (called at start-up and by every retention round);
`ensure_days` the days a batch of copied old results needs (collector/store/relayout.py). A day created
while the default partition holds rows of that day gets them moved over first (PostgreSQL refuses to
attach a range the default partition already holds).

Why not pg_partman: it would do the same two jobs (create ahead, drop behind) as an extension with a
background worker to install on every server and in CI, while retention must fold a day into
daily_metrics and keep the results tickets cite before the drop — work only the collector knows.
This module is ~100 lines of plain DDL under retention's advisory lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, text

AHEAD_DAYS = 3  # days created beyond today: a collector that stops for two days still finds its partition
_NAME = re.compile(r"^results_p(\d{8})$")


@dataclass(frozen=True)
class DayPartition:
    name: str
    day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time(), UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)


def partitioned(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def day_partitions(conn: Connection) -> list[DayPartition]:
    """The day partitions attached to results, oldest first."""
    names = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'results'::regclass")).scalars()
    found = []
    for name in names:
        m = _NAME.match(name)
        if m:
            found.append(DayPartition(name, datetime.strptime(m.group(1), "%Y%m%d").date()))
    return sorted(found, key=lambda p: p.day)


def ensure(conn: Connection, now: datetime | None = None, back_days: int = 1,
           ahead_days: int = AHEAD_DAYS) -> list[str]:
    """Create the day partitions from `back_days` before today to `ahead_days` after. Returns the new names."""
    if not partitioned(conn):
        return []
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return ensure_days(conn, (today + timedelta(days=d) for d in range(-back_days, ahead_days + 1)))


def ensure_days(conn: Connection, days: Iterable[date]) -> list[str]:
    """Create the partitions of these days that do not exist yet (rows of theirs in the default partition move)."""
    if not partitioned(conn):
        return []
    have = {p.day for p in day_partitions(conn)}
    made = []
    for day in sorted(set(days) - have):
        p = DayPartition(f"results_p{day:%Y%m%d}", day)
        bounds = {"lo": p.start, "hi": p.end}
        # Lock order: the parent first (as inserts do), so a concurrent ingest waits instead of deadlocking.
        conn.execute(text("LOCK TABLE results IN SHARE ROW EXCLUSIVE MODE"))
        conn.execute(text(f"CREATE TABLE {p.name} (LIKE results INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
        conn.execute(text(
            f"WITH moved AS (DELETE FROM results_default WHERE started_at >= :lo AND started_at < :hi RETURNING *) "
            f"INSERT INTO {p.name} SELECT * FROM moved"), bounds)
        conn.execute(text(f"ALTER TABLE results ATTACH PARTITION {p.name} FOR VALUES FROM ('{p.start.isoformat()}') "
                          f"TO ('{p.end.isoformat()}')"))
        made.append(p.name)
    return made


def detach(conn: Connection, p: DayPartition) -> None:
    """Take a day out of `results` (its rows vanish from every query at commit); the caller drops it."""
    conn.execute(text(f"ALTER TABLE results DETACH PARTITION {p.name}"))


def drop(conn: Connection, p: DayPartition) -> None:
    conn.execute(text(f"DROP TABLE {p.name}"))
