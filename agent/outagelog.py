"""The outage log: closed outages from the heartbeat (agent/heartbeat.py), kept until a result carries them.

Kept in `data_dir/outages.json` (atomic writes, agent/statefile.py), bounded to the last `KEEP_DAYS`
days and `KEEP_MAX` intervals. The next line check reads the outages not yet reported (`unreported`)
and puts them in its result (`report`): one `heartbeat` summary, one `outage` result per interval
(start, end, duration, where) and a `line_outages` finding in words — "the line dropped 7 times since
the last check, longest 90 s, between 09:00 and 11:00". The daemon marks them reported only once that
result is in the spool (`mark_reported`), so a check that dies on the way loses nothing; the collector
absorbs a re-sent interval (same start and place).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.findings import finding
from agent.heartbeat import Outage
from agent.reasons import because, reason_fields
from agent.statefile import load_json, save_json
from linecheck.wire import CheckResult, Finding, Status

OUTAGE_LOG = "outages.json"  # in the agent's data_dir
KEEP_DAYS = 30
KEEP_MAX = 1000
REPORT_MAX = 50  # outage results per envelope (the newest); the summary counts them all
WHERE_WORDS = {"link": "the WAN port lost its link", "gateway": "the carrier's first hop did not answer",
               "beyond": "the carrier's network beyond the first hop did not answer"}


class OutageLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # the heartbeat thread adds, the check path marks

    def _load(self) -> dict[str, Any]:
        data = load_json(self.path)
        rows = data.get("outages")
        good = [o for o in rows if _valid(o)] if isinstance(rows, list) else []
        reported = data.get("reported_until")
        return {"outages": good, "reported_until": float(reported) if isinstance(reported, int | float) else 0.0,
                "rested": [d for d in data.get("rested", []) if isinstance(d, str)][-KEEP_DAYS:]}

    def ensure(self) -> None:
        """Create the log when the heartbeat starts: from then on every result says how the line held."""
        with self._lock:
            if not self.path.exists():
                save_json(self.path, self._load())

    def add(self, o: Outage) -> None:
        with self._lock:
            data = self._load()
            oldest = time.time() - KEEP_DAYS * 86400
            rows = [r for r in data["outages"] if r["end"] >= oldest]
            rows.append({"start": o.start, "end": o.end, "where": o.where})
            data["outages"] = rows[-KEEP_MAX:]
            save_json(self.path, data)

    def rested(self, day: str) -> None:
        """The heartbeat used up its daily bytes on `day` (UTC date) and rested: say so in the next result."""
        with self._lock:
            data = self._load()
            if day not in data["rested"]:
                data["rested"].append(day)
                save_json(self.path, data)

    def unreported(self) -> tuple[list[Outage], float, list[str]]:
        """Outages that ended after the last reported one, oldest first; that mark; days the heartbeat rested."""
        data = self._load()
        since = data["reported_until"]
        found = [Outage(r["start"], r["end"], r["where"]) for r in data["outages"] if r["end"] > since]
        return sorted(found, key=lambda o: o.start), since, data["rested"]

    def mark_reported(self, until: float | None) -> None:
        """A spooled result carried the outages up to `until` (None: none) and the rested days."""
        with self._lock:
            data = self._load()
            if until is not None and until > data["reported_until"]:
                data["reported_until"] = until
            data["rested"] = []
            save_json(self.path, data)


def _valid(r: object) -> bool:
    """A row a damaged or hand-edited file may hold: kept only when it is a plausible interval."""
    return (isinstance(r, dict) and all(isinstance(r.get(k), int | float) for k in ("start", "end"))
            and r.get("where") in WHERE_WORDS and 0 <= r["end"] - r["start"] <= KEEP_DAYS * 86400)


def _clock(ts: float) -> str:
    """Local time with its offset: '2026-12-07 09:02 +08:00'."""
    local = datetime.fromtimestamp(ts).astimezone()
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


def report(log: OutageLog, now: float | None = None) -> tuple[list[CheckResult], list[Finding]]:
    """The heartbeat's part of the next result: a summary, one result per outage, a finding when any."""
    outages, since, rested = log.unreported()
    now = time.time() if now is None else now
    longest = max((o.duration_s for o in outages), default=None)
    total = sum(o.duration_s for o in outages)
    summary_metrics = {"outages_count": len(outages), "outage_longest_s": _round(longest),
                       "outage_total_s": _round(total) if outages else 0.0,
                       "window_s": _round(now - since) if since else None, "rested_days_count": len(rested)}
    rest = [because("heartbeat_rested", days=", ".join(rested))] if rested else []
    if not outages:
        status = Status.DEGRADED if rested else Status.OK
        return [CheckResult(kind="heartbeat", status=status, metrics=summary_metrics, duration_s=0.0,
                            **reason_fields(rest or None))], []
    where = Counter(o.where for o in outages).most_common(1)[0][0]
    when = f"between {_clock(outages[0].start)} and {_clock(outages[-1].end)}"
    sentence = (f"The line dropped {len(outages)} time{'s' if len(outages) != 1 else ''} since the last report "
                f"(longest {longest:.0f} s, {when}); mostly {WHERE_WORDS[where]}.")
    said = because("heartbeat_outages", count=len(outages), longest_s=_round(longest) or 0.0,
                   first_at=_clock(outages[0].start), last_at=_clock(outages[-1].end), where=where)
    checks = [CheckResult(kind="heartbeat", status=Status.DEGRADED, metrics=summary_metrics, duration_s=0.0,
                          **reason_fields([said, *rest]))]
    for o in outages[-REPORT_MAX:]:
        checks.append(CheckResult(kind="outage", status=Status.DEGRADED, target=o.where, duration_s=0.0,
                                  metrics={"started_unix_s": round(o.start, 3), "ended_unix_s": round(o.end, 3),
                                           "duration_s": _round(o.duration_s)},
                                  **reason_fields(because("outage_interval", start=_clock(o.start), end=_clock(o.end),
                                                          where=o.where))))
    found = finding("line_outages", "warning", "heartbeat", sentence,
                    {"count": len(outages), "longest_s": _round(longest), "total_s": _round(total),
                     "first_at": _clock(outages[0].start), "last_at": _clock(outages[-1].end), "where": where})
    return checks, [found]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)
