"""Publish spooled results over MQTT and delete them only when the collector's receipt arrives.

A PUBACK only means the broker took the message; the receipt, sent by the collector after its
database commit, is what lets a result leave the spool. At most `max_inflight` results are out
without a receipt (end-to-end flow control, which also bounds paho's in-memory queue). A result
not receipted in time is re-published, waiting twice as long after each attempt, so a collector
that is down for days does not get a flood of copies; the collector's idempotent insert absorbs
the duplicates re-sending causes.

paho reconnects with a doubling delay but no jitter, so a fleet would reconnect in lockstep after a
broker restart. Before each of paho's waits we set that wait ourselves: exponential backoff with
full jitter (a uniform draw below the doubling ceiling), reset only after a connection that held.

With `mqtt.brokers` (the nodes of a clustered broker) each lost connection or failed attempt moves the
agent to the next node (linecheck.mqtt_client.Failover): a node killed takes no agent down with it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from agent.config import AgentConfig
from agent.spool import Spool
from linecheck.mqtt_client import Failover, build_client, mqtt  # paho as loaded there: without dnspython
from linecheck.wire import Command, Receipt, commands_topic, receipts_topic, results_topic, status_topic

log = logging.getLogger(__name__)

ONLINE = b'{"state":"online"}'
OFFLINE = b'{"state":"offline"}'
# A connection that lasted this long was a real one: the next outage starts again from the short waits.
STABLE_CONNECTION_S = 30.0


class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, base * 2**n)]."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None):
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 32))
        self.attempt += 1
        # A floor of 1% of the base keeps a failing broker from being hammered in a tight loop.
        return max(self.base_s / 100, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempt = 0


def make_client(cfg: AgentConfig) -> mqtt.Client:
    m = cfg.mqtt
    # A clean session: results are kept by the spool, not by the broker. Reconnect delays are ours (Backoff).
    client = build_client(cfg.agent_id, clean_session=True, username=m.username, password_file=m.password_file,
                          ca_file=m.tls.ca_file if m.tls else None, cert_file=m.tls.cert_file if m.tls else None,
                          key_file=m.tls.key_file if m.tls else None)
    client.max_inflight_messages_set(m.max_inflight)
    # Retained status with a Last Will: the collector sees "offline" when the agent vanishes.
    client.will_set(status_topic(cfg.agent_id), OFFLINE, qos=1, retain=True)
    return client


@dataclass
class _Flight:
    """A published result waiting for its receipt."""

    sent_at: float  # time.monotonic()
    attempts: int
    timeout_s: float
    message: mqtt.MQTTMessageInfo | None = None  # paho's copy of the latest publication


def _awaiting_puback(info: mqtt.MQTTMessageInfo) -> bool:
    """paho still holds this publication for want of a PUBACK, and re-sends it after a reconnect."""
    if info.rc == mqtt.MQTT_ERR_NO_CONN:  # queued while disconnected: is_published() raises for ever after
        return not info._published  # the PUBACK state paho keeps either way
    return not info.is_published()


class Publisher:
    def __init__(self, cfg: AgentConfig, spool: Spool, on_command: Callable[[Command], None] | None = None,
                 rng: random.Random | None = None):
        self.cfg = cfg
        self.spool = spool
        self.on_command = on_command
        self._rng = rng or random.Random()
        self.backoff = Backoff(cfg.mqtt.reconnect_min_s, cfg.mqtt.reconnect_max_s, self._rng)
        self.client = make_client(cfg)
        self.failover = Failover(cfg.mqtt.addresses())
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.connected = threading.Event()
        self.wake = threading.Event()
        self.receipts = 0  # results removed from the spool by receipts (this process)
        self.published = 0  # publications handed to paho, re-sends included
        self.reconnect_delays: list[float] = []  # the waits chosen, for observation
        self._inflight: dict[str, _Flight] = {}
        self._receipts: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._reconnected = threading.Event()
        self._connected_at: float | None = None

    # --- paho callbacks (network thread: keep them short, never touch the disk) ----------------------
    def _on_connect(self, client: mqtt.Client, _ud: object, _flags: object, reason: object, _props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        self._subscribe(client, retry=False)
        client.publish(status_topic(self.cfg.agent_id), ONLINE, qos=1, retain=True)
        self._connected_at = time.monotonic()
        # Whatever was in flight on the old connection may be lost: make it all due again.
        self._reconnected.set()
        self.connected.set()
        self.wake.set()
        log.info("connected to %s:%s", *self.failover.current)

    def _on_subscribe(self, client: mqtt.Client, _ud: object, _mid: int, reasons: object, _p: object) -> None:
        # A broker may refuse a subscription for a moment (a cluster electing after a node's loss); without
        # it no receipt ever arrives and every result is re-sent for ever: ask again, after a jittered wait.
        if any(getattr(r, "is_failure", False) for r in reasons):  # type: ignore[attr-defined]
            delay = self.backoff.next_delay()
            log.warning("broker refused the receipts/commands subscription (%s); asking again in %.1f s",
                        reasons, delay)
            timer = threading.Timer(delay, self._subscribe, args=(client, True))
            timer.daemon = True
            timer.start()

    def _subscribe(self, client: mqtt.Client, retry: bool) -> None:
        if not retry or self.connected.is_set():  # a retry while away: the next connection subscribes
            qos: int = self.cfg.mqtt.subscribe_qos
            client.subscribe([(receipts_topic(self.cfg.agent_id), qos), (commands_topic(self.cfg.agent_id), qos)])

    def _on_disconnect(self, client: mqtt.Client, _ud: object, _flags: object, reason: object, _p: object) -> None:
        self.connected.clear()
        if self._connected_at is not None and time.monotonic() - self._connected_at >= STABLE_CONNECTION_S:
            self.backoff.reset()
        self._connected_at = None
        lost = self.failover.current
        delay = self._schedule_reconnect(client)
        log.info("disconnected from broker %s:%s (%s); reconnecting to %s:%s in %.1f s", *lost, reason,
                 *self.failover.advance(client), delay)

    def _on_connect_fail(self, client: mqtt.Client, _ud: object) -> None:
        failed = self.failover.current
        delay = self._schedule_reconnect(client)
        log.info("cannot reach broker %s:%s; next try (%s:%s) in %.1f s", *failed, *self.failover.advance(client),
                 delay)

    def _schedule_reconnect(self, client: mqtt.Client) -> float:
        # paho calls its reconnect wait right after these callbacks; min == max makes it wait exactly
        # our jittered delay (reconnect_delay_set also clears paho's own doubling state).
        delay = self.backoff.next_delay()
        self.reconnect_delays.append(delay)
        del self.reconnect_delays[:-100]
        client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]  # paho accepts floats
        return delay

    def _on_message(self, _c: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == receipts_topic(self.cfg.agent_id):
            try:
                receipt = Receipt.model_validate_json(msg.payload)
            except ValidationError as exc:
                log.warning("ignoring malformed receipt: %s", exc.errors()[:1])
                return
            if receipt.status == "quarantined":
                log.error("the collector quarantined results %s; see its quarantine table", receipt.result_ids)
            self._receipts.put(receipt.result_ids)  # the pump thread deletes them from the spool
            self.wake.set()
        elif msg.topic == commands_topic(self.cfg.agent_id) and self.on_command:
            try:
                command = Command.model_validate_json(msg.payload)
            except ValidationError as exc:
                log.warning("ignoring malformed command: %s", exc.errors()[:1])
                return
            self.on_command(command)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        # The first wait is jittered too: a fleet powered on together should not connect together.
        first = self.backoff.next_delay()
        self.client.reconnect_delay_set(first, first)  # type: ignore[arg-type]
        host, port = self.failover.current
        self.client.connect_async(host, port, keepalive=self.cfg.mqtt.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        if self.connected.is_set():
            info = self.client.publish(status_topic(self.cfg.agent_id), OFFLINE, qos=1, retain=True)
            # If the connection dropped meanwhile, the Last Will says "offline" instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()
        self._apply_receipts()

    def inflight(self) -> int:
        return len(self._inflight)

    def _apply_receipts(self) -> None:
        ids: list[str] = []
        while True:
            try:
                ids += self._receipts.get_nowait()
            except queue.Empty:
                break
        if ids:
            self.receipts += self.spool.acknowledge(ids)
            for rid in ids:
                self._inflight.pop(rid, None)

    def _timeout(self, attempts: int) -> float:
        m = self.cfg.mqtt
        base = min(m.resend_after_s * 2 ** min(attempts - 1, 32), m.resend_max_s)
        return base * self._rng.uniform(0.9, 1.1)  # spread re-sends of a fleet too

    def pump(self) -> int:
        """Apply receipts, then publish what is due within the in-flight window. Returns how many."""
        self._apply_receipts()
        now = time.monotonic()
        if self._reconnected.is_set():
            self._reconnected.clear()
            for flight in self._inflight.values():
                if flight.message is not None and _awaiting_puback(flight.message):
                    # No PUBACK yet: paho re-sends it itself on the new connection (DUP, same packet id);
                    # publishing it again would put two copies on the wire and in the window.
                    flight.sent_at = now
                else:  # the broker took it; a receipt sent while we had no subscription is lost
                    flight.sent_at = float("-inf")
        if not self.connected.is_set():
            return 0
        expired = {rid for rid, f in self._inflight.items() if now - f.sent_at >= f.timeout_s}
        room = self.cfg.mqtt.max_inflight - (len(self._inflight) - len(expired))
        if room <= 0:
            return 0
        waiting = set(self._inflight) - expired
        due = self.spool.pending(room, exclude=waiting)
        topic = results_topic(self.cfg.agent_id)
        sent: list[str] = []
        for item in due:
            info = self.client.publish(topic, item.payload, qos=1)
            # NO_CONN (the connection dropped a moment ago): paho keeps the message and sends it after
            # reconnecting, so it is in flight like the others; any other refusal means paho dropped it.
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                break
            previous = self._inflight.get(item.result_id)
            attempts = previous.attempts + 1 if previous else 1
            self._inflight[item.result_id] = _Flight(now, attempts, self._timeout(attempts), info)
            sent.append(item.result_id)
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                break
        # A result that left the spool (evicted) without a receipt is no longer in flight either.
        if expired and len(due) < room:
            for rid in expired - {p.result_id for p in due}:
                self._inflight.pop(rid, None)
        self.spool.mark_sent(sent)
        self.published += len(sent)
        return len(sent)

    def next_wakeup(self, poll_s: float) -> float:
        """Seconds until the earliest in-flight result times out (at most poll_s)."""
        if not self._inflight:
            return poll_s
        now = time.monotonic()
        soonest = min(f.sent_at + f.timeout_s for f in self._inflight.values())
        return max(0.01, min(poll_s, soonest - now))

    def run(self, stop: threading.Event, poll_s: float = 5.0) -> None:
        """Pump until `stop` is set; wakes on receipts, connects, new results and re-send deadlines."""
        while not stop.is_set():
            try:
                self.pump()
            except Exception:  # a full disk or a broken spool must not end delivery for good
                log.exception("publishing failed; retrying")
            self.wake.wait(self.next_wakeup(poll_s))
            self.wake.clear()
