"""Finding codes the checks emit, and the judgement shared by the probe checks (ping, udp_latency).

The codes are a contract: the collector's rules, WiFi localisation and the self-check report key
on them. They live in linecheck/findings.csv (docs/findings.md is generated from it), which both
sides import; never rename one, add a new code instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.reasons import Reason, because
from linecheck import catalogue
from linecheck.i18n import Texts
from linecheck.wire import Finding, MetricValue, Status

# code -> (where, meaning), from the catalogue linecheck/findings.csv (the contract both sides import).
CODES: dict[str, tuple[str, str]] = {code: (spec.where, spec.meaning) for code, spec in catalogue.findings().items()}


def finding(code: str, severity: str, check: str, message: str,
            detail: dict[str, MetricValue | str] | None = None) -> Finding:
    """A Finding with its `where` taken from the catalogue, so a code is always localised the same way.

    Every finding is built here: a code linecheck/findings.csv does not list is an error.
    tests/test_catalogue.py finds every call in the agent and checks its code, and its severity when
    written out, against the catalogue."""
    spec = catalogue.finding_spec(code)
    return Finding(code=code, severity=severity, check=check, where=spec.where, message=message,  # type: ignore[arg-type]
                   detail=dict(detail or {}))


def reached_by_name(found: list[Finding], name: str | None, address: str) -> list[Finding]:
    """Findings about a target the check looked up by `name`, with the name and the address it led to
    in their detail: when the DNS check saw that name resolve to a wrong address, localisation puts
    the probe's failure on DNS, not on the line (agent/localise.py rule 4)."""
    if not name:
        return found
    return [f.model_copy(update={"detail": {**f.detail, "name": name[:253], "address": address}}) for f in found]


@dataclass(frozen=True)
class ProbeThresholds:
    loss_degraded_pct: float
    loss_failed_pct: float
    rtt_degraded_ms: float
    jitter_degraded_ms: float


def judge_probes(check: str, target: str, metrics: dict[str, MetricValue], limits: ProbeThresholds,
                 probes: str = "packets") -> tuple[Status, Reason, list[Finding]]:
    """Status, reason and findings from loss/RTT/jitter metrics (sent_count, received_count, loss_pct,
    rtt_avg_ms, jitter_ms). `probes` names what was sent (icmp, stamp, packets: linecheck/i18n [values])."""
    what = Texts("en").value("probes", probes)  # the findings' English messages
    sent, received = metrics.get("sent_count"), metrics.get("received_count")
    if not received:
        return (Status.FAILED, because("probe_no_reply", target=target, sent=sent, probes=probes),
                [finding("target_unreachable", "critical", check, f"{target} answers none of the {sent} {what}.",
                         {"target": target})])
    loss = metrics.get("loss_pct")
    avg = metrics.get("rtt_avg_ms")
    jitter = metrics.get("jitter_ms")
    assert isinstance(loss, int | float) and isinstance(avg, int | float)
    if loss >= limits.loss_failed_pct:
        return (Status.FAILED, because("probe_loss_failed", target=target, loss_pct=loss),
                [finding("packet_loss", "critical", check, f"{loss:g}% of {what} to {target} are lost.",
                         {"target": target, "loss_pct": loss})])
    problems: list[Reason] = []
    found: list[Finding] = []
    if loss >= limits.loss_degraded_pct:
        problems.append(because("probe_loss", target=target, loss_pct=loss))
        found.append(finding("packet_loss", "warning", check, f"{loss:g}% of {what} to {target} are lost.",
                             {"target": target, "loss_pct": loss}))
    if avg >= limits.rtt_degraded_ms:
        problems.append(because("probe_rtt", target=target, rtt_avg_ms=avg))
        found.append(finding("high_latency", "warning", check,
                             f"Round trips to {target} take {avg:.0f} ms on average.",
                             {"target": target, "rtt_avg_ms": avg}))
    if isinstance(jitter, int | float) and jitter >= limits.jitter_degraded_ms:
        problems.append(because("probe_jitter", target=target, jitter_ms=jitter))
        found.append(finding("high_jitter", "warning", check,
                             f"Round trips to {target} vary by {jitter:.0f} ms from one packet to the next "
                             "(voice and video calls will stutter).",
                             {"target": target, "jitter_ms": jitter}))
    if problems:
        return Status.DEGRADED, problems, found  # type: ignore[return-value]
    return Status.OK, None, []
