"""The supervising process's own MQTT connection under `serve --workers N`: commands from the API and the
background outbox leave on it (in one process they leave on ingest's connection, collector/commands/desk.py).
It subscribes to nothing; it connects with the collector's identity as `<client_id>-ctl` and fails over
between the brokers of `mqtt.brokers` like ingest does."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from collector.config import CollectorConfig
from collector.ingest.broker_link import BrokerLink
from linecheck.mqtt_client import Failover, build_client


class CommandLink:
    """Has what the command desk needs of an ingest connection: `client` and `connected`."""

    def __init__(self, cfg: CollectorConfig, client_id: str):
        m = cfg.mqtt
        self.connected = threading.Event()
        self.failover = Failover(m.addresses())
        self.link = BrokerLink(*self.failover.current)
        self.client = build_client(client_id, username=m.username, password_file=m.password_file,
                                   ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file,
                                   reconnect_delay_s=(1, 30))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._keepalive = m.keepalive_s

    def start(self) -> None:
        host, port = self.failover.current
        self.client.connect_async(host, port, keepalive=self._keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, _c: mqtt.Client, _ud: object, _flags: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            self.link.refused(reason)
            return
        self.connected.set()
        self.link.connected()

    def _on_disconnect(self, client: mqtt.Client, _ud: object, _flags: object, reason: object, _p: object) -> None:
        self.connected.clear()
        self.link.disconnected(reason)
        self._advance(client)

    def _on_connect_fail(self, client: mqtt.Client, _ud: object) -> None:
        self.link.connect_failed()
        self._advance(client)

    def _advance(self, client: mqtt.Client) -> None:
        host, port = self.failover.advance(client)
        self.link.address = f"{host}:{port}"
