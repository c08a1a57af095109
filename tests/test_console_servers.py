"""Per test server figures in the API and the console (issue 22 item 4): a carrier sees an overloaded PoP.

The throughput target is what a gateway reported: a hostile one is escaped and cut, and a gateway
inventing targets cannot grow the list without bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from collector.api import test_servers
from linecheck.wire import CheckResult, ReasonPart, Status
from tests.api_support import auth
from tests.factory import envelope, link_check
from tests.fleet_data import Fleet
from tests.test_console import login

NEAR, FULL = "linecheck://198.18.1.1:8070", "linecheck://198.18.9.9:8070"
HOSTILE = "linecheck://<script>alert(1)</script>" + "x" * 200


def tp(target: str, down: float | None = None, *, busy: bool = False, limited: bool = False) -> CheckResult:
    if busy:
        return CheckResult(kind="throughput", status=Status.ERROR, duration_s=1, target=target,
                           reason="server busy: 4 tests running, the limit is 4; retry in 4 s or later",
                           reason_parts=[ReasonPart(key="throughput_busy", args={"diagnostic": "server busy"})],
                           metrics={"down_mbps": None, "up_mbps": None})
    return CheckResult(kind="throughput", status=Status.ERROR if limited else Status.OK, duration_s=10,
                       target=target, metrics={"down_mbps": down, "up_mbps": down and down / 2,
                                               "server_limited_flag": 1 if limited else 0})


def seed(fleet: Fleet) -> None:
    now = datetime.now(UTC)
    checks = [tp(NEAR, 480.0), tp(NEAR, 470.0), tp(NEAR, 490.0),
              tp(FULL, 120.0, limited=True), tp(FULL, busy=True), tp(FULL, busy=True), tp(FULL, 460.0),
              tp(HOSTILE, 10.0)]
    fleet.store.ingest([envelope("acme-gw", "acme-xuhui-1", checks=[link_check(), c], site_id="acme-xuhui",
                                 started_at=now - timedelta(minutes=10 + i)) for i, c in enumerate(checks)])
    # Another carrier's line used the full server too: not in sh-telecom's figures.
    fleet.store.ingest([envelope("bravo-gw", "bravo-pudong-1", checks=[link_check(), tp(FULL, busy=True)],
                                 site_id="bravo-pudong", started_at=now - timedelta(minutes=5))])


def test_api_lists_per_server_figures_within_the_callers_scope(fleet: Fleet, client: TestClient) -> None:
    seed(fleet)
    rows = {r["target"]: r for r in client.get("/api/v1/test-servers", headers=auth(fleet, "a-admin")).json()}
    full, near = rows[FULL], rows[NEAR]
    assert (full["tests"], full["busy"], full["server_limited"]) == (2, 2, 1)  # bravo's refusal is not counted
    assert full["busy_pct"] == 50.0 and full["median_down_mbps"] == 290.0
    assert (near["tests"], near["busy"], near["median_down_mbps"], near["lines"]) == (3, 0, 480.0, 1)
    assert HOSTILE not in rows and HOSTILE[:test_servers.TARGET_SHOWN] in rows  # cut to 100 characters
    bravo = {r["target"]: r for r in client.get("/api/v1/test-servers", headers=auth(fleet, "b-admin")).json()}
    assert bravo[FULL]["busy"] == 1 and NEAR not in bravo


def test_console_shows_the_overloaded_server_and_escapes_a_hostile_name(fleet: Fleet, client: TestClient) -> None:
    seed(fleet)
    login(client, "a-admin")
    html = client.get("/console/servers").text
    assert 'id="servers-table"' in html and FULL in html and "(50.0 %)" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x" * 101 not in html  # bounded


def test_a_gateway_inventing_targets_cannot_grow_the_list(fleet: Fleet, client: TestClient) -> None:
    now = datetime.now(UTC)
    fleet.store.ingest([envelope("acme-gw", "acme-xuhui-1", checks=[tp(f"linecheck://fake{i}:1", 1.0)],
                                 site_id="acme-xuhui", started_at=now - timedelta(seconds=i))
                        for i in range(test_servers.MAX_SERVERS + 20)])
    rows = client.get("/api/v1/test-servers", headers=auth(fleet, "a-admin")).json()
    assert len(rows) == test_servers.MAX_SERVERS
