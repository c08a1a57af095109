"""The one place the agent builds result envelopes: validated, and numbered only by the spool.

Every producer — the line check (agent/runner.py), a check process that failed
(agent/checkproc.py), a LAN/WiFi room test (agent/lan/record.py) — calls `draft(...)`. A draft is
a `ResultEnvelope` whose every field has been validated against the wire model (linecheck/wire.py)
except `seq`, which is 0: a sequence number is a promise to the collector ("nothing between the
last one and this one is missing"), so only the spool may hand one out, inside the transaction that
stores the result (agent/spool.py calls `sealed`). Nothing else invents a seq.

A draft that is never spooled (`linecheck-agent check --no-spool`) keeps seq 0. That is below the
wire's minimum of 1, so such a result can be printed and reported but never ingested as if it had
been delivered; a no-spool run consumes no number and leaves no gap behind.

Validation runs once per result (a few milliseconds beside a check that takes seconds), and a
result that would not pass the collector's validation fails here, where the producer is on the
stack, instead of at enqueue. This module imports only the wire model and the clock, so the daemon
(which parses its check process's answer with `parse_draft`) stays small (tests/test_checkproc.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import Field

from agent import clock
from linecheck import __version__
from linecheck.wire import CheckResult, Finding, ResultEnvelope, Trigger, Verdict, new_result_id, utcnow

UNSEQUENCED: Final[Literal[0]] = 0  # the seq of a draft: not (yet) given a number by the spool


class Draft(ResultEnvelope):
    """A validated envelope that the spool has not numbered yet (seq 0)."""

    seq: Literal[0] = Field(default=UNSEQUENCED,  # type: ignore[assignment]
                            description="0 until the spool assigns the real seq at enqueue")


def _dumped(items: Iterable[CheckResult | Finding]) -> list[dict[str, Any]]:
    # Dumped and validated again: a model_copy(update=...) upstream (e.g. localise) skips validation.
    return [item.model_dump(by_alias=True) for item in items]


def draft(*, agent_id: str, line_id: str, site_id: str, trigger: Trigger, checks: Sequence[CheckResult],
          verdict: Verdict, findings: Sequence[Finding] = (), trigger_info: Mapping[str, Any] | None = None,
          started_at: datetime | None = None, ended_at: datetime | None = None) -> Draft:
    """A new result (fresh result_id, the clock's state, this agent's version), validated; seq 0.

    Raises pydantic.ValidationError when a field would not pass the collector's validation."""
    now = utcnow()
    return Draft.model_validate({
        "schema": 1, "result_id": new_result_id(), "agent_id": agent_id, "seq": UNSEQUENCED, "line_id": line_id,
        "site_id": site_id, "trigger": trigger, "trigger_info": dict(trigger_info or {}),
        "started_at": started_at or now, "ended_at": ended_at or now, "clock": clock.state().model_dump(),
        "agent_version": __version__, "checks": _dumped(checks), "verdict": verdict, "findings": _dumped(findings),
    })


def parse_draft(payload: bytes | str) -> Draft:
    """A draft sent as JSON by another agent process (the check process's stdout), validated."""
    return Draft.model_validate_json(payload)


def sealed(envelope: ResultEnvelope, seq: int, *, add_checks: Sequence[CheckResult] = (),
           add_findings: Sequence[Finding] = ()) -> ResultEnvelope:
    """The envelope as the spool stores it: numbered `seq`, with the spool's own pseudo-check and
    findings appended, validated as a wire record. Called by the spool inside its write transaction."""
    data = envelope.model_dump(by_alias=True)
    data["seq"] = seq
    data["checks"] = [*data["checks"], *_dumped(add_checks)]
    data["findings"] = [*data["findings"], *_dumped(add_findings)]
    return ResultEnvelope.model_validate(data)


def rebuilt(envelope: ResultEnvelope, *, checks: Sequence[CheckResult], findings: Sequence[Finding]) -> ResultEnvelope:
    """The same result (same seq and identity) with its checks and findings replaced, validated —
    how the spool compacts a stored result to its verdict summary."""
    data = envelope.model_dump(by_alias=True)
    data["checks"] = _dumped(checks)
    data["findings"] = _dumped(findings)
    return type(envelope).model_validate(data)
