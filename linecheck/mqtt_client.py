"""One MQTT client builder for the agent's publisher, the collector's ingest and its command sender.

Client id, protocol and session, the username with its password file, TLS files and paho's
reconnect delays are set here once; what differs between the callers (a clean session for the
agent and the command identity, a persistent or expiring session with manual acks for ingest) is a
parameter each caller states. Callbacks, the Last Will and the in-flight window stay with the caller.

Only paho is imported, and without dnspython (see `_import_paho_without_dnspython`): the agent's
daemon stays small (tests/test_checkproc.py guards what it loads).
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path


def _import_paho_without_dnspython() -> None:
    """paho imports dnspython, when installed, only for Client.connect_srv(), which nothing here
    calls; that import is ~4 MB of an agent daemon that should stay under 35 MB (docs/scaling.md).
    Hide dnspython while paho loads (paho then sets HAVE_DNS = False); the agent's dns check imports
    it later in its own process. A no-op where dnspython or paho is loaded already."""
    if "paho.mqtt.client" in sys.modules or "dns.resolver" in sys.modules:
        return
    sys.modules["dns.resolver"] = None  # type: ignore[assignment]  # makes `import dns.resolver` fail
    try:
        import paho.mqtt.client  # noqa: F401
    finally:
        del sys.modules["dns.resolver"]


_import_paho_without_dnspython()

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402


def build_client(client_id: str, *, clean_session: bool = True, mqtt5: bool = False, manual_ack: bool = False,
                 username: str | None = None, password_file: Path | None = None,
                 ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None,
                 reconnect_delay_s: tuple[int, int] | None = None) -> mqtt.Client:
    """A paho client (callback API 2), not yet connected.

    `mqtt5` selects MQTT 5, whose session lifetime is a CONNECT property (the caller's), so
    `clean_session` applies to MQTT 3.1.1 only. TLS is set up when `ca_file` is given; the client
    certificate and key are optional (a password broker over TLS). A password file is read (and
    stripped of its trailing newline) here, so an unreadable one fails before any connection.
    """
    if mqtt5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                             manual_ack=manual_ack)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                             manual_ack=manual_ack)
    if username:
        client.username_pw_set(username, password_file.read_text().strip() if password_file else None)
    if ca_file:
        client.tls_set(ca_certs=str(ca_file), certfile=str(cert_file) if cert_file else None,
                       keyfile=str(key_file) if key_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if reconnect_delay_s is not None:
        client.reconnect_delay_set(*reconnect_delay_s)
    return client


class Failover:
    """Several addresses of one clustered broker, tried in turn: a lost connection or a failed attempt
    moves the client to the next one, so the nodes that survive a node's loss take its clients.

    paho reconnects to the host and port it was given; its public setters refuse while its state still
    says connected, which it does inside the disconnect callback, so the next address is written to the
    two attributes paho's reconnect() reads (stable across paho 2.x; tests/test_cluster_failover.py)."""

    def __init__(self, addresses: list[tuple[str, int]]):
        if not addresses:
            raise ValueError("at least one broker address is needed")
        self.addresses = list(addresses)
        self.index = 0
        self.moves = 0  # times the client was moved to another address

    @property
    def current(self) -> tuple[str, int]:
        return self.addresses[self.index]

    def advance(self, client: mqtt.Client) -> tuple[str, int]:
        """Point `client` at the next address (a no-op with one); call from on_disconnect / on_connect_fail."""
        if len(self.addresses) > 1:
            self.index = (self.index + 1) % len(self.addresses)
            client._host, client._port = self.current
            self.moves += 1
        return self.current
