"""Where every command leaves for the broker, a person's (desk.py) or a rule's re-test (queue.py).

Kept free of the collector config (collector/config.py imports the rules, which import the outbox),
so both paths can share it without an import cycle.
"""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt

from linecheck.wire import Command, commands_topic

log = logging.getLogger("collector.commands")


def publish_nowait(client: mqtt.Client, agent_id: str, command: Command) -> mqtt.MQTTMessageInfo:
    """Hand one command to paho for `agent_id`'s command topic: QoS 1 and retained, so an agent that is
    briefly offline gets it when it reconnects. Every command, a person's or a rule's, leaves here."""
    return client.publish(commands_topic(agent_id), command.model_dump_json(by_alias=True), qos=1, retain=True)


def log_sent(command: Command, agent_id: str, requested_by: str) -> None:
    log.info("sent %s command %s to %s (requested by %s; %s)", command.action, command.command_id, agent_id,
             requested_by, command.reason or "no reason given")
