"""A refused SUBSCRIBE (a cluster electing after a node's loss answers 0x80) must not leave the agent deaf
to receipts for the rest of its connection: it asks again. Scripted broker, exact packets; also the QoS the
agent subscribes with (`mqtt.subscribe_qos`: 0 on a NATS cluster)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from linecheck.wire import commands_topic, receipts_topic
from tests.fakebroker import CONNECT, SUBSCRIBE, FakeBroker
from tests.test_publisher_protocol import AGENT, Agent, _ack_status, _cfg


@pytest.fixture
def fake() -> Iterator[FakeBroker]:
    with FakeBroker() as broker:
        yield broker


@pytest.mark.parametrize("qos", [0, 1])
def test_refused_subscription_is_asked_again(tmp_path: Path, fake: FakeBroker, qos: int) -> None:
    agent = Agent(_cfg(tmp_path, fake.port, subscribe_qos=qos))
    try:
        agent.publisher.start()
        conn = fake.accept()
        conn.auto = _ack_status
        conn.expect(CONNECT)
        conn.connack(0, False)
        first = conn.expect(SUBSCRIBE)
        assert first.subscriptions == [(receipts_topic(AGENT), qos), (commands_topic(AGENT), qos)]
        conn.suback(first.mid or 0, [0x80, 0x80])  # refused
        again = conn.expect(SUBSCRIBE, timeout=10)  # on the same connection, after a jittered wait
        assert again.subscriptions == first.subscriptions and again.mid != first.mid
        conn.suback(again.mid or 0, [qos, qos])
        with pytest.raises(queue.Empty):
            conn.next(timeout=1.0)  # granted: no third request
    finally:
        agent.close()
