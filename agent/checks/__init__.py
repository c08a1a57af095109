"""The check registry: the only place that lists check kinds.

To add a check, write agent/checks/<kind>.py exposing `SPEC = CheckSpec(...)`, add it below,
list its metrics in linecheck/metrics.csv and give it a sample in config/. See docs/extending.md.
"""

from __future__ import annotations

from agent.checks import dns, link, ping, udp_latency, wifi
from agent.checks.base import CheckSpec

REGISTRY: dict[str, CheckSpec] = {
    spec.kind: spec for spec in (link.SPEC, ping.SPEC, udp_latency.SPEC, dns.SPEC, wifi.SPEC)
}
