"""Finding codes are a contract: the code table, its documentation and the shared probe judgement."""

from __future__ import annotations

import re
from pathlib import Path

from agent.findings import CODES, ProbeThresholds, finding, judge_probes
from linecheck.wire import Status

DOC = Path(__file__).resolve().parent.parent / "docs" / "findings.md"
LIMITS = ProbeThresholds(loss_degraded_pct=1, loss_failed_pct=20, rtt_degraded_ms=100, jitter_degraded_ms=30)


def test_docs_table_matches_the_code_table() -> None:
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\w+) \|", DOC.read_text(), re.M)
    assert dict(rows) == {code: where for code, (where, _m) in CODES.items()}


def test_finding_takes_where_from_the_code() -> None:
    f = finding("dns_failure", "critical", "dns", "The resolver times out.", {"error": "timeout"})
    assert (f.where, f.detail["error"]) == ("dns", "timeout")


def _metrics(sent: int, received: int, avg: float | None, jitter: float | None) -> dict:
    loss = 100.0 * (sent - received) / sent
    return {"sent_count": sent, "received_count": received, "loss_pct": loss, "rtt_avg_ms": avg, "jitter_ms": jitter}


def test_judge_probes_table() -> None:
    cases = [
        (_metrics(10, 10, 5.0, 1.0), Status.OK, set()),
        (_metrics(10, 0, None, None), Status.FAILED, {"target_unreachable"}),
        (_metrics(10, 7, 5.0, 1.0), Status.FAILED, {"packet_loss"}),
        (_metrics(100, 95, 5.0, 1.0), Status.DEGRADED, {"packet_loss"}),
        (_metrics(10, 10, 150.0, 1.0), Status.DEGRADED, {"high_latency"}),
        (_metrics(10, 10, 20.0, 45.0), Status.DEGRADED, {"high_jitter"}),
        (_metrics(1, 1, 20.0, None), Status.OK, set()),  # one reply: no jitter, not a fault
    ]
    for metrics, status, codes in cases:
        got, reason, found = judge_probes("ping", "t", metrics, LIMITS)
        assert (got, {f.code for f in found}) == (status, codes), (metrics, reason)
        assert (reason is None) == (status is Status.OK)
