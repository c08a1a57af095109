"""Build result envelopes for collector tests: what an agent would publish, without running checks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from linecheck.wire import CheckResult, Finding, ResultEnvelope, Status, Trigger, Verdict, new_result_id

_seq = itertools.count(1)
_clock = itertools.count(0)
BASE = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

FINDING_WHERE = {"line_down": "wan", "packet_loss": "wan", "high_latency": "wan", "dns_failure": "dns",
                 "wan_link_degraded": "cpe", "wifi_weak": "wifi", "service_suspended": "service"}
FINDING_CHECK = {"line_down": "link", "packet_loss": "ping", "high_latency": "ping", "dns_failure": "dns",
                 "wan_link_degraded": "link", "wifi_weak": "wifi", "service_suspended": "service"}


def link_check(up: bool = True) -> CheckResult:
    return CheckResult(kind="link", status=Status.OK if up else Status.FAILED, duration_s=0.1, target="wan0",
                       reason=None if up else "WAN interface wan0 is down",
                       metrics={"wan_up_flag": 1 if up else 0, "wan_speed_mbps": 1000})


def ping_check(loss_pct: float = 0.0, rtt_ms: float | None = 5.0) -> CheckResult:
    status = Status.OK if loss_pct < 1 else Status.DEGRADED if loss_pct < 20 else Status.FAILED
    return CheckResult(kind="ping", status=status, duration_s=2.0, target="198.18.0.1",
                       metrics={"loss_pct": loss_pct, "rtt_avg_ms": None if loss_pct >= 100 else rtt_ms})


def throughput_check(down: float | None, up: float | None = None) -> CheckResult:
    return CheckResult(kind="throughput", status=Status.OK if down is not None else Status.FAILED, duration_s=10,
                       metrics={"down_mbps": down, "up_mbps": up},
                       reason=None if down is not None else "test server unreachable")


def finding(code: str, severity: str = "critical") -> Finding:
    return Finding(code=code, severity=severity, check=FINDING_CHECK.get(code),  # type: ignore[arg-type]
                   where=FINDING_WHERE.get(code), message=f"{code} observed")


def envelope(agent_id: str, line_id: str, checks: list[CheckResult] | None = None,
             findings: list[Finding] | None = None, trigger: Trigger = Trigger.SCHEDULE,
             started_at: datetime | None = None, site_id: str = "site-1", **info: Any) -> ResultEnvelope:
    """A result; each call is one minute later than the previous one unless started_at is given."""
    at = started_at or BASE + timedelta(minutes=next(_clock))
    checks = checks if checks is not None else [link_check(), ping_check()]
    findings = findings or []
    return ResultEnvelope(
        result_id=new_result_id(int(at.timestamp() * 1000)), agent_id=agent_id, seq=next(_seq), line_id=line_id,
        site_id=site_id, trigger=trigger, trigger_info=info, started_at=at, ended_at=at + timedelta(seconds=5),
        agent_version="test", checks=checks, findings=findings,
        verdict=Verdict.PROBLEMS if findings else Verdict.HEALTHY)
