"""Flag results whose agent clock cannot be right. Flagged, never rejected: offline weeks are normal.

A gateway without a real-time clock boots in 1970 (or its firmware's build date) until NTP
answers; a result it timestamps then is real evidence with a wrong time. The collector keeps it,
marks it, and the promise and rule logic can decide whether to trust its time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Nothing linecheck measured can predate the product; an earlier stamp is an unset clock.
EARLIEST_PLAUSIBLE = datetime(2022, 1, 1, tzinfo=UTC)
# Clocks drift and NTP steps: a few minutes ahead of the collector is tolerated.
FUTURE_TOLERANCE = timedelta(minutes=5)


def clock_flag(started_at: datetime, ended_at: datetime, received_at: datetime) -> str | None:
    """'future', 'unset_clock', 'ends_before_start' or None when the timestamps are plausible."""
    if started_at > received_at + FUTURE_TOLERANCE or ended_at > received_at + FUTURE_TOLERANCE:
        return "future"
    if started_at < EARLIEST_PLAUSIBLE:
        return "unset_clock"
    if ended_at < started_at:
        return "ends_before_start"
    return None
