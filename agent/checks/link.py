"""link: is the WAN port up, at what speed and duplex, and is it dropping or erroring? The same for
the LAN ports the line config lists (one result each, after the WAN's).

Counters are sampled once before and once after a short window for all ports together, so the
deltas cover the same interval. Carrier flaps come from /sys/class/net/IF/carrier_changes, kept
between runs in the check's state.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.findings import finding
from agent.netinfo import carrier_changes
from agent.reasons import because
from linecheck.i18n.phrases import Phrase
from linecheck.wire import Finding, MetricValue, Status

COUNTERS = (("errors_in", "errin"), ("errors_out", "errout"), ("drops_in", "dropin"), ("drops_out", "dropout"))


class LinkConfig(CheckConfig):
    window_s: float = Field(default=2.0, ge=0, le=60, description="Counter sampling window")
    max_errors: int = Field(default=0, ge=0, description="Errors/drops in the window above this: degraded")
    timeout_s: float = 10.0


def _sysfs(iface: str, name: str) -> str | None:
    try:
        return Path(f"/sys/class/net/{iface}/{name}").read_text().strip()
    except OSError:  # e.g. speed of a port that is down: EINVAL
        return None


def if_stats_from_sysfs() -> dict[str, Any]:
    """What psutil.net_if_stats() says, from /sys/class/net, for when its ethtool ioctl fails outright
    (ENOSYS under qemu-user emulation, where the arm64 package is tested): a port whose speed and duplex
    cannot be read is still up or down, with an MTU and counters."""
    duplexes = {"full": psutil.NIC_DUPLEX_FULL, "half": psutil.NIC_DUPLEX_HALF}
    stats: dict[str, Any] = {}
    root = Path("/sys/class/net")
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        flags, speed, mtu = _sysfs(entry.name, "flags"), _sysfs(entry.name, "speed"), _sysfs(entry.name, "mtu")
        stats[entry.name] = SimpleNamespace(
            isup=bool(int(flags, 16) & 0x1) if flags else False,  # IFF_UP, as psutil reads it
            speed=max(int(speed), 0) if speed and speed.lstrip("-").isdigit() else 0,  # -1: unknown, as psutil's 0
            duplex=duplexes.get(_sysfs(entry.name, "duplex") or "", psutil.NIC_DUPLEX_UNKNOWN),
            mtu=int(mtu) if mtu and mtu.isdigit() else 0)
    return stats


def net_if_stats() -> dict[str, Any]:
    try:
        return psutil.net_if_stats()
    except OSError:
        return if_stats_from_sysfs()


def port_metrics(prefix: str, iface: str, stats: Any, before: Any, after: Any, flaps_now: int | None,
                 state: dict[str, Any]) -> dict[str, MetricValue]:
    """Metrics of one port, named `<prefix>_...` (wan_ or lan_)."""
    duplex = {psutil.NIC_DUPLEX_FULL: 1, psutil.NIC_DUPLEX_HALF: 0}.get(stats.duplex)
    metrics: dict[str, MetricValue] = {
        f"{prefix}_up_flag": 1 if stats.isup else 0,
        f"{prefix}_speed_mbps": stats.speed or None,  # psutil reports 0 when the driver does not know
        f"{prefix}_full_duplex_flag": duplex,
        f"{prefix}_mtu_bytes": stats.mtu,
    }
    for name, attr in COUNTERS:
        metrics[f"{prefix}_{name}_count"] = (getattr(after, attr) - getattr(before, attr)) if before and after else None
    key = "carrier_changes" if prefix == "wan" else f"carrier_changes:{iface}"
    flaps_before = state.get(key)
    metrics[f"{prefix}_carrier_changes_count"] = (
        flaps_now - flaps_before if flaps_now is not None and flaps_before is not None and flaps_now >= flaps_before
        else None
    )
    if flaps_now is not None:
        state[key] = flaps_now
    return metrics


def _errors(prefix: str, metrics: dict[str, MetricValue]) -> int:
    return sum(v for name, _a in COUNTERS if isinstance(v := metrics.get(f"{prefix}_{name}_count"), int))


def judge_wan(cfg: LinkConfig, ctx: CheckContext, iface: str, metrics: dict[str, MetricValue]) -> Measurement:
    if not metrics["wan_up_flag"]:
        return Measurement(Status.FAILED, because("wan_down", interface=iface), metrics, iface,
                           [finding("line_down", "critical", "link", f"The WAN port {iface} has no link.",
                                    {"interface": iface})])
    problems: list[Phrase] = []
    findings: list[Finding] = []
    speed, plan = metrics["wan_speed_mbps"], ctx.line.plan_down_mbps
    if isinstance(speed, int | float) and plan and speed < plan:
        problems.append(because("wan_speed_below_plan", speed_mbps=speed, plan_mbps=plan))
        findings.append(finding(
            "wan_link_degraded", "warning", "link",
            f"The gateway's WAN port runs at {speed} Mbit/s: the {plan:g} Mbit/s plan cannot reach "
            "this office until the cable or port is fixed.", {"wan_speed_mbps": speed, "plan_down_mbps": plan}))
    if metrics["wan_full_duplex_flag"] == 0:
        problems.append(because("wan_half_duplex"))
        findings.append(finding("wan_link_degraded", "warning", "link",
                                "The gateway's WAN port runs in half duplex (a cabling or autonegotiation fault).",
                                {"interface": iface}))
    errs = _errors("wan", metrics)
    if errs > cfg.max_errors:
        problems.append(because("port_errors", count=errs, interface=iface, window_s=cfg.window_s))
        findings.append(finding("wan_link_degraded", "warning", "link",
                                f"The WAN port {iface} is losing or corrupting frames ({errs} in {cfg.window_s:g} s): "
                                "check the cable and the port.", {"interface": iface, "errors_count": errs}))
    if problems:
        return Measurement(Status.DEGRADED, problems, metrics, iface, findings)
    return Measurement(Status.OK, None, metrics, iface)


def judge_lan(cfg: LinkConfig, iface: str, metrics: dict[str, MetricValue]) -> Measurement:
    # LAN faults are the office's, not the line's: degraded with the reason, and no line finding.
    if not metrics["lan_up_flag"]:
        return Measurement(Status.DEGRADED, because("lan_down", interface=iface), metrics, iface)
    problems = []
    if metrics["lan_full_duplex_flag"] == 0:
        problems.append(because("lan_half_duplex", interface=iface))
    errs = _errors("lan", metrics)
    if errs > cfg.max_errors:
        problems.append(because("port_errors", count=errs, interface=iface, window_s=cfg.window_s))
    if problems:
        return Measurement(Status.DEGRADED, problems, metrics, iface)
    return Measurement(Status.OK, None, metrics, iface)


def run(cfg: LinkConfig, ctx: CheckContext) -> list[Measurement]:
    iface = ctx.line.wan_interface
    if not iface:
        return [Measurement(Status.FAILED, because("no_wan_interface"),
                            findings=[finding("line_down", "critical", "link",
                                              "The gateway has no route to the internet.")])]
    all_stats = net_if_stats()
    ports = [("wan", iface)] + [("lan", lan) for lan in ctx.line.lan_interfaces if lan != iface]
    out: dict[str, Measurement] = {}
    for prefix, name in ports:
        if name not in all_stats:
            status = Status.ERROR if prefix == "wan" else Status.DEGRADED
            out[name] = Measurement(status, because(f"{prefix}_interface_missing", interface=name), target=name)
    present = [(p, n) for p, n in ports if n not in out]
    before = psutil.net_io_counters(pernic=True)
    if cfg.window_s and present:
        time.sleep(min(cfg.window_s, ctx.remaining()))  # counters need an interval to yield a delta
    after = psutil.net_io_counters(pernic=True)
    for prefix, name in present:
        metrics = port_metrics(prefix, name, all_stats[name], before.get(name), after.get(name),
                               carrier_changes(name), ctx.state)
        out[name] = judge_wan(cfg, ctx, name, metrics) if prefix == "wan" else judge_lan(cfg, name, metrics)
    return [out[name] for _p, name in ports]


SPEC = CheckSpec(kind="link", config=LinkConfig, run=run)
