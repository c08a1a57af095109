"""Publish spooled results over MQTT and delete them only when the collector's receipt arrives.

A PUBACK only means the broker took the message; the receipt, sent by the collector after its
database commit, is what lets a result leave the spool. Un-receipted results are re-sent after
`resend_after_s`; the collector's idempotent insert absorbs the duplicates this can cause.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from agent.config import AgentConfig
from agent.spool import Spool
from linecheck.wire import Command, Receipt, commands_topic, receipts_topic, results_topic, status_topic

log = logging.getLogger(__name__)


def make_client(cfg: AgentConfig) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.agent_id, clean_session=True)
    m = cfg.mqtt
    if m.username:
        password = m.password_file.read_text().strip() if m.password_file else None
        client.username_pw_set(m.username, password)
    if m.tls:
        client.tls_set(ca_certs=str(m.tls.ca_file),
                       certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                       keyfile=str(m.tls.key_file) if m.tls.key_file else None,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_inflight_messages_set(m.max_inflight)
    # Retained status with a Last Will: the collector sees "offline" when the agent vanishes.
    client.will_set(status_topic(cfg.agent_id), b'{"state":"offline"}', qos=1, retain=True)
    return client


class Publisher:
    def __init__(self, cfg: AgentConfig, spool: Spool, on_command: Callable[[Command], None] | None = None):
        self.cfg = cfg
        self.spool = spool
        self.on_command = on_command
        self.client = make_client(cfg)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.wake = threading.Event()
        self.receipts = 0

    # --- paho callbacks (network thread: keep them short) ---------------------------------------
    def _on_connect(self, client: mqtt.Client, _ud: object, _flags: object, reason: object, _props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        client.subscribe([(receipts_topic(self.cfg.agent_id), 1), (commands_topic(self.cfg.agent_id), 1)])
        client.publish(status_topic(self.cfg.agent_id), b'{"state":"online"}', qos=1, retain=True)
        # Whatever was in flight on the old connection may be lost: make it all due again.
        self.spool.unsend_all()
        self.connected.set()
        self.wake.set()
        log.info("connected to %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)

    def _on_disconnect(self, _c: mqtt.Client, _ud: object, _flags: object, reason: object, _p: object) -> None:
        self.connected.clear()
        log.info("disconnected from broker: %s", reason)

    def _on_message(self, _c: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == receipts_topic(self.cfg.agent_id):
            try:
                receipt = Receipt.model_validate_json(msg.payload)
            except ValidationError as exc:
                log.warning("ignoring malformed receipt: %s", exc.errors()[:1])
                return
            self.receipts += self.spool.acknowledge(receipt.result_ids)
            self.wake.set()
        elif msg.topic == commands_topic(self.cfg.agent_id) and self.on_command:
            try:
                command = Command.model_validate_json(msg.payload)
            except ValidationError as exc:
                log.warning("ignoring malformed command: %s", exc.errors()[:1])
                return
            self.on_command(command)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.client.reconnect_delay_set(1, 120)
        self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=self.cfg.mqtt.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        if self.connected.is_set():
            self.client.publish(status_topic(self.cfg.agent_id), b'{"state":"offline"}', qos=1,
                                retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def pump(self) -> int:
        """Publish what is due, up to the in-flight bound. Returns how many were handed to paho."""
        if not self.connected.is_set():
            return 0
        due = self.spool.due(self.cfg.mqtt.max_inflight, self.cfg.mqtt.resend_after_s)
        topic = results_topic(self.cfg.agent_id)
        sent: list[str] = []
        for item in due:
            info = self.client.publish(topic, item.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            sent.append(item.result_id)
        self.spool.mark_sent(sent)
        return len(sent)

    def run(self, stop: threading.Event, poll_s: float = 5.0) -> None:
        """Pump until `stop` is set; wakes on receipts, connects and new results."""
        while not stop.is_set():
            self.pump()
            self.wake.wait(poll_s)
            self.wake.clear()
