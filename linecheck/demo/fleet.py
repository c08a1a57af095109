"""The demo's simulated fleet: four offices beside the machine's own line, and what each reports.

- `sim-xuhui-1`: healthy, and its promised 500/300 upgrade is delivered;
- `sim-pudong-1`: sold as upgraded to 500/300 but still carries about 200/50 (the carrier's speed
  promise is not kept; far below plan, so the speed rule asks a re-test too and, confirmed, links its
  verdict to the promise's ticket);
- `sim-jingan-1`: the carrier's DNS server stopped answering (a `dns_failure` ticket); its tariff
  reduction promise is judged from billing records;
- `sim-huangpu-1`: an office that stood empty for 62 days (daily idle watchdog checks) and came back
  with its WAN port at 100 Mbit/s on a 200M plan (a bad cable found by the resume check).

Every site, line and tenant name says "simulated", and every result's agent version ends in
`-simulated`, so nobody mistakes them for real gateways. The history is laid out backwards from
an anchor time (the first seeding) and is deterministic: the same anchor gives the same results,
ids included. Pure: no I/O, no clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from linecheck import __version__
from linecheck.demo import measure
from linecheck.wire import CheckResult, ClockState, Finding, ResultEnvelope, Status, Trigger, Verdict

AGENT_VERSION = f"{__version__}-simulated"
TENANT = "demo-sim"
ZONE = ZoneInfo("Asia/Shanghai")  # the promise ledger's default zone for dates and billing months
IDLE_DAYS = 62


@dataclass(frozen=True)
class SimLine:
    key: str  # healthy | slow | dns | reopened
    agent_id: str
    line_id: str
    site_id: str
    place: str  # the office's district
    plan_down: int
    plan_up: int
    port_mbps: int  # the WAN port's speed now
    down_mbps: float | None  # what the line carries (None: no speed test on this gateway)
    up_mbps: float | None
    dns_ok: bool
    rtt_ms: float

    @property
    def site_name(self) -> str:
        return f"{self.place} office · demo (simulated)"


LINES: tuple[SimLine, ...] = (
    SimLine("healthy", "sim-xuhui-gw", "sim-xuhui-1", "sim-xuhui", "Xuhui", 500, 300, 1000, 486.0, 292.0, True, 6.0),
    SimLine("slow", "sim-pudong-gw", "sim-pudong-1", "sim-pudong", "Pudong", 500, 300, 1000, 196.0, 48.0, True, 9.0),
    SimLine("dns", "sim-jingan-gw", "sim-jingan-1", "sim-jingan", "Jing'an", 200, 50, 1000, None, None, False, 7.0),
    SimLine("reopened", "sim-huangpu-gw", "sim-huangpu-1", "sim-huangpu", "Huangpu", 200, 50, 100, None, None, True,
            11.0),
)
BY_AGENT = {line.agent_id: line for line in LINES}
CHECK_KINDS = ("link", "ping", "dns", "throughput")  # what a simulated gateway can be asked to re-test


@dataclass(frozen=True)
class Planned:
    """One result of the history: when, why, and whether the fault had started yet."""

    line: SimLine
    at: datetime
    trigger: Trigger
    before_fault: bool = False
    info: tuple[tuple[str, float], ...] = ()


def history(anchor: datetime) -> dict[str, list[Planned]]:
    """Per agent, its results before `anchor`, oldest first (their seq is their position + 1)."""
    plans: dict[str, list[Planned]] = {}
    for line in LINES:
        if line.key in ("healthy", "slow"):  # a check with a speed test every 6 hours for 4 days
            plans[line.agent_id] = [Planned(line, anchor - timedelta(minutes=10, hours=6 * (15 - i)),
                                            Trigger.SCHEDULE) for i in range(16)]
        elif line.key == "dns":  # every 3 hours; the resolver stopped answering after the second
            plans[line.agent_id] = [Planned(line, anchor - timedelta(minutes=5, hours=3 * (7 - i)),
                                            Trigger.SCHEDULE, before_fault=i < 2) for i in range(8)]
        else:
            closed = anchor - timedelta(days=IDLE_DAYS, hours=2)  # the office's last day of traffic
            before = [Planned(line, closed - timedelta(hours=6 * (3 - i)), Trigger.SCHEDULE, before_fault=True)
                      for i in range(4)]
            watchdog = [Planned(line, closed + timedelta(days=d), Trigger.IDLE_WATCHDOG, before_fault=True,
                                info=(("idle_s", float(d * 86400)),)) for d in range(1, IDLE_DAYS)]
            back = anchor - timedelta(hours=2)
            resumed = Planned(line, back, Trigger.RESUME_AFTER_IDLE,
                              info=(("idle_s", round((back - closed).total_seconds(), 1)),))
            after = [Planned(line, anchor - timedelta(hours=1), Trigger.SCHEDULE),
                     Planned(line, anchor - timedelta(minutes=5), Trigger.SCHEDULE)]
            plans[line.agent_id] = [*before, *watchdog, resumed, *after]
    return plans


def result(p: Planned, seq: int, only: list[str] | None = None, info: dict[str, Any] | None = None) -> ResultEnvelope:
    """The envelope a gateway in this line's state would publish (deterministic in agent, seq and time)."""
    line = p.line
    rng = random.Random(f"{line.agent_id}:{seq}:{p.at.isoformat()}")
    kinds = ["link", "ping"] if p.trigger is Trigger.IDLE_WATCHDOG else ["link", "ping", "dns"]
    if line.down_mbps is not None and p.trigger is not Trigger.IDLE_WATCHDOG:
        kinds.append("throughput")
    if only:
        kinds = [k for k in kinds if k in only]
    made: list[tuple[CheckResult, list[Finding]]] = []
    for kind in kinds:
        if kind == "link":
            made.append(measure.link_check(1000 if p.before_fault else line.port_mbps, line.plan_down))
        elif kind == "ping":
            made.append(measure.ping_check(rng, line.rtt_ms))
        elif kind == "dns":
            made.append(measure.dns_check(rng, line.dns_ok or p.before_fault))
        else:
            assert line.down_mbps is not None and line.up_mbps is not None
            made.append(measure.throughput_check(rng, line.down_mbps, line.up_mbps, line.plan_down, line.plan_up))
    checks = [c for c, _ in made]
    findings = [f for _, found in made for f in found]
    # agent/runner.py verdict_of: findings or a failed/degraded check are problems.
    problems = findings or any(c.status in (Status.FAILED, Status.DEGRADED) for c in checks)
    took = sum(c.duration_s for c in checks)
    return ResultEnvelope(
        result_id=_result_id(p.at, rng), agent_id=line.agent_id, seq=seq, line_id=line.line_id, site_id=line.site_id,
        trigger=p.trigger, trigger_info={**dict(p.info), **(info or {})}, started_at=p.at,
        ended_at=p.at + timedelta(seconds=took), clock=ClockState(synced=True, source="simulated"),
        agent_version=AGENT_VERSION, checks=checks, findings=findings,
        verdict=Verdict.PROBLEMS if problems else Verdict.HEALTHY)


def _result_id(at: datetime, rng: random.Random) -> str:
    """A UUIDv7 (as linecheck.wire.new_result_id) whose random bits come from `rng`: reproducible."""
    value = (int(at.timestamp() * 1000) & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
    value |= 0b10 << 62 | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- what the carrier knows: registry, promise ledger, billing --------------------------------------
def registry_yaml(report_interval_s: int) -> str:
    sites = "".join(f"  - {{site_id: {x.site_id}, tenant_id: {TENANT}, name: \"{x.site_name}\", "
                    f"district: \"{x.place}\"}}\n" for x in LINES)
    lines = "".join(f"  - {{line_id: {x.line_id}, tenant_id: {TENANT}, site_id: {x.site_id}, "
                    f"name: \"{x.place} line (simulated)\", segment: sme, plan_down_mbps: {x.plan_down}, "
                    f"plan_up_mbps: {x.plan_up}, account_since: 2016-03-01}}\n" for x in LINES)
    agents = "".join(f"  - {{agent_id: {x.agent_id}, line_id: {x.line_id}, report_interval_s: {report_interval_s}}}\n"
                     for x in LINES)
    return ("# written by linecheck-stack: the demo's SIMULATED offices (linecheck/demo/fleet.py)\n"
            "tenants:\n  - {tenant_id: demo-carrier, name: Demo carrier, kind: carrier}\n"
            f"  - {{tenant_id: {TENANT}, name: Demo customers (simulated), kind: enterprise, "
            "parent_id: demo-carrier}\n"
            f"sites:\n{sites}lines:\n{lines}agents:\n{agents}")


def _month(d: date, back: int) -> str:
    n = d.year * 12 + d.month - 1 - back
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def promises_yaml(anchor: datetime) -> str:
    today = anchor.astimezone(ZONE).date()
    upgraded = today - timedelta(days=60)  # past its 30-day grace window: a shortfall now counts
    speed = "".join(f"  - {{id: sim-upgrade-{x.key}, line_id: {x.line_id}, kind: speed, effective: {upgraded}, "
                    "grace_days: 30, down_mbps: 500, up_mbps: 300, note: \"demo (simulated): free upgrade to 500M\"}\n"
                    for x in LINES if x.key in ("healthy", "slow"))
    return ("# written by linecheck-stack: promises of the demo's SIMULATED offices\npromises:\n" + speed +
            f"  - {{id: sim-tariff-dns, line_id: sim-jingan-1, kind: tariff_reduction, "
            f"effective: {today - timedelta(days=400)}, percent: 10, reference_period: {_month(today, 13)}, "
            f"period: {_month(today, 1)}, note: \"demo (simulated): SME tariff down 10%\"}}\n")


def billing_csv(anchor: datetime) -> str:
    today = anchor.astimezone(ZONE).date()
    return ("line_id,period,product,amount,waived,currency\n"
            f"sim-jingan-1,{_month(today, 13)},broadband,1200.00,0,CNY\n"
            f"sim-jingan-1,{_month(today, 1)},broadband,1020.00,0,CNY\n")
