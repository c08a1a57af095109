"""link: is the WAN port up, at what speed and duplex, and is it dropping or erroring?"""

from __future__ import annotations

import time

import psutil
from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.netinfo import carrier_changes
from linecheck.wire import Finding, Status


class LinkConfig(CheckConfig):
    window_s: float = Field(default=2.0, ge=0, le=60, description="Counter sampling window")
    max_errors: int = Field(default=0, ge=0, description="Errors/drops in the window above this: degraded")
    timeout_s: float = 10.0


def run(cfg: LinkConfig, ctx: CheckContext) -> Measurement:
    iface = ctx.line.wan_interface
    if not iface:
        return Measurement(Status.FAILED, "no WAN interface: no default route and none configured",
                           findings=[Finding(code="line_down", severity="critical", check="link", where="wan",
                                             message="The gateway has no route to the internet.")])
    stats = psutil.net_if_stats().get(iface)
    if stats is None:
        return Measurement(Status.ERROR, f"WAN interface {iface!r} does not exist", target=iface)
    before = psutil.net_io_counters(pernic=True).get(iface)
    if cfg.window_s:
        time.sleep(min(cfg.window_s, ctx.remaining()))  # counters need an interval to yield a delta
    after = psutil.net_io_counters(pernic=True).get(iface)

    speed = stats.speed or None  # psutil reports 0 when the driver does not know
    duplex = {psutil.NIC_DUPLEX_FULL: 1, psutil.NIC_DUPLEX_HALF: 0}.get(stats.duplex)
    metrics: dict[str, float | int | None] = {
        "wan_up_flag": 1 if stats.isup else 0,
        "wan_speed_mbps": speed,
        "wan_full_duplex_flag": duplex,
        "wan_mtu_bytes": stats.mtu,
    }
    for name, attr in (("errors_in", "errin"), ("errors_out", "errout"),
                       ("drops_in", "dropin"), ("drops_out", "dropout")):
        metrics[f"wan_{name}_count"] = (getattr(after, attr) - getattr(before, attr)) if before and after else None

    flaps_now = carrier_changes(iface)
    flaps_before = ctx.state.get("carrier_changes")
    metrics["wan_carrier_changes_count"] = (
        flaps_now - flaps_before if flaps_now is not None and flaps_before is not None and flaps_now >= flaps_before
        else None
    )
    if flaps_now is not None:
        ctx.state["carrier_changes"] = flaps_now

    if not stats.isup:
        return Measurement(Status.FAILED, f"WAN interface {iface} is down", metrics, iface,
                           [Finding(code="line_down", severity="critical", check="link", where="wan",
                                    message=f"The WAN port {iface} has no link.")])
    problems: list[str] = []
    findings: list[Finding] = []
    plan = ctx.line.plan_down_mbps
    if speed is not None and plan and speed < plan:
        problems.append(f"WAN port negotiated {speed} Mbit/s, below the {plan:g} Mbit/s plan")
        findings.append(Finding(
            code="wan_link_degraded", severity="warning", check="link", where="cpe",
            message=f"The gateway's WAN port runs at {speed} Mbit/s: the {plan:g} Mbit/s plan cannot reach "
                    "this office until the cable or port is fixed.",
            detail={"wan_speed_mbps": speed, "plan_down_mbps": plan}))
    if duplex == 0:
        problems.append("WAN port is in half duplex")
        findings.append(Finding(code="wan_link_degraded", severity="warning", check="link", where="cpe",
                                message="The gateway's WAN port runs in half duplex (a cabling or "
                                        "autonegotiation fault)."))
    errs = sum(v for k, v in metrics.items() if k.endswith("_count") and "carrier" not in k and v)
    if errs > cfg.max_errors:
        problems.append(f"{errs} errors/drops on {iface} in {cfg.window_s:g} s")
    if problems:
        return Measurement(Status.DEGRADED, "; ".join(problems), metrics, iface, findings)
    return Measurement(Status.OK, None, metrics, iface)


SPEC = CheckSpec(kind="link", config=LinkConfig, run=run, title="WAN link")
