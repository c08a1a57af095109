"""`linecheck-collector promises ...` from import to a verified acceptance report, on SQLite."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from collector.cli.program import main
from collector.store.database import Store
from tests.factory import envelope, link_check
from tests.test_promises_reports import throughput_check

ROOT = Path(__file__).resolve().parents[1]


def test_cli_import_evaluate_report_export_acceptance_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/c.db\n"
                   f"promises: {{signing_key_file: {tmp_path}/keys/acceptance.key}}\n")
    c = ["--config", str(cfg)]
    assert main(["registry", "import", *c, str(ROOT / "config" / "lines.example.yaml")]) == 0
    assert main(["promises", "import", *c, str(ROOT / "config" / "promises.example.yaml")]) == 0
    assert main(["promises", "billing-import", *c, str(ROOT / "config" / "billing.example.csv")]) == 0
    now = datetime.now().astimezone()
    store = Store(f"sqlite:///{tmp_path}/c.db")
    store.ingest([envelope("acme-xuhui-gw", "acme-xuhui-1", [link_check(), throughput_check(478.0, 470.0)],
                           site_id="acme-xuhui", started_at=now - timedelta(hours=3 * (i + 1))) for i in range(12)])
    store.close()
    capsys.readouterr()

    assert main(["promises", "evaluate", *c]) == 0
    out = capsys.readouterr().out
    assert "judged 5 promise(s)" in out and "tickets:" in out
    assert main(["promises", "show", *c, "acme-xuhui-1"]) == 0
    out = capsys.readouterr().out
    # The account dates from 2014: past 120 months the example promises gigabit up, which 282 is not.
    assert "acme-upgrade-2022 [speed] not_delivered, ticket #" in out and "promised 1000" in out
    assert "acme-tariff-2022 [tariff_reduction] delivered" in out
    assert main(["promises", "report", *c, "--by", "district", "--csv", str(tmp_path / "fleet.csv")]) == 0
    fleet = list(csv.DictReader((tmp_path / "fleet.csv").open()))
    assert {(r["group"], r["kind"]) for r in fleet} >= {("Xuhui", "speed"), ("Jing'an", "fee_waiver")}
    capsys.readouterr()
    assert main(["promises", "export", *c]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["promise_id"] for r in rows} == {"acme-upgrade-2022", "acme-fttr-2022", "acme-tariff-2022",
                                               "lotus-arrears-2022", "lotus-waiver-2022"}
    assert next(r for r in rows if r["promise_id"] == "acme-fttr-2022")["outcome"] == "inconclusive"

    assert main(["promises", "acceptance", *c, "acme-upgrade-2022", "--technician", "Wang Wei", "--no-pdf",
                 "--out", str(tmp_path / "reports")]) == 0
    (report,) = (tmp_path / "reports").glob("*.html")
    capsys.readouterr()
    assert main(["promises", "verify-report", str(report)]) == 0
    assert "valid: report" in capsys.readouterr().out
    report.write_text(report.read_text().replace("Wang Wei", "Somebody Else"))
    assert main(["promises", "verify-report", str(report)]) == 1
    assert "NOT VALID" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text("promises:\n  - {id: x, line_id: acme-xuhui-1, kind: speed, effective: 2022-06-01}\n")
    assert main(["promises", "import", *c, str(bad)]) == 2
    assert f"{bad}: promises[0]: speed.down_mbps: required key is missing" in capsys.readouterr().err
