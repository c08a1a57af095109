"""The one speed judgement both sides use: is a throughput result far below the line's plan?

The agent's throughput check turns a "slow" judgement into a `throughput_below_plan` finding
(agent/checks/throughput.py); the collector's `speed_below_plan` rule compares the same figure
with the same limit (collector/rules/engine.py). A result whose cross-traffic was too high to trust
(`cross_traffic_high_flag` = 1: the office's own traffic shared the line during the test) says
nothing about the line's speed on either side: no finding, no breach, and no healthy evidence
either (it neither opens nor resolves a ticket). The same holds per direction for a test the line
interrupted (`interrupted_*_flag` = 1: the link dropped or the streams stalled) and for one a cap
stopped before its rate settled (`stable_*_flag` = 0): neither is a slow line (issue 21); nor is a test
the test server served while it was itself saturated (`server_limited_flag` = 1: its link or CPU was
full, linecheck/throughput/saturation.py; issue 22 — an overloaded server is never a slow line). The
promise ledger excludes such tests with the reason `untrusted_reason` gives. A figure the line cannot
have carried — above IMPLAUSIBLE_TIMES_PLAN times the plan, or above the WAN port's negotiated speed —
is `implausible`: the test did not cross the line (a test server on the gateway or in the office; a
loopback test measured 24,840 Mbit/s on a 500M plan and the report called the line healthy, issue 23).
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["down", "up"]

SLOW_PCT_OF_PLAN = 50.0  # below this share of the plan a line is "far below plan" (both sides' default)
# Carriers provision above the plan (10-20 % is common, a 100M plan on a 1G port may burst further), but
# not threefold on the line itself: beyond that the test went somewhere other than through the line.
IMPLAUSIBLE_TIMES_PLAN = 3.0
PORT_SLACK = 1.05  # TCP goodput cannot exceed the negotiated port rate; 5 % for counter timing
CROSS_TRAFFIC_FLAG = "cross_traffic_high_flag"
SERVER_LIMITED_FLAG = "server_limited_flag"

# Metric names of the throughput check (linecheck/metrics.csv), best first: the capacity estimate
# adds the office's other traffic on the WAN port during the test, so it is what the line can carry.
FIGURES: dict[Direction, tuple[str, ...]] = {
    "down": ("capacity_down_mbps", "down_mbps"),
    "up": ("capacity_up_mbps", "up_mbps"),
}


def figure(metrics: Mapping[str, object], names: Sequence[str]) -> tuple[float | None, str]:
    """The first measured (non-null) metric of `names`, and its name; (None, names[0]) when none was."""
    for name in names:
        value = metrics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), name
    return None, names[0]


def trusted(metrics: Mapping[str, object]) -> bool:
    """False when the test itself says cross-traffic was too high to trust its figures."""
    return not metrics.get(CROSS_TRAFFIC_FLAG)


def implausible(measured_mbps: float | None, plan_mbps: float | None, wan_speed_mbps: float | None = None) -> bool:
    """True when the line cannot have carried `measured_mbps`: above the WAN port's negotiated speed, or more
    than IMPLAUSIBLE_TIMES_PLAN times the plan. False when there is nothing to compare with."""
    if measured_mbps is None:
        return False
    if wan_speed_mbps and wan_speed_mbps > 0 and measured_mbps > wan_speed_mbps * PORT_SLACK:
        return True
    return bool(plan_mbps and plan_mbps > 0 and measured_mbps > plan_mbps * IMPLAUSIBLE_TIMES_PLAN)


def untrusted_reason(metrics: Mapping[str, object], direction: Direction,
                     plan_mbps: float | None = None) -> str | None:
    """Why this direction of a test says nothing about the line's speed, or None when it can be judged:
    `interrupted` (the line dropped or the streams stalled mid-test), `unsettled` (a cap stopped it
    before the rate was stable; a backend without the criterion reports null, which is no objection),
    `server_limited` (the test server was saturated while it served the test: both directions),
    `cross_traffic_high`, `implausible` (given the plan: a figure the line cannot have carried)."""
    if metrics.get(f"interrupted_{direction}_flag") == 1:
        return "interrupted"
    if plan_mbps is not None and implausible(figure(metrics, FIGURES[direction])[0], plan_mbps):
        return "implausible"
    if metrics.get(SERVER_LIMITED_FLAG) == 1:
        return "server_limited"
    if metrics.get(f"stable_{direction}_flag") == 0:
        return "unsettled"
    if not trusted(metrics):
        return "cross_traffic_high"
    return None


@dataclass(frozen=True)
class SpeedJudgement:
    direction: Direction
    metric: str  # the metric judged (or the first looked for, when none was measured)
    measured_mbps: float | None
    plan_mbps: float | None
    pct: float
    trusted: bool

    @property
    def limit_mbps(self) -> float | None:
        return None if not self.plan_mbps or self.plan_mbps <= 0 else self.plan_mbps * self.pct / 100

    @property
    def pct_of_plan(self) -> float | None:
        """The figure as a share of the plan (96.0 for 480 on 500), or None without a figure or a plan."""
        if self.measured_mbps is None or not self.plan_mbps or self.plan_mbps <= 0:
            return None
        return self.measured_mbps / self.plan_mbps * 100

    @property
    def implausible(self) -> bool:
        return implausible(self.measured_mbps, self.plan_mbps)

    @property
    def slow(self) -> bool | None:
        """True: far below plan; False: not; None: cannot tell (no figure, no plan, untrusted, or implausible)."""
        limit = self.limit_mbps
        if self.measured_mbps is None or limit is None or not self.trusted or self.implausible:
            return None
        return self.measured_mbps < limit


def judge_speed(metrics: Mapping[str, object], direction: Direction, plan_mbps: float | None,
                pct: float = SLOW_PCT_OF_PLAN, figures: Sequence[str] | None = None) -> SpeedJudgement:
    """One direction of one throughput result against the plan (`figures`: the metrics to judge,
    best first; default FIGURES[direction])."""
    value, name = figure(metrics, figures or FIGURES[direction])
    return SpeedJudgement(direction, name, value, plan_mbps, pct, untrusted_reason(metrics, direction) is None)
