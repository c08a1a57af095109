"""Grafana dashboards: every panel's SQL runs on PostgreSQL with the real (migrated) schema and fixture data.

A panel whose query fails, or returns nothing on a fleet that has the data it is about, fails here,
so a schema change cannot silently break a dashboard.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from linecheck.wire import Trigger
from tests.factory import envelope, finding, link_check, ping_check
from tests.fleet_data import seed
from tests.grafana_sql import expand

pytestmark = pytest.mark.postgres
DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"
FILTERS = [{"district": ["__all"], "tenant": ["__all"]},
           {"district": ["Xuhui"], "tenant": ["acme-trading", "sh-telecom"]}]


def _panels() -> list[tuple[str, dict]]:
    found = [(path.name, p) for path in sorted(DASHBOARDS.glob("*.json"))
             for p in json.loads(path.read_text())["panels"]]
    assert len(found) >= 12
    return found


def test_dashboards_are_generated_from_their_source() -> None:
    out = subprocess.run([sys.executable, str(DASHBOARDS / "generate.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_provisioning_points_at_the_dashboards_datasource() -> None:
    ds = yaml.safe_load((DASHBOARDS / "provisioning" / "datasources" / "linecheck.yaml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["type"] == "grafana-postgresql-datasource"
    provider = yaml.safe_load((DASHBOARDS / "provisioning" / "dashboards" / "linecheck.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    for name, p in _panels():
        assert p["datasource"]["uid"] == uid, name
        assert all(t["datasource"]["uid"] == uid for t in p["targets"]), name
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS.glob("*.json")]
    assert len(uids) == len(set(uids))


def test_every_panel_query_runs_and_returns_rows(pg_url: str) -> None:
    fleet = seed(pg_url)
    now = datetime.now(UTC)
    # The reopening wave: two offices come back after idle, one of them with a faulty line.
    fleet.store.ingest([
        envelope("acme-gw", "acme-xuhui-1", checks=[link_check(), ping_check(loss_pct=30.0)],
                 findings=[finding("packet_loss")], trigger=Trigger.RESUME_AFTER_IDLE,
                 started_at=now - timedelta(hours=1), site_id="acme-xuhui", idle_s=5_000_000),
        envelope("tel-gw", "tel-jingan-1", trigger=Trigger.RESUME_AFTER_IDLE, started_at=now - timedelta(hours=2),
                 site_id="tel-jingan", idle_s=4_000_000)])
    start, end = now - timedelta(days=7), now + timedelta(minutes=5)
    empty: list[str] = []
    try:
        with fleet.engine.connect() as conn:
            for path in DASHBOARDS.glob("*.json"):
                for var in json.loads(path.read_text())["templating"]["list"]:
                    assert conn.execute(text(var["query"])).first() is not None, var["name"]
            for name, p in _panels():
                for target in p["targets"]:
                    for filters in FILTERS:
                        sql = expand(target["rawSql"], start, end, filters)
                        try:
                            rows = conn.execute(text(sql)).all()
                        except Exception as exc:  # name the panel: the SQL error alone does not
                            raise AssertionError(f"{name}: panel {p['title']!r} fails: {exc}") from exc
                        if not rows and filters["district"] == ["__all"]:
                            empty.append(f"{name}: {p['title']}")
                        if target["format"] == "time_series" and rows:
                            assert "time" in rows[0]._fields, f"{name}: {p['title']} has no time column"
    finally:
        fleet.store.close()
    assert not empty, f"panels with no rows on the fixture fleet: {empty}"
