"""The ledger on a real database (SQLite and PostgreSQL): import promises and billing, judge stored results,
keep verdicts joined with the registry, and open/resolve tickets."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.fleet import registry
from collector.promises import files, ledger
from collector.promises.billing import load_billing_csv
from collector.promises.consequences import LOCAL_CLASS, run_ledger
from collector.promises.criterion import PromisePolicy
from collector.promises.model import Outcome, SpeedPromise
from collector.store import schema as t
from collector.store.database import Store
from linecheck.configfile import ConfigError
from linecheck.wire import CheckResult, ResultEnvelope, Status
from tests.factory import envelope, finding, link_check

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 5, 20, 4, 0, tzinfo=UTC)
HAS_TICKETS = importlib.util.find_spec("collector.tickets.lifecycle") is not None


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    with s.engine.begin() as conn:
        registry.import_registry(conn, registry.load_yaml(ROOT / "config" / "lines.example.yaml"))
    yield s
    s.close()


def throughput(down: float | None, up: float | None, cpu: float = 35.0, busy: bool = False) -> CheckResult:
    measured = down is not None
    return CheckResult(kind="throughput", status=Status.OK if measured else Status.FAILED, duration_s=8.0,
                       reason=None if measured else "test server busy",
                       metrics={"capacity_down_mbps": down, "capacity_up_mbps": up, "down_mbps": down,
                                "up_mbps": up, "cpu_max_pct": cpu if measured else None,
                                "cross_traffic_high_flag": int(busy) if measured else None})


# The site each example line is registered on: ingest refuses results naming another (collector/ingest/binding.py).
SITE_OF = {"acme-xuhui-1": "acme-xuhui", "lotus-jingan-1": "lotus-jingan"}


def results_on(line: str, agent: str, values: list[tuple[float | None, float | None]], port: float = 1000.0,
               end: datetime = NOW, **kw: object) -> list[ResultEnvelope]:
    out = []
    for i, (down, up) in enumerate(values):
        link = link_check()
        link.metrics["wan_speed_mbps"] = port
        out.append(envelope(agent, line, [link, throughput(down, up, **kw)], site_id=SITE_OF[line],  # type: ignore[arg-type]
                            started_at=end - timedelta(hours=7 * (i + 1))))
    return out


def speed(line: str, pid: str) -> SpeedPromise:
    return SpeedPromise(id=pid, line_id=line, effective=date(2024, 1, 1), down_mbps=500, up_mbps=300)


def test_import_example_promises_and_refuse_unknown_lines(store: Store) -> None:
    promises = files.load_file(ROOT / "config" / "promises.example.yaml")
    assert [p.kind for p in promises] == ["speed", "wifi_coverage", "tariff_reduction", "service_continuity",
                                          "fee_waiver"]
    with store.engine.begin() as conn:
        assert ledger.import_promises(conn, promises) == 5
        assert ledger.import_promises(conn, promises) == 5  # upsert: no duplicates
    with store.engine.connect() as conn:
        assert {p.id for p in ledger.stored_promises(conn)} == {p.id for p in promises}
        assert len(ledger.stored_promises(conn, ["lotus-jingan-1"])) == 2
    stray = SpeedPromise(id="x", line_id="nowhere-1", effective=date(2024, 1, 1), down_mbps=500)
    with pytest.raises(ConfigError, match=r"unknown line\(s\) \['nowhere-1'\]"), store.engine.begin() as conn:
        ledger.import_promises(conn, [stray], "extra.yaml")


def test_speed_verdicts_from_stored_results_with_registry_context(store: Store) -> None:
    store.ingest(results_on("acme-xuhui-1", "acme-xuhui-gw", [(96.0, 48.0)] * 12)
                 + results_on("lotus-jingan-1", "lotus-jingan-gw", [(478.0, 287.0)] * 12))
    with store.engine.begin() as conn:
        ledger.import_promises(conn, [speed("acme-xuhui-1", "acme-up"), speed("lotus-jingan-1", "lotus-up")])
        verdicts = {v.promise_id: v for v in ledger.judge(conn, PromisePolicy(), NOW)}
        ledger.save_verdicts(conn, list(verdicts.values()))
    slow, fast = verdicts["acme-up"], verdicts["lotus-up"]
    assert slow.outcome is Outcome.NOT_DELIVERED and fast.outcome is Outcome.DELIVERED
    down = slow.detail["directions"]["down"]
    assert down["all"]["valid"] == 12 and down["tests"][0]["source"] == "capacity_down_mbps"
    assert down["tests"][0]["agent_id"] == "acme-xuhui-gw"
    with store.engine.connect() as conn:
        rows = {r["promise_id"]: r for r in ledger.verdict_rows(conn)}
        assert rows["acme-up"]["district"] == "Xuhui" and rows["acme-up"]["segment"] == "sme"
        assert rows["acme-up"]["tenant_id"] == "acme-trading"
        scoped = ledger.verdict_rows(conn, scope={"lotus-design"})
        assert [r["promise_id"] for r in scoped] == ["lotus-up"]
        again = ledger.stored_verdict(conn, "acme-up")
    assert again is not None and again.outcome is Outcome.NOT_DELIVERED and again.summary == slow.summary


def test_outcome_since_holds_while_the_outcome_stands(store: Store) -> None:
    store.ingest(results_on("acme-xuhui-1", "acme-xuhui-gw", [(96.0, 48.0)] * 12))
    with store.engine.begin() as conn:
        ledger.import_promises(conn, [speed("acme-xuhui-1", "acme-up")])
        ledger.save_verdicts(conn, ledger.judge(conn, PromisePolicy(), NOW))
        ledger.save_verdicts(conn, ledger.judge(conn, PromisePolicy(), NOW + timedelta(hours=1)))
        row = conn.execute(select(t.promise_verdicts)).one()
    assert row.outcome_since == NOW
    assert row.evaluated_at == NOW + timedelta(hours=1)


def test_tariff_and_waiver_from_imported_billing_csv(store: Store) -> None:
    records = load_billing_csv(ROOT / "config" / "billing.example.csv")
    promises = files.load_file(ROOT / "config" / "promises.example.yaml")
    with store.engine.begin() as conn:
        ledger.import_promises(conn, promises)
        assert ledger.import_billing(conn, records, "billing.example.csv") == 8
        verdicts = {v.kind: v for v in ledger.judge(conn, PromisePolicy(), datetime(2023, 3, 1, tzinfo=UTC))}
    assert verdicts["tariff_reduction"].outcome is Outcome.DELIVERED
    assert verdicts["tariff_reduction"].detail["reduction_pct"] == pytest.approx(11.7857, abs=1e-3)
    assert verdicts["fee_waiver"].outcome is Outcome.DELIVERED
    assert verdicts["fee_waiver"].detail["months_waived"] == pytest.approx(2.0)
    bad = load_billing_csv(ROOT / "config" / "billing.example.csv")[:1]
    bad[0].line_id = "ghost-1"
    with pytest.raises(ConfigError, match="ghost-1"), store.engine.begin() as conn:
        ledger.import_billing(conn, bad)


def test_continuity_breach_from_a_stored_service_suspended_finding(store: Store) -> None:
    start = datetime(2022, 2, 28, 16, tzinfo=UTC)
    reports = [envelope("lotus-jingan-gw", "lotus-jingan-1", site_id="lotus-jingan",
                        started_at=start + timedelta(hours=12 * i))
               for i in range(2 * 190)]
    cut = envelope("lotus-jingan-gw", "lotus-jingan-1", site_id="lotus-jingan", findings=[finding("service_suspended")],
                   started_at=datetime(2022, 4, 12, 2, tzinfo=UTC))
    store.ingest([*reports, cut])
    promises = [p for p in files.load_file(ROOT / "config" / "promises.example.yaml")
                if p.kind == "service_continuity"]
    with store.engine.begin() as conn:
        ledger.import_promises(conn, promises)
        (v,) = ledger.judge(conn, PromisePolicy(), datetime(2022, 9, 5, tzinfo=UTC))
    assert v.outcome is Outcome.NOT_DELIVERED
    assert v.detail["suspensions"][0]["result_id"] == cut.result_id
    assert v.detail["reports"] >= 2 * 180


@pytest.mark.skipif(not HAS_TICKETS, reason="the ticket store (collector/tickets/lifecycle.py, issue 6) has not landed")
def test_tickets_open_for_a_broken_promise_and_a_local_limit_and_resolve(store: Store) -> None:
    from collector.tickets import lifecycle as tickets

    store.ingest(results_on("acme-xuhui-1", "acme-xuhui-gw", [(96.0, 48.0)] * 12)
                 + results_on("lotus-jingan-1", "lotus-jingan-gw", [(94.0, 94.0)] * 12, port=100.0))
    with store.engine.begin() as conn:
        ledger.import_promises(conn, [speed("acme-xuhui-1", "acme-up"), speed("lotus-jingan-1", "lotus-up")])
        run = run_ledger(conn, PromisePolicy(), NOW)
    assert len(run.opened) == 2
    with store.engine.connect() as conn:
        carrier = tickets.open_ticket_for(conn, "acme-xuhui-1", "upgrade_not_delivered")
        customer = tickets.open_ticket_for(conn, "lotus-jingan-1", LOCAL_CLASS)
        assert carrier is not None and customer is not None
        assert carrier.location == "wan" and "NOT delivered" in carrier.summary
        assert customer.location == "cpe" and "cable" in customer.summary
        ev = {e.result_id for e in tickets.evidence(conn, carrier.ticket_id)}
        assert len(ev) == 12
        row = conn.execute(select(t.promise_verdicts).where(t.promise_verdicts.c.promise_id == "acme-up")).one()
        assert row.ticket_id == carrier.ticket_id
    assert "0 of 12 valid tests" in carrier.summary
    # Judging again refreshes the open tickets instead of opening more; the summary and the evidence
    # follow the tests that arrived meanwhile (not frozen at "0 of 12").
    store.ingest(results_on("acme-xuhui-1", "acme-xuhui-gw", [(97.0, 47.0)], end=NOW + timedelta(minutes=2)))
    with store.engine.begin() as conn:
        again = run_ledger(conn, PromisePolicy(), NOW + timedelta(minutes=5))
        refreshed = tickets.open_ticket_for(conn, "acme-xuhui-1", "upgrade_not_delivered")
        assert refreshed is not None and len(tickets.evidence(conn, refreshed.ticket_id)) == 13
    assert again.opened == [] and sorted(again.refreshed) == sorted(run.opened)
    assert "0 of 13 valid tests" in refreshed.summary, refreshed.summary
    # The carrier fixes the line, the customer fixes the cable: once the old tests have left the
    # 30-day window, both tickets resolve.
    later = NOW + timedelta(days=31)
    store.ingest(results_on("acme-xuhui-1", "acme-xuhui-gw", [(478.0, 287.0)] * 15, end=later)
                 + results_on("lotus-jingan-1", "lotus-jingan-gw", [(478.0, 287.0)] * 15, end=later))
    with store.engine.begin() as conn:
        done = run_ledger(conn, PromisePolicy(), later)
        assert tickets.open_ticket_for(conn, "acme-xuhui-1", "upgrade_not_delivered") is None
        assert tickets.open_ticket_for(conn, "lotus-jingan-1", LOCAL_CLASS) is None
    assert len(done.resolved) == 2


def test_ingest_hook_judges_new_speed_tests_in_the_ingest_transaction(db_url: str) -> None:
    from collector.promises.hook import PromiseHook
    from collector.tickets import lifecycle as tickets

    s = Store(db_url, hooks=[PromiseHook(PromisePolicy())])
    try:
        with s.engine.begin() as conn:
            registry.import_registry(conn, registry.load_yaml(ROOT / "config" / "lines.example.yaml"))
            ledger.import_promises(conn, [speed("acme-xuhui-1", "acme-up")])
        # Results without a throughput test do not re-judge anything.
        s.ingest([envelope("acme-xuhui-gw", "acme-xuhui-1", site_id="acme-xuhui", started_at=NOW - timedelta(hours=1))])
        with s.engine.connect() as conn:
            assert conn.execute(select(t.promise_verdicts)).first() is None
        s.ingest(results_on("acme-xuhui-1", "acme-xuhui-gw", [(96.0, 48.0)] * 12), received_at=NOW)
        with s.engine.connect() as conn:
            row = conn.execute(select(t.promise_verdicts)).one()
            assert row.outcome == "not_delivered" and row.ticket_id is not None
            assert tickets.open_ticket_for(conn, "acme-xuhui-1", "upgrade_not_delivered") is not None
    finally:
        s.close()
