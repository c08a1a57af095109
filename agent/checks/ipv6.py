"""ipv6: a global IPv6 address, an IPv6 default route, and reachability of an IPv6 target.

Addresses and routes are read from /proc/net/if_inet6 and /proc/net/ipv6_route (pure parsers,
tested on captured files); reachability uses the unprivileged ICMPv6 echo socket of `ping`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.checks.ping import echo, summarise
from agent.findings import finding
from agent.reasons import because, because_of, step
from linecheck.wire import MetricValue, Status

IF_INET6 = Path("/proc/net/if_inet6")
IPV6_ROUTE = Path("/proc/net/ipv6_route")
IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_TENTATIVE = 0x08, 0x20, 0x40
RTF_UP, RTF_REJECT = 0x0001, 0x0200
GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


class Ipv6Config(CheckConfig):
    expected: bool = Field(default=True, description="false: this line has no IPv6 by contract; the check skips")
    required: bool = Field(default=False, description="true: missing IPv6 is failed (critical), else degraded")
    target: str | None = Field(default="2400:3200::1",
                               description="IPv6 address to echo (a public anchor or the carrier's server); "
                                           "null = no reachability test")
    count: int = Field(default=5, ge=1, le=100)
    interval_s: float = Field(default=0.2, ge=0.01, le=10)
    reply_timeout_s: float = Field(default=2.0, gt=0, le=30)
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Address:
    address: str
    prefix_len: int
    interface: str
    usable: bool  # not tentative, deprecated or failed duplicate address detection


def parse_if_inet6(text: str) -> list[Address]:
    """Global unicast (2000::/3) addresses from /proc/net/if_inet6."""
    out: list[Address] = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 6:
            continue
        addr = ipaddress.IPv6Address(bytes.fromhex(cols[0]))
        if not ((addr.is_global and addr in GLOBAL_UNICAST) or _benchmarking(addr)):
            continue
        flags = int(cols[4], 16)
        usable = not flags & (IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE)
        out.append(Address(str(addr), int(cols[2], 16), cols[5], usable))
    return out


def _benchmarking(addr: ipaddress.IPv6Address) -> bool:
    # 2001:2::/48 (RFC 5180) is reserved, so Python's is_global is False; the lab uses it as "global".
    return addr in ipaddress.IPv6Network("2001:2::/48")


def parse_ipv6_default_route(text: str) -> tuple[str, str | None] | None:
    """(interface, next hop or None) of the IPv6 default route with the lowest metric."""
    best: tuple[int, tuple[str, str | None]] | None = None
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10 or cols[0] != "0" * 32 or cols[1] != "00":
            continue
        flags = int(cols[8], 16)
        if not flags & RTF_UP or flags & RTF_REJECT or cols[9] == "lo":
            continue
        hop = None if cols[4] == "0" * 32 else str(ipaddress.IPv6Address(bytes.fromhex(cols[4])))
        metric = int(cols[5], 16)
        if best is None or metric < best[0]:
            best = (metric, (cols[9], hop))
    return best[1] if best else None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # no IPv6 in this kernel at all: the files are absent
        return ""


def run(cfg: Ipv6Config, ctx: CheckContext) -> Measurement:
    if not cfg.expected:
        return Measurement(Status.SKIPPED, because("ipv6_not_expected"))
    addresses = [a for a in parse_if_inet6(_read(IF_INET6)) if a.usable]
    route = parse_ipv6_default_route(_read(IPV6_ROUTE))
    metrics: dict[str, MetricValue] = {
        "global_address_count": len(addresses),
        "default_route_flag": int(route is not None),
        "loss_pct": None,
        "rtt_avg_ms": None,
    }
    target = route[0] if route else (addresses[0].interface if addresses else None)
    missing = "address" if not addresses else "route" if route is None else None
    if missing is None and cfg.target:
        ctx.progress(step("ping", target=cfg.target))
        try:
            stats = summarise(echo(cfg.target, cfg.count, cfg.interval_s, cfg.reply_timeout_s, 56, ctx.deadline))
            metrics.update(loss_pct=stats["loss_pct"], rtt_avg_ms=stats["rtt_avg_ms"])
            if not stats["received_count"]:
                missing = "reachability"
        except PermissionError as exc:
            return Measurement(Status.SKIPPED, [because("ipv6_reachability_untested"), because_of(exc)],
                               metrics, target)
        target = cfg.target
    if missing is None:
        return Measurement(Status.OK, None, metrics, target)
    explain = {"address": because("ipv6_no_address"), "route": because("ipv6_no_route"),
               "reachability": because("ipv6_unreachable", target=cfg.target or "")}[missing]
    sentence = {"address": "This office has no IPv6 address: the carrier's IPv6 service is not reaching it.",
                "route": "This office has an IPv6 address but no IPv6 route to the internet.",
                "reachability": f"IPv6 is configured but {cfg.target} cannot be reached over it."}[missing]
    severity = "critical" if cfg.required else "warning"
    return Measurement(Status.FAILED if cfg.required else Status.DEGRADED, explain, metrics, target,
                       [finding("ipv6_unavailable", severity, "ipv6", sentence, {"missing": missing})])


SPEC = CheckSpec(kind="ipv6", config=Ipv6Config, run=run)
