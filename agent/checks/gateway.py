"""gateway: the default route's next hop, its ARP reachability and its latency.

ARP shows whether the carrier's equipment is there at layer 2 even when it ignores ping. It needs
a raw packet socket (CAP_NET_RAW; give it to the agent's systemd unit, never to the interpreter);
without it the check falls back to ICMP echo alone and says so with `arp_permitted_flag` = 0.
The request and its reply go through a plain AF_PACKET socket (agent/arp.py), not scapy: the same
answer without scapy's ~30 MB in the check process.
"""

from __future__ import annotations

import logging
import time

from pydantic import Field

from agent import arp
from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.checks.ping import echo, summarise
from agent.findings import finding
from agent.netinfo import default_route
from agent.reasons import because, step
from linecheck.wire import MetricValue, Status

log = logging.getLogger(__name__)


class GatewayConfig(CheckConfig):
    arp: bool = Field(default=True, description="Probe the next hop with ARP when permitted (CAP_NET_RAW)")
    arp_count: int = Field(default=3, ge=1, le=20)
    ping_count: int = Field(default=5, ge=1, le=100)
    interval_s: float = Field(default=0.1, ge=0.01, le=5)
    reply_timeout_s: float = Field(default=1.0, gt=0, le=10)
    rtt_degraded_ms: float = Field(default=20.0, gt=0, description="The first hop should answer fast")
    timeout_s: float = 30.0


def arp_probe(interface: str, address: str, count: int, timeout_s: float) -> list[float]:
    """RTTs (ms) of ARP replies from `address`; raises PermissionError without CAP_NET_RAW."""
    return arp.probe(interface, address, count, timeout_s)


def run(cfg: GatewayConfig, ctx: CheckContext) -> Measurement:
    route = default_route()
    if route is None:
        return Measurement(Status.FAILED, because("no_default_route"), findings=[
            finding("line_down", "critical", "gateway", "The gateway has no route to the internet.")])
    if route.gateway is None:
        return Measurement(Status.SKIPPED, because("route_point_to_point", interface=route.interface),
                           target=route.interface)
    target = f"{route.gateway} via {route.interface}"
    metrics: dict[str, MetricValue] = {"arp_permitted_flag": None, "arp_sent_count": None,
                                       "arp_received_count": None, "arp_rtt_avg_ms": None}
    arp_note = because("arp_disabled")
    if cfg.arp:
        ctx.progress(step("arp", address=route.gateway))
        try:
            rtts = arp_probe(route.interface, route.gateway, cfg.arp_count, cfg.reply_timeout_s)
            metrics.update(arp_permitted_flag=1, arp_sent_count=cfg.arp_count, arp_received_count=len(rtts),
                           arp_rtt_avg_ms=round(sum(rtts) / len(rtts), 3) if rtts else None)
        except PermissionError:
            metrics["arp_permitted_flag"] = 0
            arp_note = because("arp_not_permitted")
            log.info("gateway: ARP needs CAP_NET_RAW, so only ping was used")
        except OSError as exc:  # e.g. the interface vanished between reading the route and probing
            arp_note = because("arp_failed", diagnostic=str(exc))
    ctx.progress(step("ping", target=route.gateway))
    ping_note = ""
    try:
        stats = echo(route.gateway, cfg.ping_count, cfg.interval_s, cfg.reply_timeout_s, 56,
                     min(ctx.deadline, time.monotonic() + cfg.ping_count * cfg.interval_s + cfg.reply_timeout_s))
        ping = summarise(stats)
        metrics.update(ping_loss_pct=ping["loss_pct"], ping_rtt_avg_ms=ping["rtt_avg_ms"])
    except PermissionError as exc:
        metrics.update(ping_loss_pct=None, ping_rtt_avg_ms=None)
        ping_note = str(exc)
    arp_ok = bool(metrics["arp_received_count"])
    ping_ok = metrics["ping_rtt_avg_ms"] is not None
    if metrics["arp_permitted_flag"] != 1 and ping_note:
        metrics["reachable_flag"] = None
        return Measurement(Status.SKIPPED, [because("gateway_cannot_probe", gateway=route.gateway), arp_note,
                                            because("raw", diagnostic=ping_note)], metrics, target)
    metrics["reachable_flag"] = int(arp_ok or ping_ok)
    if not (arp_ok or ping_ok):
        tried = "gateway_silent_arp_ping" if metrics["arp_permitted_flag"] == 1 else "gateway_silent_ping"
        return Measurement(Status.FAILED, because(tried, gateway=route.gateway), metrics, target,
                           [finding("gateway_unreachable", "critical", "gateway",
                                    f"The carrier's equipment at {route.gateway} does not answer on {route.interface}.",
                                    {"gateway": route.gateway})])
    rtt = metrics["ping_rtt_avg_ms"]
    if isinstance(rtt, float | int) and rtt >= cfg.rtt_degraded_ms:
        return Measurement(Status.DEGRADED, because("gateway_slow", gateway=route.gateway, rtt_avg_ms=rtt),
                           metrics, target)
    return Measurement(Status.OK, None, metrics, target)


SPEC = CheckSpec(kind="gateway", config=GatewayConfig, run=run)
