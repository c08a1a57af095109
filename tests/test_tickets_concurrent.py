"""Two collector processes ingest the same fleet at the same time into one PostgreSQL database:
each fault of each line ends with exactly one ticket (and every result is stored once).

The collectors share the subscription (the documented scale-out), so consecutive results of one
line land on different collectors and both evaluate the same line's rules at once; then every
result is published again (agents re-send when a receipt is late) to add duplicates."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, func, select

from collector.store import schema as t
from linecheck.wire import Receipt, results_topic
from tests.factory import envelope, finding, link_check, ping_check
from tests.helpers import start, stop, wait_for
from tests.mosquitto import Broker

pytestmark = [pytest.mark.broker, pytest.mark.postgres]
LINES = 25


def test_two_collectors_open_exactly_one_ticket_per_fault(broker: Broker, pg_url: str, tmp_path: Path) -> None:
    collectors = []
    for name in ("c1", "c2"):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(f"database: {pg_url}\nmqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: {name}, "
                       "shared_group: collectors}\nhttp: {enabled: false}\n"
                       "ingest: {batch_max: 20, batch_wait_s: 0.01}\n")
        collectors.append((name, start("collector.cli", "serve", "--config", str(cfg), log=tmp_path / f"{name}.log")))
    receipts: Counter[str] = Counter()
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            receipts.update(Receipt.model_validate_json(msg.payload).result_ids)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-sim")
    client.on_message = on_message
    try:
        for name, _ in collectors:
            wait_for(lambda n=name: "collector connected" in (tmp_path / f"{n}.log").read_text(), 30, f"{name}")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.subscribe("linecheck/v1/agents/+/receipts", qos=1)
        sent = []
        payloads = []
        # Three results per line, interleaved across lines: line down and weak WiFi, two faults each
        # (packet loss too, but the rules mask it while the line is down).
        for _round in range(3):
            for i in range(LINES):
                e = envelope(f"gw-{i}", f"line-{i}", [link_check(up=False), ping_check(loss_pct=100)],
                             [finding("line_down"), finding("wifi_weak"), finding("packet_loss")])
                sent.append(e.result_id)
                payloads.append((results_topic(e.agent_id), e.to_json()))
        for topic, payload in payloads + payloads:
            client.publish(topic, payload, qos=1)
        wait_for(lambda: all(receipts[r] >= 2 for r in sent), 60, "a receipt for every result, twice")
    finally:
        client.loop_stop()
        client.disconnect()
        for _, proc in collectors:
            stop(proc)
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.results)).scalar() == 3 * LINES
            rows = conn.execute(select(t.tickets.c.line_id, t.tickets.c.fault_class)).all()
        per_fault = Counter((r.line_id, r.fault_class) for r in rows)
    finally:
        engine.dispose()
    assert set(per_fault.values()) == {1}, per_fault.most_common(3)
    assert sorted(per_fault) == sorted((f"line-{i}", c) for i in range(LINES) for c in ("line_down", "wifi_weak"))
    for name, _ in collectors:
        log = (tmp_path / f"{name}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        assert "opened: " in log, f"{name} opened no ticket: the race was not exercised"
