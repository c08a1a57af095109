"""The spool backlog the agents page and line detail show: what the agent's newest result reported.

Kept on the agents row at ingest (migration 14) instead of read back from the newest result's document
(which meant probing every day partition per agent). These tests hold the meaning: the highest seq wins,
a late older result does not overwrite it, a result without the counter clears it, and a counter the agent
cannot have (a negative count) is dropped without failing the batch for the other agents.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from collector.api.app import create_app
from collector.store import schema as t
from linecheck.wire import CheckResult, Status
from tests.factory import envelope, link_check
from tests.fleet_data import seed

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _with_backlog(agent: str, line: str, seq: int, backlog: Any, minutes: int):  # type: ignore[no-untyped-def]
    checks = [link_check()]
    if backlog is not None:
        checks.append(CheckResult(kind="agent", status=Status.OK, duration_s=0.0,
                                  metrics={"spool_backlog_count": backlog, "spool_evicted_count": 0}))
    site = {"acme-gw": "acme-xuhui", "tel-gw": "tel-jingan", "bravo-gw": "bravo-pudong"}[agent]  # its binding
    e = envelope(agent, line, checks, started_at=T0 + timedelta(minutes=minutes), site_id=site)
    return e.model_copy(update={"seq": seq})


def _base_seq(fleet) -> int:  # type: ignore[no-untyped-def]
    """Above every seq the seeded fleet used (the factory numbers results across the whole test session)."""
    with fleet.engine.connect() as conn:
        return int(conn.execute(select(func.max(t.agents.c.max_seq))).scalar_one()) + 1000


@pytest.fixture
def fleet(db_url: str) -> Iterator[Any]:
    seeded = seed(db_url)
    try:
        yield seeded
    finally:
        seeded.store.close()


def _backlogs(client: TestClient, token: str) -> dict[str, int | None]:
    body = client.get("/api/v1/agents?per_page=100", headers={"Authorization": f"Bearer {token}"}).json()
    return {a["agent_id"]: a["spool_backlog"] for a in body["items"]}


def test_backlog_is_the_newest_results_and_a_late_older_one_does_not_replace_it(fleet: Any) -> None:
    client = TestClient(create_app(fleet.engine, console=False))
    token = fleet.tokens["operator"]
    s = _base_seq(fleet)
    fleet.store.ingest([_with_backlog("acme-gw", "acme-xuhui-1", s, 7, 0),
                        _with_backlog("tel-gw", "tel-jingan-1", s, 3, 0)])
    assert _backlogs(client, token)["acme-gw"] == 7
    # the same batch carries s + 2 and a late s + 1: the higher seq is the newest
    fleet.store.ingest([_with_backlog("acme-gw", "acme-xuhui-1", s + 2, 2, 2),
                        _with_backlog("acme-gw", "acme-xuhui-1", s + 1, 40, 1)])
    assert _backlogs(client, token)["acme-gw"] == 2
    fleet.store.ingest([_with_backlog("acme-gw", "acme-xuhui-1", s - 500, 99, 3)])  # an old one, late
    assert _backlogs(client, token)["acme-gw"] == 2
    detail = client.get("/api/v1/lines/acme-xuhui-1", headers={"Authorization": f"Bearer {token}"}).json()
    assert {a["agent_id"]: a["spool_backlog"] for a in detail["agents"]}["acme-gw"] == 2
    fleet.store.ingest([_with_backlog("acme-gw", "acme-xuhui-1", s + 3, None, 4)])  # newest says nothing
    assert _backlogs(client, token)["acme-gw"] is None


def test_an_impossible_backlog_is_dropped_and_the_batch_still_stores(fleet: Any) -> None:
    client = TestClient(create_app(fleet.engine, console=False))
    token = fleet.tokens["operator"]
    s = _base_seq(fleet)
    # the wire model already refuses metrics beyond 1e15; the largest it lets through fits the column
    stored = fleet.store.ingest([_with_backlog("acme-gw", "acme-xuhui-1", s, 1e15, 10),
                                 _with_backlog("tel-gw", "tel-jingan-1", s, -5, 10),
                                 _with_backlog("bravo-gw", "bravo-pudong-1", s, 12, 10)])
    assert len(stored) == 3
    got = _backlogs(client, token)
    assert got["acme-gw"] == 10 ** 15 and got["tel-gw"] is None and got["bravo-gw"] == 12
