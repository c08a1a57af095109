"""Finding codes the checks emit, and the judgement shared by the probe checks (ping, udp_latency).

The codes are a contract: the collector's rules, WiFi localisation and the self-check report key
on them (docs/findings.md lists each with its meaning and `where`). Never rename one; add a new
code instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from linecheck.wire import Finding, MetricValue, Status

# code -> (where, meaning). docs/findings.md is checked against this table by a test.
CODES: dict[str, tuple[str, str]] = {
    "line_down": ("wan", "The WAN port has no link, or the gateway has no route to the internet."),
    "target_unreachable": ("wan", "A probed target (gateway, test server, anchor) answered nothing."),
    "packet_loss": ("wan", "Probes to a target are lost (ICMP echo or STAMP)."),
    "high_latency": ("wan", "Round trips to a target take longer than the threshold."),
    "high_jitter": ("wan", "Round-trip times to a target vary more than the threshold."),
    "dns_failure": ("dns", "A resolver timed out, answered SERVFAIL, or said an expected name does not exist "
                           "(NXDOMAIN); detail.error is timeout, servfail, nxdomain, refused or error."),
    "wan_link_degraded": ("cpe", "The WAN port negotiated below the plan's speed, runs half duplex, or "
                                 "counts errors/drops."),
    "gateway_unreachable": ("wan", "The default route's next hop answers neither ARP nor ping."),
    "pmtu_blackhole": ("wan", "Packets above a size vanish without the ICMP 'fragmentation needed' that "
                              "would let TCP adapt: large transfers hang."),
    "pmtu_reduced": ("wan", "The path MTU is below the WAN interface MTU (e.g. PPPoE overhead), and the path "
                            "says so with ICMP."),
    "ipv6_unavailable": ("wan", "No global IPv6 address, no IPv6 default route, or the IPv6 target does not "
                                "answer."),
    "http_failure": ("wan", "An HTTP(S) URL could not be fetched, or answered with an error status."),
    "service_suspended": ("service", "The line is cut off at the carrier: web traffic is redirected to a "
                                     "portal, DNS is hijacked to a portal, or only the portal is reachable."),
    # WiFi and LAN (agent/checks/wifi.py, the LAN throughput test, agent/localise.py; docs/wifi.md)
    "wifi_weak": ("wifi", "A WiFi station's signal (or a room test's station) is at or below the weak threshold."),
    "wifi_low_rate": ("wifi", "A WiFi station's PHY rate is low although its signal is adequate."),
    "wifi_channel_busy": ("wifi", "The WiFi channel is busy (any transmitter heard) most of the time."),
    "wifi_interference": ("wifi", "Strong neighbouring networks overlap our channel, or frames to a station with "
                                  "an adequate signal are retried often."),
    "wifi_not_connected": ("wifi", "The gateway's WiFi client interface is not connected."),
    "wifi_throughput_low": ("wifi", "A room's WiFi test to the gateway is slow although the station's radio "
                                    "figures look fine (the device may be the limit)."),
    "lan_throughput_low": ("lan", "A room's test to the gateway is slow and the device is not a WiFi station "
                                  "of this gateway (cable, switch or another access point)."),
    "throughput_below_plan": ("wan", "The line's measured capacity is far below the subscribed plan "
                                     "(below slow_pct_of_plan, with little cross-traffic)."),
}


def finding(code: str, severity: str, check: str, message: str,
            detail: dict[str, MetricValue | str] | None = None) -> Finding:
    """A Finding with its `where` taken from the code table, so a code is always localised the same way."""
    where, _meaning = CODES[code]
    return Finding(code=code, severity=severity, check=check, where=where, message=message,  # type: ignore[arg-type]
                   detail=dict(detail or {}))


@dataclass(frozen=True)
class ProbeThresholds:
    loss_degraded_pct: float
    loss_failed_pct: float
    rtt_degraded_ms: float
    jitter_degraded_ms: float


def judge_probes(check: str, target: str, metrics: dict[str, MetricValue], limits: ProbeThresholds,
                 what: str = "packets") -> tuple[Status, str | None, list[Finding]]:
    """Status, reason and findings from loss/RTT/jitter metrics (sent_count, received_count, loss_pct,
    rtt_avg_ms, jitter_ms)."""
    sent, received = metrics.get("sent_count"), metrics.get("received_count")
    if not received:
        return (Status.FAILED, f"no reply from {target} ({sent} {what} sent)",
                [finding("target_unreachable", "critical", check, f"{target} answers none of the {sent} {what}.",
                         {"target": target})])
    loss = metrics.get("loss_pct")
    avg = metrics.get("rtt_avg_ms")
    jitter = metrics.get("jitter_ms")
    assert isinstance(loss, int | float) and isinstance(avg, int | float)
    if loss >= limits.loss_failed_pct:
        return (Status.FAILED, f"{loss:g}% packet loss to {target}",
                [finding("packet_loss", "critical", check, f"{loss:g}% of {what} to {target} are lost.",
                         {"target": target, "loss_pct": loss})])
    problems: list[str] = []
    found: list[Finding] = []
    if loss >= limits.loss_degraded_pct:
        problems.append(f"{loss:g}% packet loss")
        found.append(finding("packet_loss", "warning", check, f"{loss:g}% of {what} to {target} are lost.",
                             {"target": target, "loss_pct": loss}))
    if avg >= limits.rtt_degraded_ms:
        problems.append(f"average RTT {avg:.1f} ms")
        found.append(finding("high_latency", "warning", check,
                             f"Round trips to {target} take {avg:.0f} ms on average.",
                             {"target": target, "rtt_avg_ms": avg}))
    if isinstance(jitter, int | float) and jitter >= limits.jitter_degraded_ms:
        problems.append(f"jitter {jitter:.1f} ms")
        found.append(finding("high_jitter", "warning", check,
                             f"Round trips to {target} vary by {jitter:.0f} ms from one packet to the next "
                             "(voice and video calls will stutter).",
                             {"target": target, "jitter_ms": jitter}))
    if problems:
        return Status.DEGRADED, f"{target}: " + ", ".join(problems), found
    return Status.OK, None, []
