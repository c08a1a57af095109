"""The acceptance report states one minimum number of tests (issue 23 item 8): its criterion said "with at
least 10 valid tests" while the verdict under it said "at least 11 are needed". Both now come from
stats.fewest_deciding_tests, and agree at the defaults and with a carrier's own minimum."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from collector.fleet import registry
from collector.promises import acceptance, ledger
from collector.promises.consequences import run_ledger
from collector.promises.criterion import PromisePolicy, SpeedCriterion
from collector.promises.model import Outcome, SpeedPromise
from collector.promises.stats import fewest_deciding_tests
from collector.store.database import Store

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 5, 20, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize("min_valid_tests,expected", [(10, 11), (20, 20)])
def test_criterion_and_verdict_name_the_same_minimum(tmp_path: Path, min_valid_tests: int, expected: int) -> None:
    policy = PromisePolicy(speed=SpeedCriterion(min_valid_tests=min_valid_tests))
    assert fewest_deciding_tests(min_valid_tests, 0.8, 0.95) == policy.speed.fewest_deciding_tests == expected
    store = Store(f"sqlite:///{tmp_path}/ledger.db")
    with store.engine.begin() as conn:
        registry.import_registry(conn, registry.load_yaml(ROOT / "config" / "lines.example.yaml"))
        ledger.import_promises(conn, [SpeedPromise(id="acme-upgrade", line_id="acme-xuhui-1",
                                                   effective=date(2024, 1, 1), down_mbps=500, up_mbps=300)])
        run_ledger(conn, policy, NOW)  # no test at all yet
    key = acceptance.load_or_create_key(tmp_path / "acceptance.key")
    with store.engine.connect() as conn:
        verdict = ledger.stored_verdict(conn, "acme-upgrade")
        assert verdict is not None and verdict.outcome is Outcome.INCONCLUSIVE
        html_path, _, _ = acceptance.write_report(conn, verdict, tmp_path / "out", key, policy.speed.zone,
                                                  "Wang Wei", pdf=False, now=NOW)
    store.close()
    page = " ".join(html_path.read_text(encoding="utf-8").split())
    criterion = re.findall(r"with at least (\d+) valid tests", page)
    needed = re.findall(r"at least (\d+) are needed", verdict.summary)
    assert criterion == [str(expected)] and set(needed) == {str(expected)}, (criterion, verdict.summary)
    assert f"至少 {expected} 次有效测试" in page
