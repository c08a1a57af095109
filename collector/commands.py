"""Send a remote command ("check now", "retest") to one agent's command topic.

The collector's broker identity is the only one the broker ACL lets publish on agents' command
topics (issue 11's broker config). The command is retained with QoS 1 so an agent that is
briefly offline still gets it when it reconnects; it carries an expiry, after which the agent
ignores it, and an id the agent de-duplicates on, so a retained copy never runs twice.
"""

from __future__ import annotations

import secrets
import ssl
from datetime import timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.config import CollectorConfig
from linecheck.wire import Command, commands_topic, new_result_id, utcnow, valid_id


class CommandError(RuntimeError):
    """The command could not be handed to the broker."""


def make_command(action: str, checks: list[str] | None = None, ttl_s: float = 3600.0,
                 reason: str | None = None) -> Command:
    return Command(command_id=new_result_id(), action=action, checks=checks or None,  # type: ignore[arg-type]
                   expires_at=utcnow() + timedelta(seconds=ttl_s), reason=reason)


def send_command(cfg: CollectorConfig, agent_id: str, command: Command, timeout_s: float = 10.0) -> None:
    """Publish `command` to `agent_id`'s command topic and wait for the broker's PUBACK."""
    if not valid_id(agent_id):
        raise CommandError(f"invalid agent id {agent_id!r}: letters, digits, '_' and '-' only")
    m = cfg.mqtt
    # Its own client id: reusing the ingest's would make the broker disconnect the running collector.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{m.client_id}-cmd-{secrets.token_hex(4)}",
                         clean_session=True)
    if m.username:
        client.username_pw_set(m.username, m.password_file.read_text().strip() if m.password_file else None)
    if m.ca_file:
        client.tls_set(ca_certs=str(m.ca_file), certfile=str(m.cert_file) if m.cert_file else None,
                       keyfile=str(m.key_file) if m.key_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))

    client.on_connect = on_connect
    try:
        client.connect(m.host, m.port, keepalive=m.keepalive_s)
    except OSError as exc:
        raise CommandError(f"cannot reach the broker at {m.host}:{m.port}: {exc}") from exc
    client.loop_start()
    try:
        info = client.publish(commands_topic(agent_id), command.model_dump_json(by_alias=True), qos=1, retain=True)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise CommandError(f"publishing failed: {exc}") from exc
        if refused:
            raise CommandError(f"the broker refused the collector's connection: {refused[0]}")
        if not info.is_published():
            raise CommandError(f"the broker did not acknowledge the command within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
