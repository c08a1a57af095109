"""Ingest: MQTT messages in, validated, committed in batches, then receipts out and PUBACKs sent.

paho's network thread only enqueues (`on_message` never blocks on the database). A worker
thread drains the queue in batches: validate → one transaction → receipts → manual PUBACKs.
A crash before the commit leaves the messages un-acked at the broker and un-receipted at the
agent, so they come again; the idempotent insert absorbs the repeat.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from collector.config import CollectorConfig
from collector.enrolment import revoked_agents
from collector.store import Quarantined, Store
from linecheck.wire import (
    ALL_RESULTS,
    ALL_STATUS,
    Receipt,
    ResultEnvelope,
    agent_from_topic,
    receipts_topic,
)

log = logging.getLogger(__name__)


@dataclass
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    arrived: float = field(default_factory=time.monotonic)  # for the receipt-latency metric


@dataclass
class Verdict:
    """What validation made of one message: an envelope to store, or a reason to quarantine."""

    envelope: ResultEnvelope | None
    reason: str | None
    agent_id: str | None
    result_id: str | None  # known even for some bad messages, so the agent can stop re-sending


def validate(topic: str, payload: bytes, max_bytes: int) -> Verdict:
    agent_id = agent_from_topic(topic)
    if agent_id is None:
        return Verdict(None, f"topic {topic!r} does not name a valid agent", None, None)
    if len(payload) > max_bytes:
        return Verdict(None, f"payload of {len(payload)} bytes exceeds the {max_bytes}-byte limit", agent_id, None)
    try:
        envelope = ResultEnvelope.from_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        reason = f"schema: {where}: {first['msg']}{more}"
        return Verdict(None, reason, agent_id, _result_id_of(payload))
    if envelope.agent_id != agent_id:
        # Topic identity comes from the broker's authentication; the payload's is only a claim.
        return Verdict(None, f"payload claims agent {envelope.agent_id!r} on {agent_id!r}'s topic",
                       agent_id, envelope.result_id)
    return Verdict(envelope, None, agent_id, envelope.result_id)


def _result_id_of(payload: bytes) -> str | None:
    try:
        rid = json.loads(payload).get("result_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return rid if isinstance(rid, str) and len(rid) <= 64 else None


class Ingestor:
    def __init__(self, cfg: CollectorConfig, store: Store):
        self.cfg = cfg
        self.store = store
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=cfg.ingest.queue_max)
        self.stop_event = threading.Event()
        self.client = self._make_client()
        self.revoked: set[str] = set()
        self._revoked_read_at = -1e9
        self.stored = 0
        self.duplicates = 0
        self.quarantined = 0
        # Called after each batch's receipts: (stored, duplicates, quarantined, receipt latencies in s).
        self.on_batch: Callable[[int, int, int, Sequence[float]], None] | None = None

    def _make_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        # Persistent session + manual ack: messages not yet committed are redelivered after a crash.
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id, clean_session=False,
                             manual_ack=True)
        if m.username:
            client.username_pw_set(m.username, m.password_file.read_text().strip() if m.password_file else None)
        if m.ca_file:
            client.tls_set(ca_certs=str(m.ca_file), certfile=str(m.cert_file) if m.cert_file else None,
                           keyfile=str(m.key_file) if m.key_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        return client

    def _topic(self, topic: str) -> str:
        group = self.cfg.mqtt.shared_group
        return f"$share/{group}/{topic}" if group else topic

    def _on_connect(self, client: mqtt.Client, _ud: object, _flags: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the collector: %s", reason)
            return
        client.subscribe([(self._topic(ALL_RESULTS), 1), (ALL_STATUS, 1)])
        log.info("collector connected to %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)

    def _on_message(self, client: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            self._on_status(msg)
            client.ack(msg.mid, msg.qos)
            return
        # Blocks only when queue_max messages are waiting: back-pressure onto the broker.
        self.inbox.put(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    def _on_status(self, msg: mqtt.MQTTMessage) -> None:
        agent_id = agent_from_topic(msg.topic)
        try:
            state = json.loads(msg.payload).get("state")
        except (ValueError, AttributeError):
            state = None
        if agent_id and state in ("online", "offline"):
            try:
                self.store.set_agent_status(agent_id, state)
            except Exception:  # status is advisory; never let it stop the network thread
                log.exception("cannot record status of %s", agent_id)

    # --- worker ---------------------------------------------------------------------------------
    def _take_batch(self) -> list[Inbound]:
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.ingest.batch_wait_s
        while len(batch) < self.cfg.ingest.batch_max:
            try:
                batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _refresh_revoked(self, every_s: float = 30.0) -> None:
        if time.monotonic() - self._revoked_read_at >= every_s:
            self.revoked = revoked_agents(self.store.engine)
            self._revoked_read_at = time.monotonic()

    def process(self, batch: list[Inbound]) -> None:
        good: list[ResultEnvelope] = []
        bad: list[Quarantined] = []
        receipts: dict[str, dict[str, list[str]]] = {}
        self._refresh_revoked()
        for item in batch:
            v = validate(item.topic, item.payload, self.cfg.ingest.max_payload_bytes)
            if v.envelope is not None and v.agent_id in self.revoked:
                # The broker refuses revoked certificates; this catches what it accepted before the revocation.
                v = Verdict(None, f"agent {v.agent_id!r} is revoked", v.agent_id, v.result_id)
            if v.envelope is not None:
                good.append(v.envelope)
            else:
                assert v.reason is not None
                bad.append(Quarantined(item.topic, v.agent_id, v.reason,
                                       item.payload[: self.cfg.ingest.max_payload_bytes]))
                log.warning("quarantined message on %s: %s", item.topic, v.reason)
                if v.agent_id and v.result_id:
                    receipts.setdefault(v.agent_id, {}).setdefault("quarantined", []).append(v.result_id)
        new = self.store.ingest(good, bad)
        for e in good:
            status = "stored" if (e.agent_id, e.result_id) in new else "duplicate"
            receipts.setdefault(e.agent_id, {}).setdefault(status, []).append(e.result_id)
        self.stored += len(new)
        self.duplicates += len(good) - len(new)
        self.quarantined += len(bad)
        # Only now, after the commit: receipts to agents, then PUBACKs to the broker.
        for agent_id, by_status in receipts.items():
            for status, ids in by_status.items():
                payload = Receipt(result_ids=ids, status=status).model_dump_json(by_alias=True)  # type: ignore[arg-type]
                self.client.publish(receipts_topic(agent_id), payload, qos=1)
        for item in batch:
            self.client.ack(item.mid, item.qos)
        if self.on_batch is not None:
            done = time.monotonic()
            self.on_batch(len(new), len(good) - len(new), len(bad), [done - item.arrived for item in batch])

    def run(self) -> None:
        self.client.connect(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive_s)
        self.client.loop_start()
        try:
            while not self.stop_event.is_set():
                batch = self._take_batch()
                if batch:
                    self.process(batch)
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def stop(self) -> None:
        self.stop_event.set()
