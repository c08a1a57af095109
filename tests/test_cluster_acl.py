"""Identity on the NATS cluster (collector/fleet/nats_config.py), against the real 3-node cluster: an agent may
publish only its own results and status and read only its own receipts and commands; a revoked agent is
cut off by a config reload, without a restart. Hostile: agent A tries to speak and listen as agent B."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed (scripts/setup.sh --test installs the cluster extra)")
if not shutil.which("nats-server"):
    pytest.skip("nats-server is not installed (scripts/setup.sh --test installs it)", allow_module_level=True)

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from collector.config import NatsConfig  # noqa: E402
from collector.fleet.nats_config import COLLECTOR_MQTT_IDENTITY, partition_of  # noqa: E402
from linecheck.wire import commands_topic, receipts_topic, results_topic, status_topic  # noqa: E402
from tests.helpers import wait_for  # noqa: E402
from tests.nats_cluster import COLLECTOR_PASSWORD, NatsCluster  # noqa: E402

pytestmark = pytest.mark.broker


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path, ["gw-a", "gw-b"], simulator=False)
    c.start()
    try:
        yield c
    finally:
        c.stop()


class Client:
    """One MQTT identity on one node: what it was granted, received and whether it is connected."""

    def __init__(self, cluster: NatsCluster, identity: str, node: int):
        ident = cluster.identity(identity)
        self.received: list[tuple[str, bytes]] = []
        self.subacks: list[list[bool]] = []
        self.connected = threading.Event()
        self.refused: list[object] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{identity}-test", clean_session=True)
        self.client.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
                            tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda _c, _u, _m, rcs, _p: self.subacks.append([not r.is_failure for r in rcs])
        self.client.connect("127.0.0.1", cluster.nodes[node].mqtt_port, keepalive=10)
        self.client.loop_start()
        wait_for(self.connected.is_set, 20, f"{identity} connected")

    def _on_connect(self, _c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            self.refused.append(reason)
        else:
            self.connected.set()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _create_stream(cluster: NatsCluster) -> None:
    import nats

    from collector.ingest.jetstream import ensure_stream

    async def go() -> None:
        nc = await nats.connect(cluster.nats_urls, user="linecheck-collector", password=COLLECTOR_PASSWORD)
        await ensure_stream(nc.jetstream(), NatsConfig(partitions=cluster.partitions, replicas=3), 1000)
        await nc.close()
    asyncio.run(go())


def test_agent_cannot_publish_or_read_as_another_and_revocation_needs_no_restart(cluster: NatsCluster) -> None:
    _create_stream(cluster)
    a = Client(cluster, "gw-a", node=0)
    b = Client(cluster, "gw-b", node=1)
    collector = Client(cluster, COLLECTOR_MQTT_IDENTITY, node=2)
    try:
        # Listening as B: refused by the broker; A's own topics granted.
        a.client.subscribe([(receipts_topic("gw-a"), 1), (receipts_topic("gw-b"), 1), (commands_topic("gw-b"), 1),
                            ("linecheck/v1/agents/+/receipts", 1), ("#", 1), ("$MQTT/sub/#", 1)])
        b.client.subscribe([(receipts_topic("gw-b"), 1)])
        wait_for(lambda: len(a.subacks) == 1 and len(b.subacks) == 1, 10, "SUBACKs")
        assert a.subacks[0] == [True, False, False, False, False, False]
        # Speaking as B: B's results (the mapped partition subject), B's status, a partition subject written
        # directly: none reaches the stream. Then A's own result, on the same connection (so after them).
        a.publish(results_topic("gw-b"), b'{"forged": true}')
        a.publish(status_topic("gw-b"), b'{"state":"offline"}')
        a.publish(f"lcr/{partition_of('gw-b', cluster.partitions)}/gw-b", b'{"forged": 2}')
        a.publish(results_topic("gw-a"), b'{"own": true}')
        b.publish(results_topic("gw-b"), b'{"own": "b"}')
        expected = sorted([f"lcr.{partition_of('gw-a', cluster.partitions)}.gw-a",
                           f"lcr.{partition_of('gw-b', cluster.partitions)}.gw-b"])
        assert wait_for(lambda: sorted(cluster.stream_subjects()) == expected or None, 20, "both own results")
        # The collector's receipt to B reaches B and nobody else.
        collector.publish(receipts_topic("gw-b"), b'{"result_ids": ["x"], "status": "stored"}')
        wait_for(lambda: b.received, 10, "B's receipt")
        assert b.received == [(receipts_topic("gw-b"), b'{"result_ids": ["x"], "status": "stored"}')]
        assert a.received == []
        # A retained command (the command desk publishes them retained, QoS 1) reaches B when B subscribes
        # later, at QoS 0 as agents do on NATS; A, refused B's topics above, gets nothing.
        collector.client.publish(commands_topic("gw-b"), b'{"command": "check_now"}', qos=1,
                                 retain=True).wait_for_publish(10)
        b.client.subscribe([(commands_topic("gw-b"), 0)])
        wait_for(lambda: len(b.received) == 2, 10, "B's retained command")
        assert b.received[1] == (commands_topic("gw-b"), b'{"command": "check_now"}')
        assert a.received == []

        # Revocation: A leaves the users, every node re-reads its config (SIGHUP): A is cut off, B is not.
        cluster.fleet.revoked.add("gw-a")
        cluster.reload()
        wait_for(lambda: not a.connected.is_set(), 20, "A disconnected by the reload")
        assert b.connected.is_set()
        a.close()
        again = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-a-again", clean_session=True)
        ident = cluster.identity("gw-a")
        again.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        outcome: list[object] = []
        again.on_connect = lambda _c, _u, _f, reason, _p: outcome.append(reason)
        again.on_disconnect = lambda *_: outcome.append("closed")
        try:
            again.connect("127.0.0.1", cluster.nodes[0].mqtt_port, keepalive=10)
            again.loop_start()
            wait_for(lambda: outcome, 10, "the revoked agent's connection answered")
        except OSError:
            outcome.append("closed")
        finally:
            again.loop_stop()
        assert outcome[0] == "closed" or getattr(outcome[0], "is_failure", False), outcome
    finally:
        for c in (a, b, collector):
            c.close()
