"""A refused subscription is asked for again on the same connection: a cluster electing after a node's loss
refuses for seconds, and before this the collector stayed deaf (and /healthz said "not subscribed") until its
next reconnect. A scripted broker refuses the first SUBSCRIBE and grants the second (Mosquitto 2.0 grants
ACL-denied subscriptions, so it cannot play the refusing broker)."""

from __future__ import annotations

import threading
from pathlib import Path

from collector.config import CollectorConfig
from collector.ingest.worker import Ingestor
from collector.store.database import Store
from linecheck.wire import ALL_RESULTS, ALL_STATUS
from tests.fakebroker import CONNECT, SUBSCRIBE, FakeBroker
from tests.helpers import wait_for


def test_refused_subscription_is_asked_again_until_granted(tmp_path: Path) -> None:
    with FakeBroker() as fake:
        cfg = CollectorConfig.model_validate({"database": f"sqlite:///{tmp_path}/c.db",
                                              "mqtt": {"port": fake.port, "keepalive_s": 60}})
        store = Store(cfg.database)
        ingestor = Ingestor(cfg, store)
        thread = threading.Thread(target=ingestor.run, daemon=True)
        thread.start()
        try:
            conn = fake.accept()
            conn.expect(CONNECT)
            conn.connack(0, False)
            first = conn.expect(SUBSCRIBE)
            assert first.subscriptions == [(ALL_RESULTS, 1), (ALL_STATUS, 1)]
            conn.suback(first.mid or 0, [0x80, 1])  # results refused
            wait_for(ingestor.connected.is_set, 10, "connected")
            assert "broker connected but not subscribed" in ingestor.health().problems()
            again = conn.expect(SUBSCRIBE, timeout=15)  # same connection, a few seconds later
            assert again.subscriptions == first.subscriptions
            conn.suback(again.mid or 0, [1, 1])
            wait_for(ingestor.subscribed.is_set, 10, "subscribed once granted")
            assert ingestor.health().problems() == []
        finally:
            ingestor.stop()
            thread.join(10)
            store.close()
