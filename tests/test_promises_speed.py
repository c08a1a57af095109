"""Table tests of the speed verdict on constructed test histories (no database, no network)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from collector.promises.criterion import PeakHours, SpeedCriterion
from collector.promises.model import Outcome, SpeedPromise, SpeedStep
from collector.promises.speed import Exclusion, SpeedSample, evaluate_speed, sample_from_metrics

NOW = datetime(2022, 9, 30, 12, 0, tzinfo=UTC)
CRIT = SpeedCriterion()  # 80/80, 95% one-sided, min 10 valid tests, peak 19-23 Asia/Shanghai
PROMISE = SpeedPromise(id="p1", line_id="l1", effective=date(2022, 6, 1), down_mbps=500, up_mbps=300)

# 14:00 Shanghai is 06:00 UTC (off-peak); 20:00 Shanghai is 12:00 UTC (peak).
OFF_PEAK_UTC_HOUR, PEAK_UTC_HOUR = 6, 12


def history(values: list[tuple[float | None, float | None]], hour: int = OFF_PEAK_UTC_HOUR,
            **kw: object) -> list[SpeedSample]:
    """One test a day going back from NOW, newest first, at `hour` UTC."""
    out = []
    for i, (down, up) in enumerate(values):
        at = (NOW - timedelta(days=i + 1)).replace(hour=hour)
        out.append(SpeedSample(result_id=f"r{hour}-{i}", at=at, down_mbps=down, up_mbps=up,
                               down_source="capacity_down_mbps", up_source="capacity_up_mbps", **kw))  # type: ignore[arg-type]
    return out


def judge(samples: list[SpeedSample], crit: SpeedCriterion = CRIT, promise: SpeedPromise = PROMISE,
          grace: int = 30, account_since: date | None = None):  # type: ignore[no-untyped-def]
    return evaluate_speed(promise, samples, crit, NOW, grace_days=grace, account_since=account_since)


def test_all_pass_is_delivered() -> None:
    v = judge(history([(478.0, 287.0)] * 20))
    assert v.outcome is Outcome.DELIVERED
    assert v.down.outcome is Outcome.DELIVERED and v.up.outcome is Outcome.DELIVERED
    assert v.down.all.valid == 20 and v.down.all.passed == 20
    assert v.down.all.lower is not None and v.down.all.lower >= 0.8
    assert v.down.all.median_ratio == pytest.approx(478 / 500)
    assert "20 of 20 valid tests reached 400 Mbit/s" in v.summary
    assert v.as_verdict().actionable is False


def test_all_pass_needs_enough_tests_for_the_confidence() -> None:
    # Every test passes, but 10 tests cannot show a share >= 80% at 95%: 11 can (n >= z²·0.16/0.04).
    ten = judge(history([(478.0, 287.0)] * 10))
    assert ten.down.outcome is Outcome.INCONCLUSIVE and ten.down.all.tests_needed == 1
    assert judge(history([(478.0, 287.0)] * 11)).down.outcome is Outcome.DELIVERED


def test_79_percent_of_tests_passing_is_not_delivered_evidence_either_way() -> None:
    # 79 of 100 pass: below the required 80%, but 100 tests cannot tell 79% from 80%. The honest
    # verdict is inconclusive, saying how many tests at this share would settle it.
    values = [(478.0, 287.0)] * 79 + [(300.0, 287.0)] * 21
    early = SpeedPromise(id="p0", line_id="l1", effective=date(2022, 1, 1), down_mbps=500, up_mbps=300)
    v = judge(history(values), SpeedCriterion(window_days=120), promise=early)
    d = v.down
    assert d.all.valid == 100 and d.all.passed == 79
    assert d.outcome is Outcome.INCONCLUSIVE
    assert d.all.lower is not None and d.all.upper is not None and d.all.lower < 0.8 < d.all.upper
    # z²·s(1-s)/(p̂-s)² = 1.6449²·0.16/0.0001 ≈ 4329 tests in all.
    assert d.all.tests_needed == 4329 - 100
    assert "more valid test(s) at this pass share would settle it" in d.reason
    assert v.outcome is Outcome.INCONCLUSIVE


def test_much_below_the_share_is_not_delivered() -> None:
    values = [(478.0, 287.0)] * 12 + [(300.0, 287.0)] * 18  # 40% pass
    d = judge(history(values)).down
    assert d.outcome is Outcome.NOT_DELIVERED
    assert d.all.upper is not None and d.all.upper < 0.8


def test_every_test_at_79_percent_of_the_rate_is_not_delivered() -> None:
    # 395 Mbit/s is 79% of 500: below the 80% rate threshold every time.
    v = judge(history([(395.0, 287.0)] * 12))
    assert v.down.outcome is Outcome.NOT_DELIVERED
    assert v.down.all.passed == 0
    assert v.up.outcome is Outcome.DELIVERED
    assert v.outcome is Outcome.NOT_DELIVERED
    assert v.as_verdict().actionable  # past the grace window


def test_too_few_tests_is_inconclusive_with_tests_needed() -> None:
    v = judge(history([(478.0, 287.0)] * 5))
    assert v.down.outcome is Outcome.INCONCLUSIVE
    assert v.down.all.tests_needed == 6  # 11 would show it at 95%; 5 exist
    v0 = judge([])
    assert v0.down.outcome is Outcome.INCONCLUSIVE and v0.down.all.tests_needed == 11
    assert "no valid test yet" in v0.down.reason
    # Even failing tests need the declared minimum before a breach is called.
    few_bad = judge(history([(90.0, 45.0)] * 4))
    assert few_bad.down.outcome is Outcome.INCONCLUSIVE and few_bad.down.all.tests_needed == 6


def test_local_port_at_100m_is_limited_by_local_equipment() -> None:
    v = judge(history([(94.0, 94.0)] * 15, wan_speed_mbps=100.0))
    assert v.outcome is Outcome.LIMITED
    for d in (v.down, v.up):
        assert d.outcome is Outcome.LIMITED
        assert d.excluded == {"wan_port_below_promise": 15} and d.all.valid == 0
    assert v.down.fixes and "negotiated only 100 Mbit/s in 15 test(s)" in v.down.fixes[0]
    assert "cable" in v.down.fixes[0]
    verdict = v.as_verdict()
    assert verdict.actionable and verdict.fixes


def test_a_gigabit_port_is_not_a_local_limit() -> None:
    v = judge(history([(478.0, 287.0)] * 12, wan_speed_mbps=1000.0))
    assert v.outcome is Outcome.DELIVERED and not v.down.excluded


def test_local_limit_does_not_hide_a_proven_breach() -> None:
    # Valid tests already prove the line slow; a few port-limited tests do not excuse it.
    slow = history([(100.0, 50.0)] * 12)
    port = [SpeedSample(result_id=f"p{i}", at=NOW - timedelta(hours=i + 1), down_mbps=94.0, up_mbps=94.0,
                        wan_speed_mbps=100.0) for i in range(20)]
    assert judge(slow + port).outcome is Outcome.NOT_DELIVERED


def test_cpu_saturated_tests_are_excluded() -> None:
    good = history([(478.0, 287.0)] * 12)
    hot = history([(200.0, 150.0)] * 5, hour=3, cpu_max_pct=99.0)
    v = judge(good + hot)
    assert v.outcome is Outcome.DELIVERED
    assert v.down.excluded == {"gateway_cpu_saturated": 5}
    # All hot: the gateway, not the line, is the problem.
    only_hot = judge(history([(200.0, 150.0)] * 12, cpu_max_pct=97.0))
    assert only_hot.outcome is Outcome.LIMITED
    assert "CPU was saturated (97%)" in only_hot.down.fixes[0]


def test_cross_traffic_flagged_tests_are_excluded_and_counted() -> None:
    good = history([(478.0, 287.0)] * 15)
    busy = history([(180.0, 100.0)] * 10, hour=3, cross_traffic_high=True)
    v = judge(good + busy)
    assert v.outcome is Outcome.DELIVERED
    assert v.down.excluded == {"cross_traffic_high": 10}
    assert v.down.all.valid == 15
    assert "10 excluded: 10 cross_traffic_high" in v.down.reason
    # Counted as they were, the busy tests would have sunk the verdict.
    unflagged = judge(good + history([(180.0, 100.0)] * 10, hour=3))
    assert unflagged.down.outcome is not Outcome.DELIVERED
    # Office traffic is not local *equipment*: all-busy stays inconclusive, no customer ticket.
    all_busy = judge(history([(180.0, 100.0)] * 12, cross_traffic_high=True))
    assert all_busy.outcome is Outcome.INCONCLUSIVE


def test_failed_tests_are_not_measured_never_zero() -> None:
    good = history([(478.0, 287.0)] * 12)
    failed = history([(None, None)] * 8, hour=3, status="failed", reason="server busy")
    v = judge(good + failed)
    assert v.outcome is Outcome.DELIVERED
    assert v.down.excluded == {"not_measured": 8}
    assert all(t.passed is None for t in v.down.tests if t.excluded)


def test_interrupted_and_unsettled_tests_are_excluded_not_failed() -> None:
    """A test the line interrupted, or one a cap stopped before it settled, is no evidence of a slow line
    (issue 21): excluded with its reason, like cross-traffic, and never counted as a failed test."""
    good = history([(478.0, 287.0)] * 12)
    cut = [sample_from_metrics(f"cut-{i}", NOW - timedelta(hours=i + 1),
                               {"down_mbps": None, "up_mbps": None, "interrupted_down_flag": 1},
                               status="failed", reason="interrupted: the WAN link wan0 went down 2.1 s in")
           for i in range(3)]
    loose = [sample_from_metrics(f"loose-{i}", NOW - timedelta(hours=i + 5),
                                 {"down_mbps": 120.0, "up_mbps": 287.0, "stable_down_flag": 0, "stable_up_flag": 1,
                                  "interrupted_down_flag": 0, "interrupted_up_flag": 0})
             for i in range(4)]
    v = judge(good + cut + loose)
    assert v.outcome is Outcome.DELIVERED, v.summary
    assert v.down.excluded == {"interrupted": 3, "unsettled": 4} and v.down.all.valid == 12
    assert v.up.excluded == {"not_measured": 3} and v.up.all.valid == 16  # not run after the cut; settled ones count
    reasons = {t.result_id: t.detail for t in v.down.tests if t.excluded}
    assert "went down" in reasons["cut-0"] and "lower bound" in reasons["loose-0"]
    # Counted at face value, the unsettled downloads would have sunk the verdict.
    assert judge(good + history([(120.0, 287.0)] * 4, hour=3)).down.outcome is not Outcome.DELIVERED


def test_peak_and_off_peak_reported_separately() -> None:
    off = history([(478.0, 287.0)] * 25, hour=OFF_PEAK_UTC_HOUR)
    peak = history([(250.0, 287.0)] * 12, hour=PEAK_UTC_HOUR)
    v = judge(off + peak)
    d = v.down
    assert (d.peak.valid, d.peak.passed) == (12, 0) and d.peak.outcome is Outcome.NOT_DELIVERED
    assert (d.off_peak.valid, d.off_peak.passed) == (25, 25) and d.off_peak.outcome is Outcome.DELIVERED
    assert d.all.valid == 37 and d.decided_on == "all"
    assert all(t.peak for t in d.tests if t.result_id.startswith(f"r{PEAK_UTC_HOUR}-"))
    # A carrier that declares peak hours decisive gets the peak verdict.
    by_peak = judge(off + peak, SpeedCriterion(decide_on="peak"))
    assert by_peak.down.outcome is Outcome.NOT_DELIVERED and by_peak.down.decided_on == "peak"
    assert "in peak hours (19:00-23:00)" in by_peak.down.reason


def test_peak_hours_can_wrap_midnight() -> None:
    ph = PeakHours(start_hour=22, end_hour=2)
    assert ph.contains(datetime(2022, 1, 1, 23)) and ph.contains(datetime(2022, 1, 1, 1))
    assert not ph.contains(datetime(2022, 1, 1, 2)) and not ph.contains(datetime(2022, 1, 1, 21))


def test_upload_is_judged_separately() -> None:
    v = judge(history([(478.0, 100.0)] * 15))
    assert v.down.outcome is Outcome.DELIVERED
    assert v.up.outcome is Outcome.NOT_DELIVERED
    assert v.outcome is Outcome.NOT_DELIVERED
    assert "Upload: 0 of 15 valid tests reached 240 Mbit/s" in v.summary
    # A promise without upload judges download only.
    down_only = SpeedPromise(id="p2", line_id="l1", effective=date(2022, 6, 1), down_mbps=500)
    v2 = judge(history([(478.0, 100.0)] * 15), promise=down_only)
    assert [d.direction for d in v2.directions] == ["down"] and v2.outcome is Outcome.DELIVERED


def test_upload_rises_with_account_age() -> None:
    stepped = SpeedPromise(id="p3", line_id="l1", effective=date(2022, 6, 1), down_mbps=500, up_mbps=300,
                           steps=[SpeedStep(after_months=24, up_mbps=500), SpeedStep(after_months=60, up_mbps=1000)])
    assert stepped.rates_at(date(2022, 9, 1), date(2021, 1, 1)) == (500, 300)
    assert stepped.rates_at(date(2022, 9, 1), date(2020, 9, 1)) == (500, 500)
    assert stepped.rates_at(date(2022, 9, 1), date(2017, 8, 31)) == (500, 1000)
    samples = history([(478.0, 287.0)] * 15)
    assert judge(samples, promise=stepped, account_since=date(2021, 1, 1)).up.outcome is Outcome.DELIVERED
    old = judge(samples, promise=stepped, account_since=date(2016, 1, 1))
    assert old.up.promised_mbps == 1000 and old.up.outcome is Outcome.NOT_DELIVERED


def test_grace_window_makes_the_verdict_provisional_and_then_resets_the_evidence() -> None:
    recent = SpeedPromise(id="p4", line_id="l1", effective=date(2022, 9, 15), down_mbps=500, up_mbps=300)
    slow = history([(100.0, 50.0)] * 14)
    v = judge(slow, promise=recent)
    assert v.in_grace and v.outcome is Outcome.NOT_DELIVERED
    assert not v.as_verdict().actionable  # no ticket while the carrier may still fix it
    assert "Provisional" in v.summary
    assert v.window_start == datetime(2022, 9, 15, tzinfo=CRIT.zone)
    # Grace of 10 days ends 2022-09-25: only tests after it count (5 of the 14 daily tests).
    after = judge(slow, promise=recent, grace=10)
    assert not after.in_grace and after.down.all.valid == 5
    assert after.down.outcome is Outcome.INCONCLUSIVE


def test_sample_prefers_capacity_and_falls_back_to_the_test_rate() -> None:
    s = sample_from_metrics("r", NOW, {"capacity_down_mbps": 470.0, "down_mbps": 300.0, "up_mbps": 280.0,
                                       "capacity_up_mbps": None, "cpu_max_pct": 40.0,
                                       "cross_traffic_high_flag": 0}, {"wan_speed_mbps": 1000.0})
    assert (s.down_mbps, s.down_source) == (470.0, "capacity_down_mbps")
    assert (s.up_mbps, s.up_source) == (280.0, "up_mbps")
    assert s.wan_speed_mbps == 1000.0 and s.cpu_max_pct == 40.0 and not s.cross_traffic_high
    flagged = sample_from_metrics("r", NOW, {"down_mbps": 300.0, "cross_traffic_high_flag": 1})
    assert flagged.cross_traffic_high and flagged.up_mbps is None


def test_verdict_round_trips_through_json() -> None:
    from collector.promises.verdict import PromiseVerdict, dumps

    v = judge(history([(94.0, 94.0)] * 15, wan_speed_mbps=100.0)).as_verdict()
    import json

    back = PromiseVerdict.from_dict(json.loads(dumps(v.as_dict())))
    assert back.outcome is Outcome.LIMITED and back.fixes == v.fixes
    assert back.detail["directions"]["down"]["excluded"] == {"wan_port_below_promise": 15}
    assert back.detail["directions"]["down"]["tests"][0]["excluded"] == Exclusion.WAN_PORT.value
