"""Fleet reports and CSV exports from verdict rows, and the signed acceptance report (HTML and PDF)."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from collector.fleet import registry
from collector.promises import acceptance, ledger, reports
from collector.promises.consequences import run_ledger
from collector.promises.criterion import PromisePolicy
from collector.promises.model import Outcome, SpeedPromise
from collector.store.database import Store
from linecheck.wire import CheckResult, Status
from tests.factory import envelope, link_check

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 5, 20, 4, 0, tzinfo=UTC)


def row(line: str, outcome: Outcome, district: str, segment: str, tenant: str, ratio: float | None,
        kind: str = "speed", grace: bool = False) -> dict:
    return {"promise_id": f"{line}-{kind}", "line_id": line, "line_name": None, "kind": kind, "outcome": outcome,
            "in_grace": grace, "delivered_ratio": ratio, "district": district, "segment": segment,
            "tenant_id": tenant, "summary": f"{line} {outcome.value}", "evaluated_at": NOW, "outcome_since": NOW,
            "judgeable_from": NOW, "ticket_id": None}


ROWS = [
    row("a1", Outcome.DELIVERED, "Xuhui", "sme", "acme", 0.95),
    row("a2", Outcome.DELIVERED, "Xuhui", "sme", "acme", 0.93),
    row("a3", Outcome.NOT_DELIVERED, "Xuhui", "retail", "acme", 0.20),
    row("b1", Outcome.INCONCLUSIVE, "Jing'an", "sme", "lotus", None, grace=True),
    row("b2", Outcome.LIMITED, "Jing'an", "sme", "lotus", 0.19),
    row("b1", Outcome.DELIVERED, "Jing'an", "sme", "lotus", 1.18, kind="tariff_reduction"),
    row("c1", Outcome.DELIVERED, None, None, "lotus", 0.96),  # type: ignore[arg-type]
]


def test_fleet_groups_by_district_segment_and_tenant() -> None:
    by_district = {(g.group, g.kind): g for g in reports.fleet(ROWS, "district")}
    xuhui = by_district[("Xuhui", "speed")]
    assert (xuhui.promises, xuhui.delivered, xuhui.not_delivered) == (3, 2, 1)
    assert xuhui.judged == 3 and xuhui.delivered_share == pytest.approx(2 / 3)
    assert xuhui.median_delivered_ratio == pytest.approx(0.93)
    jingan = by_district[("Jing'an", "speed")]
    assert (jingan.inconclusive, jingan.limited, jingan.in_grace) == (1, 1, 1)
    # Inconclusive (in grace) and limited by local equipment: nothing judged, no share — not 0 %.
    assert jingan.judged == 0 and jingan.delivered_share is None
    assert jingan.median_delivered_ratio == pytest.approx(0.19)  # the inconclusive line has no ratio
    assert by_district[("(none)", "speed")].delivered == 1
    assert by_district[("Jing'an", "tariff_reduction")].median_delivered_ratio == pytest.approx(1.18)
    speed_by_segment = {g.group: g for g in reports.fleet(ROWS, "segment", kind="speed")}
    assert set(speed_by_segment) == {"sme", "retail", "(none)"} and speed_by_segment["sme"].lines == 4
    tenants = {g.group: g.promises for g in reports.fleet(ROWS, "tenant", kind="speed")}
    assert tenants == {"acme": 3, "lotus": 3}


def test_csv_exports_parse_back() -> None:
    fleet_rows = list(csv.DictReader(io.StringIO(reports.fleet_csv(reports.fleet(ROWS, "district", "speed")))))
    xuhui = next(r for r in fleet_rows if r["group"] == "Xuhui")
    assert xuhui["delivered"] == "2" and xuhui["share_delivered"] == "0.6667" and xuhui["judged"] == "3"
    jingan = next(r for r in fleet_rows if r["group"] == "Jing'an")
    assert jingan["judged"] == "0" and jingan["share_delivered"] == ""  # not judged: empty, not 0.0000
    verdict_rows = list(csv.DictReader(io.StringIO(reports.verdicts_csv(ROWS))))
    assert len(verdict_rows) == len(ROWS)
    assert verdict_rows[2]["outcome"] == "not_delivered" and verdict_rows[3]["in_grace"] == "yes"
    assert verdict_rows[3]["delivered_ratio"] == "" and verdict_rows[0]["evaluated_at"] == NOW.isoformat()
    text = reports.fleet_text(reports.fleet(ROWS, "district", "speed"), "district")
    assert "Xuhui" in text and "67%" in text
    jingan_line = next(line for line in text.splitlines() if line.startswith("Jing'an"))
    assert "not judged" in jingan_line and "0%" not in jingan_line


def throughput_check(down: float, up: float) -> CheckResult:
    return CheckResult(kind="throughput", status=Status.OK, duration_s=8.0,
                       metrics={"capacity_down_mbps": down, "capacity_up_mbps": up * 0.6, "down_mbps": down,
                                "up_mbps": up * 0.6, "cpu_max_pct": 40.0, "cross_traffic_high_flag": 0})


@pytest.fixture
def judged_store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/ledger.db")
    with s.engine.begin() as conn:
        registry.import_registry(conn, registry.load_yaml(ROOT / "config" / "lines.example.yaml"))
        ledger.import_promises(conn, [SpeedPromise(id="acme-upgrade", line_id="acme-xuhui-1",
                                                   effective=date(2024, 1, 1), down_mbps=500, up_mbps=300,
                                                   note="free upgrade to 500M")])
    results = []
    for i in range(14):
        link = link_check()
        tp = CheckResult(kind="throughput", status=Status.OK, duration_s=8.0,
                         metrics={"capacity_down_mbps": 478.0 - i, "capacity_up_mbps": 287.0, "down_mbps": 470.0,
                                  "up_mbps": 285.0, "cpu_max_pct": 40.0, "cross_traffic_high_flag": 0})
        results.append(envelope("acme-xuhui-gw", "acme-xuhui-1", [link, tp], site_id="acme-xuhui",
                                started_at=NOW - timedelta(hours=5 * (i + 1))))
    s.ingest(results)
    with s.engine.begin() as conn:
        run_ledger(conn, PromisePolicy(), NOW)
    return s


def test_acceptance_report_is_signed_and_tamper_evident(judged_store: Store, tmp_path: Path) -> None:
    key = acceptance.load_or_create_key(tmp_path / "keys" / "acceptance.key")
    assert (tmp_path / "keys" / "acceptance.key").stat().st_mode & 0o777 == 0o600
    assert acceptance.load_or_create_key(tmp_path / "keys" / "acceptance.key").public_key() == key.public_key()
    with judged_store.engine.connect() as conn:
        verdict = ledger.stored_verdict(conn, "acme-upgrade")
        assert verdict is not None and verdict.outcome is Outcome.DELIVERED
        html_path, pdf_path, signed = acceptance.write_report(
            conn, verdict, tmp_path / "out", key, PromisePolicy().speed.zone, "Wang Wei (T-0117)",
            "Li Na", pdf=False, now=NOW)
    assert pdf_path is None
    page = html_path.read_text(encoding="utf-8")
    for text in ("acme-xuhui-1", "Acme Trading Co., Ltd.", "已兑现 · Delivered", "Wang Wei (T-0117)",
                 "free upgrade to 500M", signed.fingerprint, signed.digest, "2024-05-20 07:00"):
        assert text in page, text
    assert page.count('class="pass"') == 28  # 14 tests, both directions
    ok = acceptance.verify(page)
    assert ok.payload["line"]["line_id"] == "acme-xuhui-1" and ok.fingerprint == signed.fingerprint
    # Change one measured figure inside the signed payload: the signature no longer holds.
    tampered = page.replace('"value_mbps": 478.0', '"value_mbps": 499.0', 1)
    assert tampered != page
    with pytest.raises(acceptance.ReportError, match="changed after signing"):
        acceptance.verify(tampered)
    with pytest.raises(acceptance.ReportError, match="not a linecheck acceptance report"):
        acceptance.verify("<html>hello</html>")


@pytest.mark.browser
def test_acceptance_report_prints_to_pdf_with_chromium(judged_store: Store, tmp_path: Path) -> None:
    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed (Debian package chromium)")
    from pypdf import PdfReader

    key = acceptance.load_or_create_key(tmp_path / "acceptance.key")
    with judged_store.engine.connect() as conn:
        verdict = ledger.stored_verdict(conn, "acme-upgrade")
        assert verdict is not None
        _, pdf_path, signed = acceptance.write_report(conn, verdict, tmp_path, key, PromisePolicy().speed.zone,
                                                      "Wang Wei", now=NOW)
    assert pdf_path is not None and pdf_path.read_bytes()[:5] == b"%PDF-"
    text = "".join(page.extract_text() for page in PdfReader(pdf_path).pages)
    for needle in ("acme-xuhui-1", "Delivered", "Wang Wei", signed.digest[:16], "已兑现"):
        assert needle in text.replace("\n", " "), needle
