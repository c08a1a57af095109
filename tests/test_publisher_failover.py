"""The agent with several broker addresses (`mqtt.brokers`, the nodes of a clustered broker): an address that
does not answer is skipped, and a lost broker sends the agent to the next one, where what was not receipted
is published again. Two real Mosquittos stand in for two nodes (tests/test_cluster.py runs a real cluster)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from linecheck.wire import ResultEnvelope, receipts_topic
from tests.faultkit import Watcher, make_envelope
from tests.helpers import wait_for
from tests.mosquitto import Broker, free_port
from tests.test_publisher import Running, _cfg

pytestmark = pytest.mark.broker
if not shutil.which("mosquitto"):
    pytest.skip("mosquitto is not installed (scripts/test.sh installs it when run as root)", allow_module_level=True)


def test_agent_skips_a_dead_node_and_moves_when_its_node_is_lost(tmp_path: Path) -> None:
    dead_port = free_port()  # node 1: nothing listens (yet)
    (tmp_path / "b2").mkdir()
    (tmp_path / "b1").mkdir()
    node2 = Broker(tmp_path / "b2")
    node2.start()
    node1 = Broker(tmp_path / "b1")
    node1.port = dead_port
    cfg = _cfg(tmp_path, 1, brokers=[f"127.0.0.1:{dead_port}", f"127.0.0.1:{node2.port}"],
               resend_after_s=0.5, resend_max_s=1)
    watcher2 = Watcher(node2.port, "linecheck/v1/agents/+/results", client_id="w2")
    watcher1 = None
    try:
        with Running(cfg) as run:
            wait_for(run.publisher.connected.is_set, 20, "the agent on the live node")
            assert run.publisher.failover.current == ("127.0.0.1", node2.port)
            first = run.spool.enqueue(make_envelope("pub-gw", 1)).result_id
            run.publisher.wake.set()
            wait_for(lambda: watcher2.payloads("/results"), 10, "the result on node 2")
            # Node 2 is killed; node 1 comes up. The agent moves there and re-sends the un-receipted result.
            node1.start()
            watcher1 = Watcher(node1.port, "linecheck/v1/agents/+/results", client_id="w1")
            watcher2.client.loop_stop()
            node2.stop(kill=True)
            wait_for(lambda: watcher1.payloads("/results"), 30, "the result re-sent on node 1")
            assert ResultEnvelope.from_json(watcher1.payloads("/results")[0]).result_id == first
            assert run.publisher.failover.current == ("127.0.0.1", node1.port)
            watcher1.publish(receipts_topic("pub-gw"), f'{{"result_ids": ["{first}"], "status": "stored"}}')
            wait_for(lambda: run.spool.count() == 0, 10, "the receipt from node 1 emptying the spool")
    finally:
        if watcher1 is not None:
            watcher1.close()
        node1.stop()
        node2.stop()
