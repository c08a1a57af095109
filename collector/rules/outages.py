"""Intermittent outages: a ticket when a line drops on M of the last N days (the `intermittent_outage` class).

The agent's heartbeat (agent/heartbeat.py) reports each outage it saw between checks as an `outage`
check of the next result (start, end, where it broke). One drop says little; a line that drops on
3 of the last 7 days is a fault nobody on site will see, whatever the checks find when they run.
Days are local days in the carrier's zone (`rules.intermittent_outage.timezone`). The ticket says how
often, how long, at what time of day and where; it is kept current while open, and resolves once
fewer than M of the last N days had an outage. Evaluated inside the ingest transaction for lines
whose new results carry the heartbeat's report, after the other rules (collector/rules/engine.py).

`judge` is pure (outages in, a statement out), table-tested in tests/test_outage_rule.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from sqlalchemy import Connection, select

from collector.store import documents
from collector.store import schema as t
from collector.tickets import lifecycle as tickets
from linecheck.configfile import Strict
from linecheck.wire import ResultEnvelope

FAULT_CLASS = "intermittent_outage"
REPORT_KINDS = ("heartbeat", "outage")
WHERE_WORDS = {"link": "the WAN port's link", "gateway": "the carrier's first hop",
               "beyond": "the carrier's network beyond the first hop"}
MAX_EVIDENCE = 20


class IntermittentOutageRule(Strict):
    enabled: bool = True
    days: int = Field(default=7, ge=1, le=90, description="N: the last N local days are looked at")
    min_days: int = Field(default=3, ge=1, le=90, description="M: days with at least one outage that open a ticket")
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone of the local days and the hours shown")
    severity: str = Field(default="warning", pattern="^(warning|critical)$")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Asia/Shanghai") from None
        return name

    @model_validator(mode="after")
    def _m_of_n(self) -> IntermittentOutageRule:
        if self.min_days > self.days:
            raise ValueError(f"min_days (M={self.min_days}) cannot exceed days (N={self.days})")
        return self


@dataclass(frozen=True)
class StoredOutage:
    agent_id: str
    result_id: str
    start: float  # unix seconds
    duration_s: float
    where: str


@dataclass(frozen=True)
class Judgement:
    breach: bool
    summary: str
    detail: dict[str, object]
    evidence: list[tuple[str, str]]


def judge(line_id: str, outages: Sequence[StoredOutage], rule: IntermittentOutageRule, now: datetime) -> Judgement:
    """Whether the line dropped on M of the last N local days, and the ticket's statement."""
    zone = ZoneInfo(rule.timezone)
    first_day = (now.astimezone(zone) - timedelta(days=rule.days - 1)).date()
    seen = {(o.start, o.where): o for o in outages}  # a re-sent report carries the same interval
    inside = sorted((o for o in seen.values() if datetime.fromtimestamp(o.start, zone).date() >= first_day),
                    key=lambda o: o.start)
    days = sorted({datetime.fromtimestamp(o.start, zone).date() for o in inside})
    breach = len(days) >= rule.min_days
    if not inside:
        return Judgement(False, "", {}, [])
    longest = max(o.duration_s for o in inside)
    hours = Counter(datetime.fromtimestamp(o.start, zone).hour for o in inside)
    peak = max(hours, key=lambda h: (hours[h], -h))
    where = Counter(o.where for o in inside).most_common(1)[0][0]
    offset = datetime.fromtimestamp(inside[-1].start, zone).strftime("%z")
    zone_label = f"{offset[:3]}:{offset[3:]}"
    summary = (f"Line {line_id} dropped on {len(days)} of the last {rule.days} days: {len(inside)} drop"
               f"{'s' if len(inside) != 1 else ''}, longest {longest:.0f} s, most often between {peak:02d}:00 and "
               f"{(peak + 1) % 24:02d}:00 ({zone_label}); mostly at {WHERE_WORDS.get(where, where)}.")
    detail: dict[str, object] = {
        "rule": FAULT_CLASS, "days": rule.days, "min_days": rule.min_days, "days_with_outages": len(days),
        "outages": len(inside), "longest_s": round(longest, 1), "peak_hour": peak, "timezone": rule.timezone,
        "where": where, "dates": [d.isoformat() for d in days]}
    evidence = list(dict.fromkeys((o.agent_id, o.result_id) for o in reversed(inside)))[:MAX_EVIDENCE]
    return Judgement(breach, summary, detail, evidence)


def stored_outages(conn: Connection, line_id: str, since: datetime) -> list[StoredOutage]:
    """The `outage` checks of a line's results since `since`, with their start and duration."""
    c = t.checks.c  # with its metrics as one JSON object: no join to the metrics view (a second expansion)
    rows = conn.execute(select(c.agent_id, c.result_id, c.target, c.metrics)
                        .where(c.line_id == line_id, c.kind == "outage", c.started_at >= since - timedelta(days=1)))
    out = []
    for r in rows:
        values = documents.metric_values(r.metrics)
        start, duration = values.get("started_unix_s"), values.get("duration_s")
        if start is not None and duration is not None and start >= since.timestamp():
            out.append(StoredOutage(r.agent_id, r.result_id, start, duration, str(r.target)))
    return out


def on_ingest(conn: Connection, fresh: Sequence[ResultEnvelope], now: datetime, rule: IntermittentOutageRule) -> None:
    """Open, refresh or resolve the line's intermittent_outage ticket when its heartbeat reported."""
    if not rule.enabled:
        return
    for line_id in sorted({e.line_id for e in fresh if any(c.kind in REPORT_KINDS for c in e.checks)}):
        j = judge(line_id, stored_outages(conn, line_id, now - timedelta(days=rule.days)), rule, now)
        open_ = tickets.open_ticket_for(conn, line_id, FAULT_CLASS)
        if j.breach:
            latest = next(e for e in reversed(fresh) if e.line_id == line_id)
            tickets.open_ticket(conn, line_id=line_id, fault_class=FAULT_CLASS, summary=j.summary,
                                severity=rule.severity, location="wan", evidence=j.evidence,
                                agent_id=latest.agent_id, detail=j.detail, now=now)
        elif open_ is not None:
            tickets.resolve_open(conn, line_id, FAULT_CLASS, "rule",
                                 f"fewer than {rule.min_days} of the last {rule.days} days had an outage", now=now)
