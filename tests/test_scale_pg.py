"""Two collector processes in one shared-subscription group on PostgreSQL; one is SIGKILLed mid-run.

The agents (bench/fleet_sim.py: own ids, sequence numbers, per-agent in-flight windows) re-send what
is not receipted; the collectors ack and receipt only after their commit. So whatever the killed
collector had received but not committed, and whatever Mosquitto keeps handing its orphaned session,
reaches the survivor through a re-send: every result stored exactly once, every result receipted,
and each faulty line exactly one ticket of its class (the rules' per-line advisory locks).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.fleet_sim import TICKET_AFTER, FleetSim
from bench.pg_collectors import CollectorGroup
from tests.helpers import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.postgres]
AGENTS = 100
RESULTS = 800  # 8 per agent: enough for the default rules to open line_down (2 of 3) and high_latency (3 of 5)


@pytest.fixture
def group(pg_url: str, tmp_path: Path) -> Iterator[CollectorGroup]:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it when run as root)")
    g = CollectorGroup(tmp_path, pg_url, batch_max=50)
    g.start_broker()
    yield g
    g.close()


def test_sigkill_of_one_of_two_collectors_loses_nothing_and_tickets_stay_single(group: CollectorGroup) -> None:
    c1, c2 = group.start_all(2)
    sim = FleetSim("127.0.0.1", group.broker.port, AGENTS, resend_after_s=1.0, resend_max_s=4.0,
                   down_every=10, latency_every=10, prefix="kill")
    try:
        sim.connect()
        sim.preload(RESULTS)
        sim.run(200)  # paced over 4 s, so that the kill falls mid-run on any machine
        wait_for(lambda: group.stored() >= RESULTS * 0.3, 60, "a third of the results stored")
        group.kill(c1)
        killed_at = group.stored()
        assert killed_at < RESULTS, "everything was stored before the kill: the scenario was not exercised"
        wait_for(lambda: sim.outstanding() == 0, 75, f"every result receipted ({sim.counts()})")
    finally:
        sim.close()
    counts = sim.counts()
    db = group.counts()
    print(f"killed {c1} at {killed_at}/{RESULTS} stored; sim {counts}; rows={db.rows} distinct={db.distinct}")
    assert group.alive() == [c2]
    assert counts["receipted"] == counts["sent"] == RESULTS
    assert counts["resent"] > 0  # un-receipted results had to come again
    assert counts.get("quarantined", 0) == 0
    assert db.rows == db.distinct == RESULTS  # nothing lost, nothing stored twice
    expected = {(a.line_id, a.profile) for a in sim.agents if a.profile in TICKET_AFTER}
    assert len(expected) == 20
    assert db.tickets == dict.fromkeys(expected, 1)
    log = group.log(c2).read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def expiring_group(pg_url: str, tmp_path: Path) -> Iterator[CollectorGroup]:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it when run as root)")
    g = CollectorGroup(tmp_path, pg_url, batch_max=50, session_expiry_s=15)
    g.start_broker()
    yield g
    g.close()


def _burst(group: CollectorGroup, prefix: str, n: int) -> FleetSim:
    # No re-send within the test: whatever is stored got there on its first publication.
    sim = FleetSim("127.0.0.1", group.broker.port, 50, resend_after_s=600, prefix=prefix)
    sim.connect()
    sim.preload(n)
    sim.run()
    return sim


def test_session_expiry_keeps_a_restart_lossless_and_takes_a_dead_collector_out_of_the_group(
        expiring_group: CollectorGroup) -> None:
    group = expiring_group
    c1, c2 = group.start_all(2)
    # Killed and back within session_expiry_s: its session kept the share Mosquitto gave it meanwhile.
    group.kill(c1)
    sim = _burst(group, "restart", 100)
    try:
        assert sim.wait_published(15)
        group.start(c1)
        assert sim.wait_receipts(30), sim.counts()
    finally:
        sim.close()
    assert sim.counts()["resent"] == 0 and group.stored() == 100
    # Killed for good: once its session expires, every new result goes to the survivor at once.
    group.kill(c1)
    wait_for(lambda: group.session_expired(c1), 30, f"the broker to expire {c1}'s session")
    sim = _burst(group, "after", 100)
    try:
        assert sim.wait_receipts(30), sim.counts()
    finally:
        sim.close()
    assert sim.counts()["resent"] == 0
    db = group.counts()
    assert db.rows == db.distinct == 200 and group.alive() == [c2]
