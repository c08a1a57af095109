"""Table tests of the other promise kinds: WiFi coverage, tariff reduction, fee waiver, service continuity."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from collector.promises.billing import BillingRecord, load_billing_csv, parse_billing_csv
from collector.promises.continuity import Suspension
from collector.promises.criterion import PromisePolicy
from collector.promises.judge import LineEvidence, evaluate
from collector.promises.model import (
    PROMISE_ADAPTER,
    FeeWaiverPromise,
    Outcome,
    ServiceContinuityPromise,
    TariffReductionPromise,
    WifiCoveragePromise,
)
from collector.promises.wifi import WifiSample
from linecheck.configfile import ConfigError

POLICY = PromisePolicy()
NOW = datetime(2023, 2, 1, 4, 0, tzinfo=UTC)


def wifi_tests(room: str, values: list[float | None], start: datetime = NOW) -> list[WifiSample]:
    return [WifiSample(result_id=f"{room}-{i}", at=start - timedelta(hours=6 * (i + 1)), room=room,
                       down_mbps=v, up_mbps=None if v is None else v * 1.1,
                       status="ok" if v is not None else "failed") for i, v in enumerate(values)]


WIFI = WifiCoveragePromise(id="w1", line_id="l1", effective=date(2022, 6, 1),
                           rooms={"meeting-room": 500, "office-a": 500})


def test_wifi_every_room_delivered() -> None:
    ev = LineEvidence("l1", wifi=wifi_tests("meeting-room", [620.0] * 12) + wifi_tests("office-a", [540.0] * 12))
    v = evaluate(WIFI, ev, POLICY, NOW)
    assert v.outcome is Outcome.DELIVERED
    assert v.detail["rooms"]["office-a"]["estimate"]["passed"] == 12
    assert v.delivered_ratio == pytest.approx(1.08)


def test_wifi_one_weak_room_is_not_delivered_and_a_silent_room_inconclusive() -> None:
    weak = wifi_tests("meeting-room", [620.0] * 12) + wifi_tests("office-a", [180.0] * 12)
    v = evaluate(WIFI, LineEvidence("l1", wifi=weak), POLICY, NOW)
    assert v.outcome is Outcome.NOT_DELIVERED
    assert v.detail["rooms"]["office-a"]["outcome"] == "not_delivered"
    assert "Room 'office-a': 0 of 12 tests reached 500 Mbit/s" in v.summary
    silent = evaluate(WIFI, LineEvidence("l1", wifi=wifi_tests("meeting-room", [620.0] * 12)), POLICY, NOW)
    assert silent.outcome is Outcome.INCONCLUSIVE
    assert "Room 'office-a': no WiFi test from this room yet" in silent.summary


def test_wifi_failed_tests_are_not_counted_as_slow() -> None:
    ev = wifi_tests("meeting-room", [620.0] * 12 + [None] * 5) + wifi_tests("office-a", [540.0] * 12)
    v = evaluate(WIFI, LineEvidence("l1", wifi=ev), POLICY, NOW)
    assert v.outcome is Outcome.DELIVERED
    assert v.detail["rooms"]["meeting-room"]["not_measured"] == 5


BILLING_CSV = """line_id,period,product,amount,waived,currency
sme-001,2021-12,broadband,1200.00,0,CNY
sme-001,2021-12,dedicated_line,3000,0,CNY
sme-001,2022-04,broadband,1080,1080,CNY
sme-001,2022-05,broadband,1080,540,CNY
sme-001,2022-12,broadband,1080.00,0,CNY
sme-001,2022-12,dedicated_line,2625,,CNY
sme-002,2021-12,broadband,800,0,CNY
sme-002,2022-12,broadband,760,0,CNY
"""


def tariff(line: str, percent: float = 10, products: list[str] | None = None) -> TariffReductionPromise:
    return TariffReductionPromise(id=f"t-{line}", line_id=line, effective=date(2022, 6, 1), percent=percent,
                                  reference_period="2021-12", period="2022-12", products=products)


def test_tariff_from_imported_billing_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "billing.csv"
    path.write_text(BILLING_CSV)
    records = load_billing_csv(path)
    assert len(records) == 8 and records[5].waived == 0
    ev = LineEvidence("sme-001", billing=records)
    v = evaluate(tariff("sme-001"), ev, POLICY, NOW)
    # (4200 - 3705) / 4200 = 11.8% >= 10%
    assert v.outcome is Outcome.DELIVERED
    assert v.detail["reduction_pct"] == pytest.approx(11.785714, abs=1e-4)
    assert v.detail["products"]["dedicated_line"]["reduction_pct"] == pytest.approx(12.5)
    assert "reduced by 11.8%" in v.summary
    # Broadband alone fell 10% exactly: still meets "at least 10%".
    assert evaluate(tariff("sme-001", products=["broadband"]), ev, POLICY, NOW).outcome is Outcome.DELIVERED
    # sme-002 fell 5%: not delivered.
    v2 = evaluate(tariff("sme-002"), LineEvidence("sme-002", billing=records), POLICY, NOW)
    assert v2.outcome is Outcome.NOT_DELIVERED and v2.delivered_ratio == pytest.approx(0.5)
    assert not v2.in_grace and v2.actionable


def test_tariff_before_its_bill_exists_is_inconclusive_and_provisional() -> None:
    records = parse_billing_csv(BILLING_CSV)
    early = datetime(2022, 12, 20, tzinfo=UTC)
    v = evaluate(tariff("sme-001"), LineEvidence("sme-001", billing=[r for r in records if r.period < "2022-12"]),
                 POLICY, early)
    assert v.outcome is Outcome.INCONCLUSIVE and v.in_grace
    assert "no billing record for 2022-12" in v.summary
    assert v.judgeable_from.date() == date(2023, 1, 16)  # period ends, +15 days grace


@pytest.mark.parametrize(("csv_text", "message"), [
    ("line_id,period,product\nx,2022-01,bb\n", "header: missing column(s) ['amount']"),
    ("line_id,period,product,amount,price\n", "header: unknown column(s) ['price']"),
    ("line_id,period,product,amount\nx,2022-13,bb,10\n", "row 2: period: expected a billing period YYYY-MM"),
    ("line_id,period,product,amount\nx,2022-01,bb,-5\n", "row 2: amount: Input should be greater than or equal to 0"),
    ("line_id,period,product,amount,waived\nx,2022-01,bb,5,6\n", "row 2: waived: 6 exceeds the amount charged (5)"),
    ("line_id,period,product,amount\nx,2022-01,bb,5\nx,2022-01,bb,6\n", "row 3: x 2022-01 bb already on row 2"),
    ("line_id,period,product,amount\nx/y,2022-01,bb,5\n", "row 2: line_id: String should match pattern"),
])
def test_bad_billing_csv_names_row_and_column(csv_text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_billing_csv(csv_text, "bills.csv")
    assert f"bills.csv: {message}" in str(err.value)


def waiver(months: float) -> FeeWaiverPromise:
    return FeeWaiverPromise(id="f1", line_id="sme-001", effective=date(2022, 4, 1), months=months,
                            first_period="2022-03", last_period="2022-06")


def test_fee_waiver_counts_full_month_equivalents() -> None:
    records = parse_billing_csv(BILLING_CSV)
    rows = [*records, BillingRecord(line_id="sme-001", period="2022-03", product="broadband", amount=1080),
            BillingRecord(line_id="sme-001", period="2022-06", product="broadband", amount=1080)]
    ev = LineEvidence("sme-001", billing=rows)
    v = evaluate(waiver(1.5), ev, POLICY, NOW)
    assert v.outcome is Outcome.DELIVERED and v.detail["months_waived"] == pytest.approx(1.5)
    short = evaluate(waiver(3), ev, POLICY, NOW)
    assert short.outcome is Outcome.NOT_DELIVERED and "Only 1.50 of 3 promised" in short.summary
    # Records missing for part of the window: cannot call it a breach.
    partial = evaluate(waiver(3), LineEvidence("sme-001", billing=records), POLICY, NOW)
    assert partial.outcome is Outcome.INCONCLUSIVE and "2022-03, 2022-06" in partial.summary
    # While the window is open, too few months is not yet a breach.
    during = evaluate(waiver(3), ev, POLICY, datetime(2022, 5, 20, tzinfo=UTC))
    assert during.outcome is Outcome.INCONCLUSIVE and during.in_grace


CONT = ServiceContinuityPromise(id="c1", line_id="l1", effective=date(2022, 3, 1), start=date(2022, 3, 1),
                                end=date(2022, 8, 31))


def hourly_reports(start: datetime, end: datetime, every_h: float = 6) -> list[datetime]:
    out, t = [], start
    while t <= end:
        out.append(t)
        t += timedelta(hours=every_h)
    return out


def test_continuity_kept_watched_without_gaps() -> None:
    reports = hourly_reports(datetime(2022, 2, 28, 16, tzinfo=UTC), datetime(2022, 9, 1, tzinfo=UTC))
    v = evaluate(CONT, LineEvidence("l1", report_times=reports), POLICY, NOW)
    assert v.outcome is Outcome.DELIVERED
    assert v.detail["silences"] == []


def test_continuity_suspension_in_window_is_a_breach() -> None:
    reports = hourly_reports(datetime(2022, 2, 28, 16, tzinfo=UTC), datetime(2022, 9, 1, tzinfo=UTC))
    cut = Suspension("gw1", "r-77", datetime(2022, 4, 12, 2, tzinfo=UTC),
                     "HTTP requests are redirected to the carrier's payment portal.")
    outside = Suspension("gw1", "r-99", datetime(2022, 10, 1, tzinfo=UTC), "after the window")
    v = evaluate(CONT, LineEvidence("l1", suspensions=[cut, outside], report_times=reports), POLICY, NOW)
    assert v.outcome is Outcome.NOT_DELIVERED and v.actionable
    assert [s["result_id"] for s in v.detail["suspensions"]] == ["r-77"]
    assert "first at 2022-04-12 10:00" in v.summary  # local time (Asia/Shanghai)


def test_continuity_silence_leaves_it_unproven() -> None:
    reports = [t for t in hourly_reports(datetime(2022, 2, 28, 16, tzinfo=UTC), datetime(2022, 9, 1, tzinfo=UTC))
               if not datetime(2022, 5, 1, tzinfo=UTC) <= t <= datetime(2022, 5, 4, tzinfo=UTC)]
    v = evaluate(CONT, LineEvidence("l1", report_times=reports), POLICY, NOW)
    assert v.outcome is Outcome.INCONCLUSIVE
    assert len(v.detail["silences"]) == 1 and v.detail["silences"][0]["hours"] == pytest.approx(78)
    mid = evaluate(CONT, LineEvidence("l1", report_times=reports[:100]), POLICY,
                   reports[99] + timedelta(hours=1))
    assert mid.outcome is Outcome.INCONCLUSIVE and "so far" in mid.summary


def test_promise_models_validate() -> None:
    ok = PROMISE_ADAPTER.validate_python({"kind": "speed", "id": "p", "line_id": "l", "effective": "2022-06-01",
                                          "down_mbps": 500, "up_mbps": 300})
    assert ok.kind == "speed"
    with pytest.raises(ValidationError, match="period must come after reference_period"):
        PROMISE_ADAPTER.validate_python({"kind": "tariff_reduction", "id": "t", "line_id": "l",
                                         "effective": "2022-06-01", "percent": 10,
                                         "reference_period": "2022-12", "period": "2021-12"})
    with pytest.raises(ValidationError, match="increasing after_months"):
        PROMISE_ADAPTER.validate_python({"kind": "speed", "id": "p", "line_id": "l", "effective": "2022-06-01",
                                         "down_mbps": 500, "steps": [{"after_months": 24, "up_mbps": 500},
                                                                     {"after_months": 12, "up_mbps": 400}]})
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        PROMISE_ADAPTER.validate_python({"kind": "free_lunch", "id": "p", "line_id": "l", "effective": "2022-06-01"})
