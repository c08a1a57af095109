"""The check registry: the only place that lists check kinds.

To add a check, write agent/checks/<kind>.py exposing `SPEC = CheckSpec(...)`, add it below,
give it its rows in the catalogues (linecheck/kinds.csv, metrics.csv, findings.csv for new codes)
and a sample in config/. See docs/extending.md. The registry and the kind catalogue must agree:
importing this module fails otherwise.
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
from linecheck.catalogue import kinds

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

_unregistered = sorted(k for k, spec in kinds().items() if spec.source == "check" and k not in REGISTRY)
if _unregistered:  # a catalogued check kind without a module: the collector would expect results that never come
    raise ImportError(f"linecheck/kinds.csv lists check kind(s) {_unregistered} that agent/checks does not register")
