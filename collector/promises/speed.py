"""Speed verdicts: did the line get the promised rate? Down and up judged separately, on valid tests only.

A test is valid for a direction when it measured that direction and nothing local limited it.
Excluded, each with its reason and counted in the evidence:
  - not_measured: the test failed or gave no figure ("unavailable" is not "slow");
  - wan_port_below_promise: the gateway's WAN port negotiated below the promised rate;
  - gateway_cpu_saturated: the gateway's CPU was at or above the declared limit during the test;
  - cross_traffic_high: the office's own traffic was too high to trust the figure;
  - interrupted: the line dropped or the streams stalled during the test (the agent says so);
  - unsettled: a byte or time cap stopped the test before its rate was stable (a lower bound);
  - server_limited: the test server was saturated while it served the test (it says so): the figure
    measured the server, not the line.
The first two local-equipment reasons can make the verdict `limited_by_local_equipment`.
A valid test passes when its figure (the line capacity estimate where the agent gives one, else
the test's own rate) reaches `rate_fraction` of the rate promised at the time of the test.
stats.py decides whether the pass share is known well enough (Wilson bound at the declared
confidence). Everything here is pure: no database, no clock.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal, Protocol

from collector.promises.criterion import SpeedCriterion
from collector.promises.model import Outcome, PromiseBase, SpeedPromise, worst
from collector.promises.stats import Side, decisive_sample_size, side, wilson_bounds
from collector.promises.verdict import PromiseVerdict, jsonable, says, summary_of
from linecheck import speed
from linecheck.i18n.phrases import Phrase

Direction = Literal["down", "up"]
DIRECTIONS: tuple[Direction, ...] = ("down", "up")

# Metric names from the agent's throughput check, best first (the capacity estimate, else the test's
# own rate), and whether its cross-traffic was too high to trust: the same reading as the agent's
# check and the speed rule (linecheck/speed.py).
FIGURES: dict[Direction, tuple[str, ...]] = speed.FIGURES


class Exclusion(StrEnum):
    NOT_MEASURED = "not_measured"
    WAN_PORT = "wan_port_below_promise"
    CPU = "gateway_cpu_saturated"
    CROSS_TRAFFIC = "cross_traffic_high"
    INTERRUPTED = "interrupted"
    UNSETTLED = "unsettled"
    SERVER_LIMITED = "server_limited"
    IMPLAUSIBLE = "implausible"

    @property
    def local_equipment(self) -> bool:
        return self in (Exclusion.WAN_PORT, Exclusion.CPU)


@dataclass(frozen=True)
class SpeedSample:
    """One throughput test as the verdict needs it (built from stored metrics by `sample_from_metrics`)."""

    result_id: str
    at: datetime  # start of the test, timezone-aware
    down_mbps: float | None = None
    up_mbps: float | None = None
    down_source: str | None = None  # which metric gave the figure
    up_source: str | None = None
    wan_speed_mbps: float | None = None  # negotiated WAN port speed (link check)
    cpu_max_pct: float | None = None  # peak gateway CPU during the test
    cross_traffic_high: bool = False
    down_untrusted: str | None = None  # linecheck.speed.untrusted_reason per direction
    up_untrusted: str | None = None
    status: str = "ok"  # the throughput check's status
    reason: str | None = None  # the check's reason when it could not measure
    agent_id: str = ""  # with result_id: the stored result this came from (ticket evidence)

    def figure(self, direction: Direction) -> tuple[float | None, str | None]:
        if direction == "down":
            return self.down_mbps, self.down_source
        return self.up_mbps, self.up_source


def sample_from_metrics(result_id: str, at: datetime, throughput: Mapping[str, float | None],
                        link: Mapping[str, float | None] | None = None, status: str = "ok",
                        reason: str | None = None, agent_id: str = "") -> SpeedSample:
    """A sample from one result's throughput (and link) check metrics; capacity first, else the test rate."""
    link = link or {}
    figures: dict[str, tuple[float | None, str | None]] = {}
    for direction, names in FIGURES.items():
        value, name = speed.figure(throughput, names)
        figures[direction] = (value, name if value is not None else None)
    wan = link.get("wan_speed_mbps", throughput.get("wan_speed_mbps"))
    cpu = throughput.get("cpu_max_pct")
    return SpeedSample(
        result_id=result_id, at=at, down_mbps=figures["down"][0], down_source=figures["down"][1],
        up_mbps=figures["up"][0], up_source=figures["up"][1],
        wan_speed_mbps=None if wan is None else float(wan), cpu_max_pct=None if cpu is None else float(cpu),
        cross_traffic_high=not speed.trusted(throughput), status=status, reason=reason, agent_id=agent_id,
        down_untrusted=speed.untrusted_reason(throughput, "down"),
        up_untrusted=speed.untrusted_reason(throughput, "up"))


@dataclass(frozen=True)
class TestJudgement:
    """One test in one direction: its figure against the promise in force then, or why it was excluded."""

    result_id: str
    at: datetime
    direction: Direction
    peak: bool
    promised_mbps: float
    threshold_mbps: float
    value_mbps: float | None
    source: str | None
    excluded: Exclusion | None
    detail: str | None  # why excluded, in words
    passed: bool | None  # None when excluded
    wan_speed_mbps: float | None = None
    cpu_max_pct: float | None = None
    agent_id: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.value_mbps is None else self.value_mbps / self.promised_mbps


@dataclass(frozen=True)
class ShareEstimate:
    """Pass share of a set of valid tests, its confidence bounds, and what it decides."""

    label: str  # all / peak / off_peak
    valid: int
    passed: int
    share: float | None
    lower: float | None
    upper: float | None
    median_ratio: float | None  # median of measured / promised
    outcome: Outcome  # delivered / not_delivered / inconclusive (local limits are judged per direction)
    tests_needed: int | None  # more valid tests that would settle it at the current share; None: settled,
    #                           or the share sits exactly on the threshold and more tests cannot settle it


@dataclass(frozen=True)
class DirectionVerdict:
    direction: Direction
    promised_mbps: float  # in force at the evaluation time
    threshold_mbps: float
    outcome: Outcome
    reason: str  # English; `said` is the same as a phrase (linecheck/i18n [verdicts])
    decided_on: str  # all / peak
    all: ShareEstimate
    peak: ShareEstimate
    off_peak: ShareEstimate
    excluded: dict[str, int]
    local_excluded: int
    fixes: list[str]
    tests: list[TestJudgement] = field(repr=False)
    said: Phrase | None = None
    fixes_said: list[Phrase] = field(default_factory=list)


def _exclusion(s: SpeedSample, value: float | None, promised: float, direction: Direction,
               crit: SpeedCriterion) -> tuple[Exclusion | None, str | None]:
    why = s.down_untrusted if direction == "down" else s.up_untrusted
    if why == Exclusion.INTERRUPTED:
        return Exclusion.INTERRUPTED, s.reason or f"the line interrupted the {direction}load test"
    if value is None:
        return Exclusion.NOT_MEASURED, s.reason or f"the test gave no {direction}load figure ({s.status})"
    if speed.implausible(value, promised, s.wan_speed_mbps):
        return Exclusion.IMPLAUSIBLE, (f"{value:g} Mbit/s is more than the line can carry (promised {promised:g}"
                                       + (f", WAN port {s.wan_speed_mbps:g}" if s.wan_speed_mbps else "")
                                       + "): the test did not cross this line")
    # Before the local reasons: a saturated server bounds the figure whatever the gateway's port or CPU did.
    if why == Exclusion.SERVER_LIMITED:
        return Exclusion.SERVER_LIMITED, (f"the test server was saturated during the test: {value:g} Mbit/s "
                                          "measured the server, not the line")
    if s.wan_speed_mbps is not None and s.wan_speed_mbps < promised:
        return Exclusion.WAN_PORT, (f"WAN port negotiated {s.wan_speed_mbps:g} Mbit/s, "
                                    f"below the promised {promised:g}")
    if crit.cpu_saturated_pct is not None and s.cpu_max_pct is not None and s.cpu_max_pct >= crit.cpu_saturated_pct:
        return Exclusion.CPU, f"gateway CPU at {s.cpu_max_pct:g}% during the test"
    if why == Exclusion.UNSETTLED:
        return Exclusion.UNSETTLED, (f"the {direction}load rate had not settled when the test's cap stopped it "
                                     f"({value:g} Mbit/s is a lower bound)")
    if s.cross_traffic_high:
        return Exclusion.CROSS_TRAFFIC, "office traffic during the test was too high to trust the figure"
    return None, None


def judge_tests(direction: Direction, promise: SpeedPromise, samples: Sequence[SpeedSample],
                crit: SpeedCriterion, account_since: date | None) -> list[TestJudgement]:
    zone = crit.zone
    out: list[TestJudgement] = []
    for s in sorted(samples, key=lambda x: x.at):
        local = s.at.astimezone(zone)
        down, up = promise.rates_at(local.date(), account_since)
        promised = down if direction == "down" else up
        if promised is None:
            continue
        threshold = promised * crit.rate_fraction
        value, source = s.figure(direction)
        excluded, detail = _exclusion(s, value, promised, direction, crit)
        out.append(TestJudgement(
            result_id=s.result_id, at=s.at, direction=direction, peak=crit.peak_hours.contains(local),
            promised_mbps=promised, threshold_mbps=threshold, value_mbps=value, source=source,
            excluded=excluded, detail=detail,
            passed=None if excluded or value is None else value >= threshold,
            wan_speed_mbps=s.wan_speed_mbps, cpu_max_pct=s.cpu_max_pct, agent_id=s.agent_id))
    return out


class Judged(Protocol):
    """What an estimate needs of a test: speed tests and WiFi room tests both provide it."""

    @property
    def excluded(self) -> Exclusion | None: ...
    @property
    def passed(self) -> bool | None: ...
    @property
    def ratio(self) -> float | None: ...


def estimate(label: str, tests: Sequence[Judged], crit: SpeedCriterion) -> ShareEstimate:
    valid = [t for t in tests if t.excluded is None]
    n = len(valid)
    s = crit.required_share
    if n == 0:
        # Nothing to estimate from: the count that would show delivery if every test passed.
        return ShareEstimate(label, 0, 0, None, None, None, None, Outcome.INCONCLUSIVE, crit.fewest_deciding_tests)
    k = sum(1 for t in valid if t.passed)
    share = k / n
    bounds = wilson_bounds(k, n, crit.confidence)
    assert bounds is not None
    ratios = [t.ratio for t in valid if t.ratio is not None]
    where = side(k, n, s, crit.confidence)
    if where is not Side.STRADDLES and n >= crit.min_valid_tests:
        outcome = Outcome.DELIVERED if where is Side.ABOVE else Outcome.NOT_DELIVERED
        needed: int | None = None
    else:
        outcome = Outcome.INCONCLUSIVE
        total = decisive_sample_size(share, s, crit.confidence)
        needed = None if total is None else max(crit.min_valid_tests, total) - n
    return ShareEstimate(label, n, k, share, bounds[0], bounds[1],
                         statistics.median(ratios) if ratios else None, outcome, needed)


def _fixes(tests: Sequence[TestJudgement], crit: SpeedCriterion, promised: float) -> list[Phrase]:
    """What the customer can fix (linecheck/i18n [verdicts] fix_*): the port or the gateway's CPU."""
    out = []
    ports = [t for t in tests if t.excluded is Exclusion.WAN_PORT]
    if ports:
        slowest = min(t.wan_speed_mbps for t in ports if t.wan_speed_mbps is not None)
        out.append(says("fix_wan_port", port_mbps=slowest, count=len(ports), promised_mbps=promised))
    cpus = [t for t in tests if t.excluded is Exclusion.CPU]
    if cpus:
        hottest = max(t.cpu_max_pct for t in cpus if t.cpu_max_pct is not None)
        out.append(says("fix_cpu", cpu_pct=hottest, count=len(cpus), promised_mbps=promised))
    return out


def _reason(direction: Direction, outcome: Outcome, est: ShareEstimate, crit: SpeedCriterion, promised: float,
            excluded: Counter[str], local: int) -> Phrase:
    """One direction's reason as a phrase (linecheck/i18n [verdicts] speed_*): what the tests show, then why
    that decides or what would (its English is DirectionVerdict.reason)."""
    args = {"way": direction, "passed": est.passed, "valid": est.valid, "threshold": promised * crit.rate_fraction,
            "rate": crit.rate_fraction, "promised": promised, "peak_hours": crit.peak_hours.label(),
            "count": sum(excluded.values()),
            "excluded": [says("speed_excluded_n", count=n, why=r) for r, n in sorted(excluded.items())]}
    if est.valid == 0:
        return says("speed_no_valid_excl" if excluded else "speed_no_valid", **args, needed=est.tests_needed)
    base = says("speed_base" + ("_peak" if est.label != "all" else "") + ("_excl" if excluded else ""), **args)
    shares = {"confidence": crit.confidence, "required": crit.required_share, "lower": est.lower,
              "upper": est.upper, "share": est.share, "needed": est.tests_needed, "local": local}
    fewest = crit.fewest_deciding_tests
    if outcome is Outcome.DELIVERED:
        then = says("speed_delivered", **shares)
    elif outcome is Outcome.NOT_DELIVERED:
        then = says("speed_not_delivered", **shares)
    elif outcome is Outcome.LIMITED:
        then = says("speed_limited", **shares)
    elif est.tests_needed is None:
        then = says("speed_on_threshold", **shares)
    elif est.valid < fewest and est.tests_needed == fewest - est.valid:
        then = says("speed_need_minimum", **shares, fewest=fewest)
    else:
        then = says("speed_need_more", **shares)
    return says("speed_direction", base=base, then=then)


def judge_direction(direction: Direction, promise: SpeedPromise, samples: Sequence[SpeedSample],
                    crit: SpeedCriterion, account_since: date | None, now: datetime) -> DirectionVerdict | None:
    down, up = promise.rates_at(now.astimezone(crit.zone).date(), account_since)
    promised = down if direction == "down" else up
    if promised is None:
        return None  # nothing promised in this direction
    tests = judge_tests(direction, promise, samples, crit, account_since)
    est_all = estimate("all", tests, crit)
    est_peak = estimate("peak", [t for t in tests if t.peak], crit)
    est_off = estimate("off_peak", [t for t in tests if not t.peak], crit)
    deciding = est_all if crit.decide_on == "all" else est_peak
    excluded = Counter(t.excluded.value for t in tests if t.excluded)
    local = sum(1 for t in tests if t.excluded and t.excluded.local_equipment)
    outcome = deciding.outcome
    if outcome is Outcome.INCONCLUSIVE and local and local / (local + est_all.valid) >= crit.local_limit_share:
        outcome = Outcome.LIMITED
    fixes = _fixes(tests, crit, promised) if outcome is Outcome.LIMITED else []
    said = _reason(direction, outcome, deciding, crit, promised, excluded, local)
    return DirectionVerdict(
        direction=direction, promised_mbps=promised, threshold_mbps=promised * crit.rate_fraction,
        outcome=outcome, reason=summary_of([said]), decided_on=crit.decide_on, all=est_all, peak=est_peak,
        off_peak=est_off, excluded=dict(excluded), local_excluded=local, fixes=[summary_of([f]) for f in fixes],
        tests=tests, said=said, fixes_said=fixes)


@dataclass(frozen=True)
class SpeedVerdict:
    promise: SpeedPromise
    outcome: Outcome
    summary: str
    directions: list[DirectionVerdict]
    said: list[Phrase]  # the summary as phrases
    window_start: datetime
    window_end: datetime
    judgeable_from: datetime
    in_grace: bool
    criterion: SpeedCriterion

    def direction(self, which: Direction) -> DirectionVerdict:
        return next(d for d in self.directions if d.direction == which)

    @property
    def down(self) -> DirectionVerdict:
        return self.direction("down")

    @property
    def up(self) -> DirectionVerdict:
        return self.direction("up")

    def as_verdict(self) -> PromiseVerdict:
        detail = {
            "criterion": self.criterion.model_dump(mode="json"),
            "window": {"start": self.window_start.isoformat(), "end": self.window_end.isoformat()},
            "promise": self.promise.model_dump(mode="json"),
            "directions": {d.direction: jsonable(d) for d in self.directions},
        }
        ratio = self.directions[0].all.median_ratio if self.directions else None
        return PromiseVerdict(promise_id=self.promise.id, line_id=self.promise.line_id, kind="speed",
                              outcome=self.outcome, summary=self.summary, evaluated_at=self.window_end,
                              judgeable_from=self.judgeable_from, in_grace=self.in_grace, detail=detail,
                              fixes=[f for d in self.directions for f in d.fixes], delivered_ratio=ratio,
                              said=self.said, fixes_said=[f for d in self.directions for f in d.fixes_said])


def window_for(promise: PromiseBase, crit: SpeedCriterion, now: datetime, grace_days: int
               ) -> tuple[datetime, datetime, bool]:
    """(window start, judgeable from, in grace). In the grace window the verdict is provisional and counts
    tests since the promise took effect; afterwards only tests after the grace window count, because the
    carrier was allowed to fix the line until then."""
    judgeable = promise.judgeable_from(crit.zone, grace_days)
    in_grace = now < judgeable
    since = promise.effective_at(crit.zone) if in_grace else judgeable
    return max(since, now - timedelta(days=crit.window_days)), judgeable, in_grace


def evaluate_speed(promise: SpeedPromise, samples: Sequence[SpeedSample], crit: SpeedCriterion, now: datetime,
                   grace_days: int = 30, account_since: date | None = None) -> SpeedVerdict:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    start, judgeable, in_grace = window_for(promise, crit, now, grace_days)
    inside = [s for s in samples if start <= s.at <= now]
    directions = [d for which in DIRECTIONS
                  if (d := judge_direction(which, promise, inside, crit, account_since, now)) is not None]
    outcome = worst([d.outcome for d in directions])
    said = [says(f"speed_head_{outcome.value}")]
    if in_grace:
        said.append(says("provisional", until=judgeable.date().isoformat()))
    said += [d.said for d in directions if d.said is not None]
    return SpeedVerdict(promise=promise, outcome=outcome, summary=summary_of(said), directions=directions,
                        window_start=start, window_end=now, judgeable_from=judgeable, in_grace=in_grace,
                        criterion=crit, said=said)
