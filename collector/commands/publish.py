"""Send a remote command ("check now", "retest") to one agent's command topic.

The command is retained with QoS 1 so an agent that is briefly offline still gets it when it
reconnects; it carries an expiry, after which the agent ignores it, and an id the agent
de-duplicates on, so a retained copy never runs twice.

Which connection carries it matters. The generated broker config forces every client id to the
certificate's identity (`use_username_as_clientid`), so a second connection made with the ingest
identity *is* ingest's client id: the broker disconnects ingest, and a clean session drops the
results it had queued for it while ingest was away. So a command never connects as ingest:

- inside `linecheck-collector serve` it goes out on ingest's own connection (collector/commands/desk.py);
- elsewhere (the `command` CLI, an API without ingest, ingest disconnected) it connects with the
  command identity of the `commands:` config section (`linecheck.commands`, write-only on command topics);
- with no command identity configured, a collector config that names an identity (mqtt.cert_file or
  mqtt.username) is refused with a message saying what to configure; only an anonymous broker
  (development) gets a throw-away client id.
"""

from __future__ import annotations

import secrets
import ssl
import threading
from datetime import timedelta
from functools import cache

import paho.mqtt.client as mqtt

from collector.commands.config import RemoteCommandsConfig
from collector.commands.outgoing import publish_nowait
from collector.config import CollectorConfig
from linecheck.catalogue import kinds
from linecheck.mqtt_client import build_client
from linecheck.wire import Command, new_result_id, utcnow, valid_id

MAX_TTL_S = 86400.0  # the agent's default commands.max_ttl_s: a longer-lived command would be refused there
MAX_REASON = 500  # linecheck.wire.Command.reason
_ONE_AT_A_TIME = threading.Lock()  # one command connection per process: the broker allows one per identity


class CommandError(RuntimeError):
    """The command could not be handed to the broker."""


class CommandInvalid(CommandError):
    """The command itself is refused (unknown check, too many checks, reason too long, bad ttl)."""


def make_command(action: str, checks: list[str] | None = None, ttl_s: float = 3600.0,
                 reason: str | None = None) -> Command:
    return Command(command_id=new_result_id(), action=action, checks=checks or None,  # type: ignore[arg-type]
                   expires_at=utcnow() + timedelta(seconds=ttl_s), reason=reason)


@cache
def known_checks() -> frozenset[str]:
    """Check kinds an agent can run: the kind catalogue both sides read (the agent's check registry is
    built from it, tests/test_catalogue.py keeps them equal), so the collector needs no agent code."""
    return frozenset(kind for kind, spec in kinds().items() if spec.source == "check")


def checked_command(cfg: RemoteCommandsConfig, action: str, checks: list[str] | None = None,
                    ttl_s: float = 3600.0, reason: str | None = None) -> Command:
    """A command someone asked for, bounded: known check kinds, at most `max_checks` of them, a
    reason of at most 500 characters, an expiry the agent will accept."""
    if action not in ("check_now", "retest"):
        raise CommandInvalid(f"unknown action {action!r}: expected check_now or retest")
    names = list(dict.fromkeys(checks or []))  # order kept, repeats dropped
    if len(names) > cfg.max_checks:
        raise CommandInvalid(f"{len(names)} checks named; at most {cfg.max_checks} (commands.max_checks)")
    unknown = [n for n in names if n not in known_checks()]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise CommandInvalid(f"unknown check kind(s) {shown}; known: {', '.join(sorted(known_checks()))}")
    if reason is not None and len(reason) > MAX_REASON:
        raise CommandInvalid(f"reason is {len(reason)} characters; at most {MAX_REASON}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise CommandInvalid(f"ttl {ttl_s:g} s: expected more than 0 and at most {MAX_TTL_S:g} s "
                             "(agents refuse commands valid longer than their commands.max_ttl_s)")
    return make_command(action, names or None, ttl_s, reason)


def no_identity_problem(cfg: CollectorConfig) -> str | None:
    """Why this config cannot open a command connection of its own, or None when it can."""
    if cfg.commands.has_identity:
        return None
    m = cfg.mqtt
    if m.cert_file or m.username:
        return ("no command identity configured: set commands.cert_file and commands.key_file to the "
                "linecheck.commands certificate that `linecheck-collector broker-config` writes "
                "(or commands.username/password_file on a password broker). Connecting with the ingest "
                "identity would disconnect ingest and drop the results the broker holds for it")
    return None


def send_command(cfg: CollectorConfig, agent_id: str, command: Command, timeout_s: float = 10.0) -> None:
    """Publish `command` to `agent_id`'s command topic on a connection of its own, wait for the PUBACK."""
    if not valid_id(agent_id):
        raise CommandError(f"invalid agent id {agent_id!r}: letters, digits, '_' and '-' only")
    problem = no_identity_problem(cfg)
    if problem:
        raise CommandError(problem)
    with _ONE_AT_A_TIME:
        _publish_once(cfg, agent_id, command, timeout_s)


def _client(cfg: CollectorConfig) -> mqtt.Client:
    m, c = cfg.mqtt, cfg.commands
    # A clean session is right here: this identity subscribes to nothing, so it has nothing to lose.
    # With an identity the broker forces the client id to it anyway; on an anonymous broker nothing
    # forces ids, and a random one cannot collide.
    random_id = f"{m.client_id}-cmd-{secrets.token_hex(4)}"
    client_id = (c.username or "linecheck.commands") if c.has_identity else random_id
    # The broker's CA is the collector's; the certificate (or username) is the command identity's.
    return build_client(client_id, clean_session=True, username=c.username, password_file=c.password_file,
                        ca_file=m.ca_file, cert_file=c.cert_file, key_file=c.key_file)


def _publish_once(cfg: CollectorConfig, agent_id: str, command: Command, timeout_s: float) -> None:
    m = cfg.mqtt
    try:
        client = _client(cfg)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CommandError(f"cannot use the command identity's files: {exc}") from exc
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))

    client.on_connect = on_connect
    try:
        client.connect(m.host, m.port, keepalive=m.keepalive_s)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot reach the broker at {m.host}:{m.port}: {exc}") from exc
    client.loop_start()
    try:
        info = publish_nowait(client, agent_id, command)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise CommandError(f"publishing failed: {exc}") from exc
        if refused:
            raise CommandError(f"the broker refused the command identity's connection: {refused[0]}")
        if not info.is_published():
            raise CommandError(f"the broker did not acknowledge the command within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()


def publish_on(client: mqtt.Client, agent_id: str, command: Command, timeout_s: float = 10.0) -> None:
    """Publish on an already connected client (ingest's own) and wait for the PUBACK."""
    if not valid_id(agent_id):
        raise CommandError(f"invalid agent id {agent_id!r}: letters, digits, '_' and '-' only")
    info = publish_nowait(client, agent_id, command)
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        raise CommandError(f"ingest's broker connection did not take the command (rc={info.rc})")
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError) as exc:
        raise CommandError(f"publishing failed: {exc}") from exc
    if not info.is_published():
        raise CommandError(f"the broker did not acknowledge the command within {timeout_s:g} s")
