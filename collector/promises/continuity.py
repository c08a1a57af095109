"""Service continuity verdicts: was the line kept on through the protected window (e.g. arrears protection)?

Evidence: `service_suspended` findings from the agent's checks (the line is up but the carrier's
service is cut or redirected to a payment portal) inside the window breach the promise at once.
Their absence only proves something while the agent was reporting: a silence longer than
`max_silence_hours` is a stretch nobody watched, so a finished window with such gaps stays
inconclusive and lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from collector.promises.criterion import ContinuityCriterion
from collector.promises.model import Outcome, ServiceContinuityPromise
from collector.promises.verdict import PromiseVerdict, says, summary_of

SUSPENDED_CODE = "service_suspended"


@dataclass(frozen=True)
class Suspension:
    agent_id: str
    result_id: str
    at: datetime
    message: str


def silences(report_times: Sequence[datetime], start: datetime, end: datetime,
             max_silence: timedelta) -> list[tuple[datetime, datetime]]:
    """Stretches within [start, end] longer than `max_silence` without any report."""
    marks = [start, *sorted(t for t in report_times if start <= t <= end), end]
    return [(a, b) for a, b in zip(marks, marks[1:], strict=False) if b - a > max_silence]


def evaluate_continuity(promise: ServiceContinuityPromise, suspensions: Sequence[Suspension],
                        report_times: Sequence[datetime], crit: ContinuityCriterion, now: datetime,
                        judgeable_from: datetime, zone: tzinfo) -> PromiseVerdict:
    start, end = promise.window(zone)
    inside = sorted((s for s in suspensions if start <= s.at < end), key=lambda s: s.at)
    in_grace = now < judgeable_from
    watched_until = min(now, end)
    gaps = silences(report_times, start, watched_until, timedelta(hours=crit.max_silence_hours)) \
        if watched_until > start else []
    detail: dict[str, object] = {
        "promise": promise.model_dump(mode="json"),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "suspensions": [{"agent_id": s.agent_id, "result_id": s.result_id, "at": s.at.isoformat(),
                         "message": s.message} for s in inside],
        "silences": [{"from": a.isoformat(), "to": b.isoformat(), "hours": round((b - a).total_seconds() / 3600, 1)}
                     for a, b in gaps],
        "reports": sum(1 for t in report_times if start <= t < end),
        "max_silence_hours": crit.max_silence_hours,
    }
    args = {"start": promise.start.isoformat(), "end": promise.end.isoformat()}
    if inside:
        first = inside[0]
        outcome = Outcome.NOT_DELIVERED
        said = says("continuity_suspended", **args, count=len(inside),
                    first=f"{first.at.astimezone(zone):%Y-%m-%d %H:%M}")
    elif now < start:
        outcome, said = Outcome.INCONCLUSIVE, says("continuity_not_started", **args)
    elif gaps:
        outcome = Outcome.INCONCLUSIVE
        hours = sum((b - a).total_seconds() for a, b in gaps) / 3600
        said = says("continuity_silent", **args, stretches=len(gaps), hours=hours)
    elif now < end:
        outcome, said = Outcome.INCONCLUSIVE, says("continuity_so_far", **args)
    else:
        outcome, said = Outcome.DELIVERED, says("continuity_kept", **args)
    summary = summary_of([said])
    if inside:  # the agent's own words about the first suspension, as evidence (English)
        summary += f" — {inside[0].message}"
    return PromiseVerdict(promise.id, promise.line_id, "service_continuity", outcome, summary, now, judgeable_from,
                          in_grace, detail, said=[said])
