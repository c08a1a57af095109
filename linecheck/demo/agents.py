"""The simulated gateways on the wire: one MQTT client each, speaking the agents' protocol.

Each simulated agent connects under its own agent id with an `offline` Last Will, says `online`
(retained) on connect, publishes its results on its own results topic, keeps every result until the
collector's receipt arrives (a small spool in its state file, re-sent on reconnect), and answers
the collector's re-test and check-now commands through the agent's own command inbox
(agent/commands.py: expiry, duplicate ids, configured checks). Its sequence number survives
restarts in the state file, so a demo started again continues where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.commands import CommandInbox
from agent.config import CommandsConfig
from agent.publisher import OFFLINE, ONLINE
from agent.statefile import load_json, save_json
from linecheck.demo.fleet import CHECK_KINDS, Planned, SimLine, result
from linecheck.mqtt_client import build_client
from linecheck.wire import Receipt, Trigger, commands_topic, receipts_topic, results_topic, status_topic

log = logging.getLogger(__name__)
SPEED_TEST_EVERY = 4  # live results: a speed test on every 4th, as a gateway's data budget would allow


class SimAgent:
    def __init__(self, line: SimLine, host: str, port: int, state_dir: Path):
        self.line = line
        self.host, self.port = host, port
        self.state_path = state_dir / f"{line.agent_id}.json"
        state = load_json(self.state_path)
        self.seq: int = int(state.get("seq", 0))
        self.pending: dict[str, str] = dict(state.get("pending", {}))  # result_id -> envelope JSON
        self.receipts: dict[str, int] = {"stored": 0, "duplicate": 0, "quarantined": 0}
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self.connected = threading.Event()
        self.inbox = CommandInbox(CommandsConfig(), line.agent_id, list(CHECK_KINDS),
                                  state_dir / f"{line.agent_id}.commands.json", run=self._command)
        self.client = build_client(line.agent_id, clean_session=True, reconnect_delay_s=(1, 30))
        self.client.will_set(status_topic(line.agent_id), OFFLINE, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.client.message_callback_add(receipts_topic(line.agent_id), self._on_receipt)
        self.client.message_callback_add(commands_topic(line.agent_id), self.inbox.on_message)

    # --- connection -------------------------------------------------------------------------------
    def start(self) -> None:
        self.inbox.start()
        self.client.connect_async(self.host, self.port, keepalive=60)
        self.client.loop_start()

    def stop(self) -> None:
        if self.connected.is_set():
            self.client.publish(status_topic(self.line.agent_id), OFFLINE, qos=1, retain=True).wait_for_publish(5)
        self.inbox.stop()
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, _ud: object, _flags: object, reason: Any, _props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("%s: broker refused the connection: %s", self.line.agent_id, reason)
            return
        agent = self.line.agent_id
        client.subscribe([(receipts_topic(agent), 1), (commands_topic(agent), 1)])
        client.publish(status_topic(agent), ONLINE, qos=1, retain=True)
        with self._lock:  # whatever was in flight on a lost connection goes again (ingest drops repeats)
            for payload in self.pending.values():
                client.publish(results_topic(agent), payload, qos=1)
        self.connected.set()

    # --- results ----------------------------------------------------------------------------------
    def send(self, p: Planned, only: list[str] | None = None, info: dict[str, Any] | None = None) -> str:
        """Number, keep and publish one result; kept (and re-sent on reconnect) until its receipt."""
        with self._lock:
            self.seq += 1
            envelope = result(p, self.seq, only, info)
            payload = envelope.to_json().decode()
            self.pending[envelope.result_id] = payload
            self._save()
        self.client.publish(results_topic(self.line.agent_id), payload, qos=1)
        return envelope.result_id

    def send_scheduled(self, at: datetime | None = None) -> str:
        at = at or datetime.now(UTC).replace(microsecond=0)
        with_speed = (self.seq + 1) % SPEED_TEST_EVERY == 0
        only = None if with_speed else ["link", "ping", "dns"]
        return self.send(Planned(self.line, at, Trigger.SCHEDULE), only)

    def _command(self, trigger: Trigger, checks: list[str] | None, info: dict[str, Any]) -> None:
        # Run on the inbox's worker thread, like the agent's remote-triggered check.
        self.send(Planned(self.line, datetime.now(UTC).replace(microsecond=0), trigger), checks, info)

    def _on_receipt(self, _client: object, _ud: object, msg: Any) -> None:
        try:
            receipt = Receipt.model_validate_json(msg.payload)
        except ValidationError:
            log.warning("%s: ignoring a malformed receipt", self.line.agent_id)
            return
        with self._lock:
            done = [r for r in receipt.result_ids if self.pending.pop(r, None) is not None]
            if not done:
                return
            self.receipts[receipt.status] += len(done)
            self._save()  # on paho's thread: a few hundred bytes per agent, written atomically
            self._drained.notify_all()
        if receipt.status == "quarantined":
            log.error("%s: the collector quarantined %s", self.line.agent_id, done)

    def wait_drained(self, deadline: float) -> bool:
        """Wait until every kept result has its receipt (or the monotonic deadline passes)."""
        with self._lock:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drained.wait(left)
        return True

    def _save(self) -> None:
        save_json(self.state_path, {"seq": self.seq, "pending": self.pending})
