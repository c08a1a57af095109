"""Remote "check now" / "retest": a command on each of the line's agents' command topics.

The API only decides who may ask and for which line; sending goes through a `CommandSender`
so the collector's MQTT connection (or the scheduler's command module) does the delivery.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from linecheck.wire import Command, commands_topic

COMMAND_TTL = timedelta(minutes=15)


class CommandSender(Protocol):
    def __call__(self, agent_id: str, action: str, checks: list[str] | None, reason: str | None) -> str:
        """Send one command to one agent; returns its command id."""
        ...


def mqtt_sender(publish: Callable[[str, bytes], object]) -> CommandSender:
    """A sender over an MQTT client's publish (topic, payload); QoS and retries are the client's."""

    def send(agent_id: str, action: str, checks: list[str] | None, reason: str | None) -> str:
        command = Command(command_id=f"cmd-{secrets.token_hex(8)}", action=action,  # type: ignore[arg-type]
                          checks=checks, expires_at=datetime.now(UTC) + COMMAND_TTL, reason=reason)
        publish(commands_topic(agent_id), command.model_dump_json(by_alias=True).encode())
        return command.command_id

    return send
