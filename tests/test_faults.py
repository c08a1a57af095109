"""Fault injection on real processes: one round of each scenario (bench/faults.py loops them).

Each prints `sent, receipted, stored, lost, duplicates_stored, evicted` and asserts that nothing the
agent committed to its spool is lost (unless the spool deliberately evicted it, counted) and that
nothing is stored twice.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.faultkit import SCENARIOS, Rig, Tally

pytestmark = pytest.mark.broker


@pytest.fixture
def rig(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it when run as root)")
    r = Rig(tmp_path, **getattr(request, "param", {}))
    yield r
    r.close()


def _check(name: str, t: Tally, evicted: bool = False) -> None:
    print(t.line(name))
    assert t.lost == 0, t.line(name)
    assert t.duplicates_stored == 0, t.line(name)
    assert t.sent > 0 and t.stored + t.evicted >= t.sent
    if not evicted:
        assert t.evicted == 0 and t.stored == t.sent and t.receipted == t.sent, t.line(name)


def test_agent_kill_9_mid_publish(rig: Rig) -> None:
    _check("agent_kill_9_mid_publish", SCENARIOS["agent_kill_9_mid_publish"](rig))


def test_collector_kill_9_mid_commit(rig: Rig) -> None:
    t = SCENARIOS["collector_kill_9_mid_commit"](rig)
    assert rig.collector is not None and rig.collector.poll() is None
    _check("collector_kill_9_mid_commit", t)


def test_broker_kill_9_and_restart(rig: Rig) -> None:
    _check("broker_kill_9_and_restart", SCENARIOS["broker_kill_9_and_restart"](rig))


def test_broker_unreachable_for_14_simulated_days(rig: Rig) -> None:
    t = SCENARIOS["broker_unreachable_14_days"](rig)
    _check("broker_unreachable_14_days", t)
    assert t.sent == 14 * 24
    with sqlite3.connect(rig.db) as db:  # the agent's clock really spanned two weeks
        first, last = db.execute("SELECT min(started_at), max(started_at) FROM results").fetchone()
    assert (datetime.fromisoformat(last) - datetime.fromisoformat(first)).days >= 13


@pytest.mark.parametrize("rig", [{"spool": "max_age_days: 7"}], indirect=True)
def test_offline_beyond_the_age_bound_evicts_only_the_oldest(rig: Rig) -> None:
    t = SCENARIOS["broker_unreachable_14_days"](rig)
    _check("broker_unreachable_14_days_max_age_7", t, evicted=True)
    # Results older than 7 simulated days went (counted); the last week arrived.
    assert 7 * 24 - 2 <= t.evicted <= 7 * 24 + 2 and t.stored == t.sent - t.evicted


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs for the agent's data_dir: a real ENOSPC, not only the byte bound."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_on_the_agent_spool(tmp_path: Path, small_disk: Path) -> None:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed")
    rig = Rig(tmp_path / "rig", data_dir=small_disk / "agent-data", spool="min_free_bytes: 65536")
    try:
        t = SCENARIOS["disk_full_on_agent_spool"](rig)
    finally:
        rig.close()
    _check("disk_full_on_agent_spool", t, evicted=True)
    assert t.evicted > 0  # 300 results of ~2 KB do not fit in 1 MB


def test_duplicate_delivery(rig: Rig) -> None:
    _check("duplicate_delivery", SCENARIOS["duplicate_delivery"](rig))


def test_collector_restart_with_backlog(rig: Rig) -> None:
    _check("collector_restart_with_backlog", SCENARIOS["collector_restart_with_backlog"](rig))
