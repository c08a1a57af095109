"""A speed the line cannot have carried says nothing about the line (issue 23 item 8).

A test against a server on the same host measured 24,840 Mbit/s on a 500M plan and the line was called
healthy. Such a figure — above three times the plan, or above the WAN port's negotiated speed — is
`implausible` in the one speed judgement (linecheck/speed.py): the collector's speed rule takes it as
neither a breach nor healthy evidence, and the promise ledger excludes it with the reason.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from collector.promises.criterion import SpeedCriterion
from collector.promises.model import SpeedPromise
from collector.promises.speed import Exclusion, judge_tests, sample_from_metrics
from collector.rules.engine import Plan, RuleEngine, RulesConfig
from linecheck import speed
from linecheck.wire import CheckResult, Status
from tests.factory import envelope, link_check

LOOPBACK = {"down_mbps": 24840.0, "up_mbps": 19950.0, "capacity_down_mbps": 24840.0,
            "capacity_up_mbps": 19950.0, "cross_traffic_high_flag": 0}


@pytest.mark.parametrize("measured, plan, port, implausible, pct", [
    (24840.0, 500.0, None, True, 4968.0),
    (480.0, 500.0, None, False, 96.0),
    (600.0, 500.0, None, False, 120.0),  # carriers provision above the plan
    (1600.0, 500.0, None, True, 320.0),
    (1200.0, 1000.0, 1000.0, True, 120.0),  # above the port's negotiated speed: cannot have crossed it
    (24840.0, None, None, False, None),  # no plan, no port: nothing to compare with
])
def test_implausible_and_share_of_plan(measured: float, plan: float | None, port: float | None, implausible: bool,
                                       pct: float | None) -> None:
    assert speed.implausible(measured, plan, port) is implausible
    j = speed.judge_speed({"capacity_down_mbps": measured}, "down", plan)
    assert j.pct_of_plan == pytest.approx(pct) if pct is not None else j.pct_of_plan is None
    if port is None:
        assert j.implausible is implausible
        assert j.slow is (None if implausible or plan is None else False)


def test_the_speed_rule_takes_it_as_neither_breach_nor_health() -> None:
    rules = RuleEngine(RulesConfig())
    fast = CheckResult(kind="throughput", status=Status.OK, duration_s=10, metrics=LOOPBACK)
    assert rules.observe("speed_below_plan", envelope("gw-1", "l-1", [link_check(), fast]), Plan(500.0, 300.0)) is None
    real = CheckResult(kind="throughput", status=Status.OK, duration_s=10,
                       metrics={**LOOPBACK, "down_mbps": 480.0, "capacity_down_mbps": 480.0,
                                "up_mbps": 290.0, "capacity_up_mbps": 290.0})
    seen = rules.observe("speed_below_plan", envelope("gw-1", "l-1", [link_check(), real]), Plan(500.0, 300.0))
    assert seen is not None and seen.breach is False  # the control: a plausible fast test is healthy evidence


def test_the_promise_ledger_excludes_it_with_the_reason() -> None:
    at = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    promise = SpeedPromise(id="p", line_id="l-1", effective=date(2024, 1, 1), down_mbps=500, up_mbps=300)
    samples = [sample_from_metrics(f"r{i}", at, LOOPBACK) for i in range(3)]
    samples.append(sample_from_metrics("ok", at, {**LOOPBACK, "capacity_down_mbps": 480.0}))
    judged = judge_tests("down", promise, samples, SpeedCriterion(), None)
    assert [j.excluded for j in judged] == [Exclusion.IMPLAUSIBLE] * 3 + [None]
    assert judged[0].detail == "24840 Mbit/s is more than the line can carry (promised 500): the test did not " \
                               "cross this line"
    assert judged[3].passed is True
