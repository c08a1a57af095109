"""Remote "check now" / "retest" from the API and console: who may ask is decided there, delivery here.

Delivery is collector/commands.py (retained QoS 1 command with an expiry on the agent's command
topic, under the collector's broker identity). The API sees only a `CommandSender`, so tests of
access rules need no broker; tests/test_api_serve.py checks the real path over Mosquitto.
"""

from __future__ import annotations

from typing import Protocol

from collector.config import CollectorConfig

COMMAND_TTL_S = 15 * 60.0  # a check asked for in the console is stale after a quarter of an hour


class CommandSender(Protocol):
    def __call__(self, agent_id: str, action: str, checks: list[str] | None, reason: str | None) -> str:
        """Send one command to one agent; returns its command id. Raises RuntimeError if not sent."""
        ...


def broker_sender(cfg: CollectorConfig) -> CommandSender:
    from collector.commands import make_command, send_command

    def send(agent_id: str, action: str, checks: list[str] | None, reason: str | None) -> str:
        command = make_command(action, checks, COMMAND_TTL_S, reason)
        send_command(cfg, agent_id, command)
        return command.command_id

    return send
