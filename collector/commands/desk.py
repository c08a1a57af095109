"""The one command path: every "check now" / "retest" a person asks for (API, console, CLI) passes here.

Who may ask is decided by the caller (the API's and the console's scope checks, the CLI's shell
account); the rest here. `CommandDesk` bounds the command (publish.py `checked_command`),
rate-limits it per line and per user and logs it (limits.py, in the database, so all collector
processes share the limits), then publishes it. `send_to_line` asks every agent of a line: the API
route and the console's button are two URLs over this one implementation. Re-tests the rules decide
on go through the outbox (queue.py) and the same publish function, without the people's limits (one
outstanding re-test per line and fault class bounds them).

Inside `linecheck-collector serve` a command goes out on ingest's own broker connection; when that is
down, or outside `serve`, on the command identity's connection (never as ingest: see publish.py).
The API sees only a `CommandSender`, so tests of access rules need no broker; tests/test_api_serve.py
checks the real path over Mosquitto.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypedDict

import paho.mqtt.client as mqtt
from sqlalchemy import Connection, Engine, select

from collector.commands import limits
from collector.commands.limits import RateLimited
from collector.commands.outgoing import log_sent
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

__all__ = ["COMMAND_TTL_S", "CommandDesk", "CommandError", "CommandInvalid", "CommandSender", "NoAgent",
           "RateLimited", "broker_sender", "send_to_line"]

COMMAND_TTL_S = 15 * 60.0  # a check asked for in the console is stale after a quarter of an hour


class CommandSender(Protocol):
    def __call__(self, agent_id: str, action: str, checks: list[str] | None, reason: str | None,
                 requested_by: str | None = None) -> str:
        """Send one command to one agent; returns its command id. Raises RuntimeError if not sent:
        RateLimited (retry_after_s) when over a limit, CommandInvalid for a malformed request."""
        ...


class NoAgent(CommandError):
    """The line has no agent to run the command."""


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
            limits.admit(conn, self.cfg.commands, limits.Admission(
                command.command_id, agent_id, line_id, requested_by, action))
        try:
            self.publish(agent_id, command)
        except Exception:
            with self.engine.begin() as conn:  # never taken by the broker: it does not count
                limits.forget(conn, command.command_id)
            raise
        log_sent(command, agent_id, requested_by or "unknown")
        return command.command_id


class Sent(TypedDict):
    agent_id: str
    command_id: str


def send_to_line(sender: CommandSender, conn: Connection, line_id: str, action: str, checks: list[str] | None,
                 reason: str, requested_by: str) -> list[Sent]:
    """Ask every agent of the line (in agent id order); the caller has checked the line is in scope.
    Raises NoAgent, or what the sender raises (the commands already sent stay sent)."""
    agent_ids = list(conn.execute(select(t.agents.c.agent_id).where(t.agents.c.line_id == line_id)
                                  .order_by(t.agents.c.agent_id)).scalars())
    if not agent_ids:
        raise NoAgent(f"line {line_id!r} has no agent to run the check")
    return [{"agent_id": a, "command_id": sender(a, action, checks, reason, requested_by=requested_by)}
            for a in agent_ids]


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
