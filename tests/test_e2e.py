"""End to end on a real Mosquitto: agent daemon → broker → collector → SQLite → receipt → spool empty."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.spool import Spool
from tests.helpers import agent_config, collector_config, start, stop, wait_for
from tests.mosquitto import Broker

pytestmark = pytest.mark.broker


def _stored(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT result_id, seq FROM results ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def test_result_travels_to_collector_and_leaves_spool_on_receipt(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    ccfg = collector_config(tmp_path, broker.port)
    acfg = agent_config(tmp_path, broker.port)
    spool_path = tmp_path / "e2e-gw-data" / "spool.sqlite"
    collector = start("collector.cli", "serve", "--config", str(ccfg), log=tmp_path / "collector.log")
    agent = start("agent.cli", "run", "--config", str(acfg), log=tmp_path / "agent.log")
    try:
        rows = wait_for(lambda: _stored(db), 30, "the scheduled result in the collector's database")
        assert len(rows) == 1 and rows[0][1] == 1
        # The receipt reaches the agent after the commit and the spool empties.
        wait_for(lambda: Spool(spool_path).count() == 0, 20, "the spool to empty after the receipt")

        # With the collector stopped, a new result stays spooled: PUBACK alone deletes nothing.
        stop(collector)
        out = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--json", "--config", str(acfg)],
                             capture_output=True, text=True)
        assert out.returncode in (0, 1, 3), out.stderr
        wait_for(lambda: Spool(spool_path).due(10, resend_after_s=3600) == [], 20, "the agent to publish")
        assert Spool(spool_path).count() == 1
        assert len(_stored(db)) == 1

        # The collector comes back and drains it: stored once, spool empty.
        collector = start("collector.cli", "serve", "--config", str(ccfg), log=tmp_path / "collector.log")
        wait_for(lambda: len(_stored(db)) == 2, 30, "the backlog to be stored")
        wait_for(lambda: Spool(spool_path).count() == 0, 20, "the spool to empty")
        assert [seq for _, seq in _stored(db)] == [1, 2]
    finally:
        stop(agent)
        stop(collector)
