"""Remote-triggered checks: the agent side of "check now" / "retest" from the carrier.

Who may send a command is the broker's business: each agent subscribes only to its own command
topic, and the broker ACL lets only the collector identities and the write-only command identity
`linecheck.commands` publish there (the ACL that
`linecheck-collector broker-config` writes, collector/fleet/broker_config.py). MQTT 3.1.1 carries no
sender identity, so on top of that the agent checks what it can:

- the topic is exactly this agent's command topic (the publisher drops anything else);
- the command has not expired, and does not claim to stay valid longer than `max_ttl_s`
  (a replayed or forged "valid forever" command is refused);
- its id was not seen before (persisted, so a retained or redelivered command runs once, even
  across restarts; ids are remembered until the command would have expired anyway);
- the checks it names are configured here, and there are at most `MAX_CHECKS` of them;
- the message is at most `MAX_COMMAND_BYTES` (a command is a few hundred bytes).

Anything else (garbage, an unknown action, a date no clock can hold) is logged and ignored: nothing a
publisher sends on the command topic may raise out of the callback, where it would stop paho's
network thread and with it the agent's deliveries.

Accepted commands are queued and run on a worker thread: paho's network thread never waits
for a line check. The result carries `trigger: remote` (check_now) or `retest`, and the
command id in `trigger_info`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.config import CommandsConfig
from agent.statefile import load_json, save_json
from linecheck.wire import Command, Trigger, commands_topic

log = logging.getLogger(__name__)

TRIGGERS = {"check_now": Trigger.REMOTE, "retest": Trigger.RETEST}
MAX_COMMAND_BYTES = 8192
MAX_CHECKS = 32  # there are a dozen check kinds; a longer list is not a command a collector sends


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str


class CommandInbox:
    """Validates commands, remembers their ids, and runs accepted ones once on a worker thread."""

    def __init__(self, cfg: CommandsConfig, agent_id: str, configured: list[str], path: Path | None,
                 run: Callable[[Trigger, list[str] | None, dict[str, Any]], object],
                 clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.agent_id = agent_id
        self.configured = list(configured)
        self.path = path
        self._run = run
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: queue.Queue[Command | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        seen = load_json(path).get("seen", {}) if path else {}
        self._seen: dict[str, float] = {k: float(v) for k, v in seen.items() if isinstance(v, int | float)}
        self.decisions: list[tuple[str, Decision]] = []  # recent decisions, newest last (for logs/tests)

    # --- deciding --------------------------------------------------------------------------------
    def decide(self, topic: str, command: Command) -> Decision:
        """Accept or refuse; an accepted id is recorded before anything runs (at most once)."""
        now = self._clock()
        try:
            expires = command.expires_at.timestamp()
        except (OverflowError, ValueError):  # e.g. year 1 with a +23:59 offset: before any clock
            return self._note(command, False, f"expiry {command.expires_at!r} is out of range")
        if topic != commands_topic(self.agent_id):
            return self._note(command, False, f"arrived on {topic!r}, not this agent's command topic")
        if expires <= now:
            return self._note(command, False, f"expired at {_iso(expires)} (now {_iso(now)})")
        if expires - now > self.cfg.max_ttl_s:
            return self._note(command, False, f"expiry {_iso(expires)} is more than commands.max_ttl_s="
                                              f"{self.cfg.max_ttl_s:g} s ahead")
        if len(command.checks or []) > MAX_CHECKS:
            return self._note(command, False, f"{len(command.checks or [])} checks named; at most {MAX_CHECKS}")
        unknown = [k for k in command.checks or [] if k not in self.configured]
        if unknown:
            more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
            shown = ", ".join(k[:40] for k in unknown[:5]) + more
            return self._note(command, False, f"checks not configured on this agent: {shown}")
        with self._lock:
            self._seen = {cid: exp for cid, exp in self._seen.items() if exp > now}  # expired ids can go
            if command.command_id in self._seen:
                return self._note(command, False, "already received (duplicate id)")
            self._seen[command.command_id] = expires
            self._persist()
        return self._note(command, True, "accepted")

    def on_message(self, _client: object, _userdata: object, msg: Any) -> None:
        """paho callback for this agent's command topic (registered with message_callback_add)."""
        try:
            size = len(msg.payload)
            if size > MAX_COMMAND_BYTES:
                log.warning("ignoring oversized command on %s: %d bytes (at most %d)", msg.topic, size,
                            MAX_COMMAND_BYTES)
                return
            try:
                command = Command.model_validate_json(msg.payload)
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[:1]
                log.warning("ignoring malformed command on %s: %s", msg.topic, first)
                return
            self.submit(msg.topic, command)
        except Exception:  # noqa: BLE001 - see the module docstring: the network thread must live on
            log.exception("ignoring a command on %s that could not be handled", msg.topic)

    def submit(self, topic: str, command: Command) -> Decision:
        """Called from paho's network thread: decide, and queue the run (never run it here)."""
        decision = self.decide(topic, command)
        if decision.accepted:
            self._queue.put(command)
        return decision

    # --- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="commands", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._queue.put(None)

    def _work(self) -> None:
        while (command := self._queue.get()) is not None:
            info: dict[str, Any] = {"command_id": command.command_id, "command_action": command.action}
            if command.reason:
                info["command_reason"] = command.reason
            try:
                self._run(TRIGGERS[command.action], command.checks, info)
            except Exception:  # one failed command must not stop later ones
                log.exception("remote command %s failed", command.command_id)

    # --- internals -------------------------------------------------------------------------------
    def _note(self, command: Command, accepted: bool, reason: str) -> Decision:
        decision = Decision(accepted, reason)
        (log.info if accepted else log.warning)("command %s (%s): %s", command.command_id, command.action,
                                                "accepted" if accepted else f"refused: {reason}")
        self.decisions = [*self.decisions[-99:], (command.command_id, decision)]
        return decision

    def _persist(self) -> None:
        if self.path is None:
            return
        try:
            save_json(self.path, {"seen": self._seen})
        except OSError as exc:  # keep going: the in-memory set still de-duplicates until restart
            log.warning("cannot save command ids %s: %s", self.path, exc)


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):  # a forged expiry beyond what a clock can show
        return f"{ts:.0f} (epoch s)"
