"""Remote "check now" / "retest" from the API, console and CLI: who may ask is decided there, the rest here.

Every command a person asks for passes through one `CommandDesk`: the command is bounded
(collector/commands/publish.py `checked_command`), rate-limited per line and per user and logged
(collector/commands/limits.py, in the database, so all collector processes share the limits), then
published. Inside `linecheck-collector serve` it goes out on ingest's own broker connection; when
that is down, or outside `serve`, on the command identity's connection (never as ingest: see
collector/commands/publish.py). The API sees only a `CommandSender`, so tests of access rules need no
broker; tests/test_api_serve.py checks the real path over Mosquitto.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as mqtt
from sqlalchemy import Engine, select

from collector.commands import limits as command_limits
from collector.commands.limits import RateLimited
from collector.commands.publish import (
    CommandError,
    CommandInvalid,
    checked_command,
    no_identity_problem,
    publish_on,
    send_command,
)
from collector.config import CollectorConfig
from collector.store import schema as t
from linecheck.wire import Command

__all__ = ["COMMAND_TTL_S", "CommandDesk", "CommandError", "CommandInvalid", "CommandSender", "RateLimited",
           "broker_sender"]

log = logging.getLogger(__name__)

COMMAND_TTL_S = 15 * 60.0  # a check asked for in the console is stale after a quarter of an hour


class CommandSender(Protocol):
    def __call__(self, agent_id: str, action: str, checks: list[str] | None, reason: str | None,
                 requested_by: str | None = None) -> str:
        """Send one command to one agent; returns its command id. Raises RuntimeError if not sent:
        RateLimited (retry_after_s) when over a limit, CommandInvalid for a malformed request."""
        ...


class IngestConnection(Protocol):
    """What the desk needs of the Ingestor (collector/ingest/worker.py): its client and whether it is up."""

    client: mqtt.Client
    connected: threading.Event


Publish = Callable[[str, Command], None]


class CommandDesk:
    """Bound, rate-limit, log and publish one command to one agent (a `CommandSender`)."""

    def __init__(self, cfg: CollectorConfig, engine: Engine, publish: Publish, ttl_s: float = COMMAND_TTL_S):
        self.cfg = cfg
        self.engine = engine
        self.publish = publish
        self.ttl_s = ttl_s

    def __call__(self, agent_id: str, action: str, checks: list[str] | None, reason: str | None,
                 requested_by: str | None = None, ttl_s: float | None = None) -> str:
        command = checked_command(self.cfg.commands, action, checks, ttl_s or self.ttl_s, reason)
        with self.engine.begin() as conn:  # RateLimited rolls the log row back
            line_id = conn.execute(select(t.agents.c.line_id).where(t.agents.c.agent_id == agent_id)).scalar()
            command_limits.admit(conn, self.cfg.commands, command_limits.Admission(
                command.command_id, agent_id, line_id, requested_by, action))
        try:
            self.publish(agent_id, command)
        except Exception:
            with self.engine.begin() as conn:  # never taken by the broker: it does not count
                command_limits.forget(conn, command.command_id)
            raise
        log.info("sent %s command %s to %s (requested by %s)", action, command.command_id, agent_id,
                 requested_by or "unknown")
        return command.command_id


def own_connection(cfg: CollectorConfig) -> Publish:
    """Publish on a connection of the command identity (or refuse, see collector/commands/publish.py)."""
    return lambda agent_id, command: send_command(cfg, agent_id, command)


def via_ingest(cfg: CollectorConfig, ingest: IngestConnection) -> Publish:
    """Publish on ingest's own connection; while it is down, on the command identity's if configured."""
    fallback = own_connection(cfg)

    def publish(agent_id: str, command: Command) -> None:
        if ingest.connected.is_set():
            publish_on(ingest.client, agent_id, command)
        elif no_identity_problem(cfg) is None:
            fallback(agent_id, command)
        else:
            raise CommandError("the collector is not connected to the broker right now, and no command "
                               "identity is configured (commands.cert_file) to send without it")

    return publish


def broker_sender(cfg: CollectorConfig, engine: Engine, ingest: IngestConnection | None = None) -> CommandSender:
    return CommandDesk(cfg, engine, via_ingest(cfg, ingest) if ingest is not None else own_connection(cfg))
