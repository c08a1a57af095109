"""The check registry: the only place that lists check kinds.

To add a check, write agent/checks/<kind>.py exposing `SPEC = CheckSpec(...)`, add it below,
list its metrics in linecheck/metrics.csv and give it a sample in config/. See docs/extending.md.
"""

from __future__ import annotations

from agent.checks import (
    dns,
    gateway,
    http,
    ipv6,
    link,
    ping,
    pmtu,
    service_state,
    throughput,
    traceroute,
    udp_latency,
    wifi,
)
from agent.checks.base import CheckSpec

REGISTRY: dict[str, CheckSpec] = {
    spec.kind: spec
    for spec in (
        link.SPEC,
        ping.SPEC,
        udp_latency.SPEC,
        dns.SPEC,
        wifi.SPEC,
        gateway.SPEC,
        pmtu.SPEC,
        traceroute.SPEC,
        ipv6.SPEC,
        http.SPEC,
        service_state.SPEC,
        throughput.SPEC,
    )
}
