"""Ingest: MQTT messages in, validated, committed in batches, then receipts out and PUBACKs sent.

paho's network thread only enqueues (`on_message` never touches the database). A worker thread
drains the queue in batches: validate → one transaction → receipts → manual PUBACKs. A crash
before the commit leaves the messages un-acked at the broker and un-receipted at the agent, so
they come again; the idempotent insert absorbs the repeat.

Bad input never stops ingest: a malformed, oversized, schema-invalid or mis-attributed message is
quarantined with its reason, and a message the database itself rejects is isolated from its batch
and quarantined too. A batch that fails for any other reason is taken apart message by message; a
message that still fails is quarantined with the exception as its reason. A database that is
unreachable is waited for (nothing acked, nothing lost). The store refuses results of agents not
bound to the line they name (collector/ingest/binding.py).

`health()` tells the API (/healthz, /metrics) whether ingest is connected, subscribed and moving.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from collector.config import CollectorConfig
from collector.ingest.broker_link import BrokerLink, LinkState
from collector.store.database import Quarantined, Store
from linecheck.mqtt_client import Failover, build_client
from linecheck.wire import (
    ALL_RESULTS,
    ALL_STATUS,
    Receipt,
    ResultEnvelope,
    agent_from_topic,
    receipts_topic,
    results_topic,
)

if TYPE_CHECKING:
    from collector.ingest.jetstream import JetStreamSource

log = logging.getLogger(__name__)
T = TypeVar("T")

# The database is away (connection lost, locked, disk full): wait and retry the same batch.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError, DisconnectionError)
RECEIPT_MAX_IDS = 1000  # linecheck.wire.Receipt.result_ids max_length
# Receipts handed to paho and not yet PUBACKed. paho numbers messages 1..65535 and REFUSES a publish
# whose number is still queued (MQTT_ERR_QUEUE_SIZE): a drained backlog of 100 000 results queued
# ~100 000 receipts and silently lost a quarter of them. Past this bound the worker waits.
RECEIPTS_UNACKED_MAX = 10_000
# QoS 1 messages paho keeps on the wire at once (its default, 20, made receipts trail the commits).
CLIENT_INFLIGHT = 1000
TOPIC_MAX = 255  # quarantine.topic column
# A message taken from the broker and not acked for this long means ingest is stuck (/healthz says so).
# A healthy collector acks within a batch (<1 s); a drained backlog waits at most queue_max / rate.
STALL_AFTER_S = 30.0


@dataclass(frozen=True)
class IngestHealth:
    connected: bool
    subscribed: bool
    pending: int  # messages taken from the broker and not yet acked
    oldest_pending_s: float  # age of the oldest of them (0 when none)
    stalled: bool
    db_retries: int

    broker: LinkState | None = None  # the connection's state, address and last error
    # broker.kind nats: partitions this collector holds, results delivered to it again (another never acked)
    partitions_owned: int | None = None
    redelivered: int = 0
    # serve --workers N (collector/ingest/pool.py): workers not running right now, in words
    workers_down: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        out = list(self.workers_down)
        if not self.connected:
            out.append(self.broker.problem if self.broker and self.broker.problem else "broker disconnected")
        elif not self.subscribed:
            out.append("broker connected but not subscribed")
        if self.stalled:
            out.append(f"ingest stalled: {self.pending} messages waiting, oldest {self.oldest_pending_s:.0f} s")
        return out


@dataclass
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    arrived: float = field(default_factory=time.monotonic)  # for the receipt-latency metric
    generation: int = 0  # which broker connection delivered it: a mid is only valid on its own connection
    # How to ack it when it did not come on the MQTT connection (broker.kind nats: collector/ingest/jetstream.py).
    ack_with: Callable[[], None] | None = None

    @property
    def is_status(self) -> bool:
        return self.topic.endswith("/status")


@dataclass
class Checked:
    """What validation made of one message: an envelope to store, or a reason to quarantine."""

    envelope: ResultEnvelope | None
    reason: str | None
    agent_id: str | None
    result_id: str | None  # known even for some bad messages, so the agent can stop re-sending


def validate(topic: str, payload: bytes, max_bytes: int) -> Checked:
    try:
        return _validate(topic, payload, max_bytes)
    except Exception as exc:  # a validator bug must cost one message, never the batch
        agent_id = agent_from_topic(topic)
        return Checked(None, f"validation failed: {type(exc).__name__}: {exc}"[:2000], agent_id,
                       _result_id_of(payload) if len(payload) <= max_bytes else None)


def _validate(topic: str, payload: bytes, max_bytes: int) -> Checked:
    agent_id = agent_from_topic(topic)
    if agent_id is None:
        return Checked(None, f"topic {topic!r} does not name a valid agent", None, None)
    if len(payload) > max_bytes:
        return Checked(None, f"payload of {len(payload)} bytes exceeds the {max_bytes}-byte limit", agent_id, None)
    try:
        envelope = ResultEnvelope.from_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        reason = f"schema: {where}: {first['msg']}{more}"
        return Checked(None, reason, agent_id, _result_id_of(payload))
    if envelope.agent_id != agent_id:
        # Topic identity comes from the broker's authentication; the payload's is only a claim.
        return Checked(None, f"payload claims agent {envelope.agent_id!r} on {agent_id!r}'s topic",
                       agent_id, envelope.result_id)
    return Checked(envelope, None, agent_id, envelope.result_id)


def _result_id_of(payload: bytes) -> str | None:
    try:
        rid = json.loads(payload).get("result_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return rid if isinstance(rid, str) and len(rid) <= 64 else None


def _seq_of(payload: bytes) -> int | None:
    """The seq a refused message carries, if it is a plausible one (so it is not counted as missing)."""
    try:
        seq = json.loads(payload).get("seq")
    except (ValueError, AttributeError, RecursionError):
        return None
    return seq if type(seq) is int and 1 <= seq < 2**63 else None


IN_FLIGHT_MIN = 50  # results taken from the stream ahead of the worker, at least


def in_flight_bound(cost_per_message_s: float, ack_wait_s: float, cap: int) -> int:
    """How many results a collector may take from the JetStream stream and hold un-acked. What it holds longer
    than ack_wait is delivered again and processed twice: at 1000 in hand and ~40 results/s (a 2-core machine
    at load 20, bench/cluster.py's storm) every partition was redelivered over and over. So the look-ahead is
    what the worker gets through in a third of ack_wait at its measured pace, between IN_FLIGHT_MIN and cap."""
    if cost_per_message_s <= 0:
        return cap
    return max(min(IN_FLIGHT_MIN, cap), min(cap, int(ack_wait_s / 3 / cost_per_message_s)))


class _Stopping(Exception):
    """The collector is stopping while the database is away: leave the batch un-acked."""


class Ingestor:
    def __init__(self, cfg: CollectorConfig, store: Store):
        self.cfg = cfg
        self.store = store
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=cfg.ingest.queue_max)
        self.stop_event = threading.Event()
        store.unenrolled = cfg.ingest.unenrolled  # the store checks each result's binding (collector/ingest/binding.py)
        self.client = self._make_client()
        self.stored = 0
        self.duplicates = 0
        self.quarantined = 0
        self.db_retries = 0
        self.connected = threading.Event()
        self.failover = Failover(cfg.mqtt.addresses())  # the nodes of a clustered broker, in turn
        self.link = BrokerLink(*self.failover.current)  # logs each change of state once (broker_link.py)
        # broker.kind nats: results come from the cluster's JetStream stream, not from MQTT subscriptions.
        self.source = self._make_source()
        self.subscribed = threading.Event()  # from here on the broker queues results for this session
        # Agents' status: recorded by every collector (idempotent). `serve --workers N` leaves it to worker 0
        # (collector/ingest/pool.py): N workers recording every reconnecting agent's status is N times the work.
        self.take_status = True
        self._generation = 0
        # Status of agents that have no row yet (their first result is behind the status message).
        self._pending_status: dict[str, tuple[str, datetime]] = {}
        self._receipts_unacked: set[int] = set()  # mids of receipts paho still holds
        self._receipts_cond = threading.Condition()
        self._acked_early: set[int] = set()
        self._overflow: deque[Inbound] = deque()  # taken off the inbox while waiting for receipt acks
        self.receipts_refused = 0
        self.stall_after_s = STALL_AFTER_S
        self._batch_arrived: float | None = None  # arrival of the oldest message of the batch in hand
        self._batch_size = 0
        # Seconds one message costs, averaged over recent batches (0 = not measured yet): sizes batches.
        self._cost_per_message = 0.0
        # Called after each batch's receipts: (stored, duplicates, quarantined, receipt latencies in s).
        self.on_batch: Callable[[int, int, int, Sequence[float]], None] | None = None

    def _make_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        # Persistent session + manual ack: messages not yet committed are redelivered after a crash.
        # With session_expiry_s: MQTT 5, session kept across restarts but not for ever: Mosquitto goes on
        # handing a dead collector's session its share of the group's messages until the session
        # expires; the agents re-send what the expired session held (no receipt came for it).
        client = build_client(m.client_id, clean_session=False, mqtt5=m.session_expiry_s is not None,
                              manual_ack=True, username=m.username, password_file=m.password_file,
                              ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file,
                              reconnect_delay_s=(1, 30))
        client.max_inflight_messages_set(CLIENT_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _make_source(self) -> JetStreamSource | None:
        if self.cfg.broker.kind != "nats":
            return None
        try:
            from collector.ingest.jetstream import JetStreamSource
        except ImportError as exc:  # the client library is an extra: say which
            raise RuntimeError(f"broker.kind: nats needs the NATS client ({exc}): "
                               "pip install 'linecheck[cluster]'") from exc

        self._in_flight_cap = min(self.cfg.ingest.queue_max, 2 * self.cfg.ingest.batch_max)
        return JetStreamSource(self.cfg.broker.nats, self.cfg.mqtt.client_id, self.inbox,
                               lambda topic, payload, ack: Inbound(topic, payload, 0, 1, ack_with=ack),
                               max_in_flight=self._in_flight_cap)

    def _on_connect_fail(self, client: mqtt.Client, _ud: object) -> None:
        self.link.connect_failed()
        self._next_broker(client)

    def _next_broker(self, client: mqtt.Client) -> None:
        host, port = self.failover.advance(client)
        self.link.address = f"{host}:{port}"

    def _topic(self, topic: str) -> str:
        group = self.cfg.mqtt.shared_group
        return f"$share/{group}/{topic}" if group else topic

    def _on_connect(self, client: mqtt.Client, _ud: object, _flags: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            self.link.refused(reason)
            return
        self._generation += 1
        with self._receipts_cond:  # paho re-sends what the old connection left un-acked: count afresh
            self._receipts_unacked.clear()
            self._receipts_cond.notify_all()
        self._subscribe(client)
        self.connected.set()
        self.link.connected()

    def _subscribe(self, client: mqtt.Client) -> None:
        # With a JetStream source only status comes over MQTT (every collector records it: idempotent).
        topics = [] if self.source else [(self._topic(ALL_RESULTS), 1)]
        if self.take_status:
            topics.append((ALL_STATUS, 1))
        if not topics:  # a NATS worker without status: MQTT carries only its receipts
            self.subscribed.set()
            return
        client.subscribe(topics)

    def _subscribe_again(self, client: mqtt.Client, generation: int) -> None:
        if generation == self._generation:  # else a new connection has subscribed already
            self._subscribe(client)

    def _on_subscribe(self, client: mqtt.Client, _ud: object, _mid: int, reasons: object, _p: object) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]  # type: ignore[attr-defined]
        if failed:
            # An ACL refuses for good; a cluster electing after a node's loss refuses for seconds. Ask again
            # (every 5 s: cheap for the broker), else nothing arrives until the next reconnect.
            log.error("broker refused the collector's subscription: %s (check its ACL); asking again in 5 s",
                      failed)
            generation = self._generation
            timer = threading.Timer(5.0, self._subscribe_again, args=(client, generation))
            timer.daemon = True
            timer.start()
            return
        self.subscribed.set()
        log.info("collector subscribed to results and status")

    def _on_disconnect(self, _c: mqtt.Client, _ud: object, _flags: object, reason: object, _p: object) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.link.disconnected(reason)
        self._next_broker(_c)

    def _on_publish(self, _c: mqtt.Client, _ud: object, mid: int, _reason: object, _p: object) -> None:
        # paho calls this holding its own message lock; _receipts_cond is never held around publish().
        with self._receipts_cond:
            if mid in self._receipts_unacked:
                self._receipts_unacked.discard(mid)
                self._receipts_cond.notify_all()
            else:  # acked before _publish_receipt recorded it (or not a receipt: commands share the client)
                if len(self._acked_early) > 1000:
                    self._acked_early.clear()
                self._acked_early.add(mid)

    def _wait_for_receipt_room(self) -> None:
        while True:
            with self._receipts_cond:
                if len(self._receipts_unacked) < RECEIPTS_UNACKED_MAX:
                    return
                if self.stop_event.is_set():
                    raise _Stopping()
                self._receipts_cond.wait(0.05)
            # paho's thread, the one that reads the acks we wait for, may be stuck in on_message on a
            # full inbox: move what is waiting aside (the next batches take it first) to free it.
            while True:
                try:
                    self._overflow.append(self.inbox.get_nowait())
                except queue.Empty:
                    break

    def _publish_receipt(self, agent_id: str, payload: str) -> None:
        """Hand a receipt to paho. Never raises: the results it answers are committed, so a receipt
        that cannot go out (broker away, paho's queue full) must not make them look like poison; the
        agent re-sends what it got no receipt for and is answered "duplicate"."""
        self._wait_for_receipt_room()
        try:
            # On a NATS cluster a QoS 1 publish is a replicated JetStream write per receipt and agents subscribe
            # at QoS 0 (docs/scaling.md): QoS 0 there; a lost receipt only means the agent re-sends.
            info = self.client.publish(receipts_topic(agent_id), payload, qos=0 if self.source else 1)
        except Exception:  # noqa: BLE001 - see the docstring
            self.receipts_refused += 1
            log.exception("could not hand a receipt for %s to paho; the agent will re-send", agent_id)
            return
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            # Should not happen below the bound; the agent re-sends and gets a "duplicate" receipt.
            self.receipts_refused += 1
            log.error("paho refused a receipt for %s (%s); the agent will re-send", agent_id, info.rc)
            return
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # Not connected: paho keeps the QoS 1 receipt and sends it after it reconnects (and
            # is_published() would raise here). Not counted as un-acked: _on_connect starts afresh.
            log.info("broker away; the receipt for %s goes out after reconnecting (%s)", agent_id, info.rc)
            return
        with self._receipts_cond:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            elif not info.is_published():
                self._receipts_unacked.add(info.mid)

    def _on_message(self, client: mqtt.Client, _ud: object, msg: mqtt.MQTTMessage) -> None:
        # Blocks only when queue_max messages are waiting: back-pressure onto the broker.
        self.inbox.put(Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, generation=self._generation))

    # --- worker ---------------------------------------------------------------------------------
    def batch_limit(self) -> int:
        """How many messages the next batch may take. A batch of batch_max hostile and valid results took
        up to 1.9 s on a busy machine while every other agent's results waited behind it; sized by the
        measured cost per message, a batch takes about batch_target_s (never fewer than 10 messages:
        a transaction per message would cost more than it saves)."""
        cap = self.cfg.ingest.batch_max
        if self._cost_per_message <= 0:
            return cap
        return max(min(10, cap), min(cap, int(self.cfg.ingest.batch_target_s / self._cost_per_message)))

    def _measured(self, size: int, elapsed_s: float) -> None:
        if size >= 10:  # a lone message says little about the cost of many (fixed costs dominate)
            cost = elapsed_s / size
            self._cost_per_message = cost if self._cost_per_message <= 0 else 0.7 * self._cost_per_message + 0.3 * cost
            if self.source is not None:
                self.source.max_in_flight = in_flight_bound(self._cost_per_message, self.cfg.broker.nats.ack_wait_s,
                                                            self._in_flight_cap)

    def _take_batch(self) -> list[Inbound]:
        batch: list[Inbound] = []
        limit = self.batch_limit()
        while self._overflow and len(batch) < limit:
            batch.append(self._overflow.popleft())
        if not batch:
            try:
                batch.append(self.inbox.get(timeout=0.5))
            except queue.Empty:
                return []
        deadline = time.monotonic() + self.cfg.ingest.batch_wait_s
        while len(batch) < limit:
            try:
                batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def health(self) -> IngestHealth:
        """Broker connection, and whether messages taken from the broker are moving (for /healthz)."""
        now = time.monotonic()
        # Read from the API's thread while the worker runs: each value is read once, and may be a moment old.
        in_hand, in_hand_size = self._batch_arrived, self._batch_size
        arrivals = [] if in_hand is None else [in_hand]
        with self.inbox.mutex:  # peek: the oldest waiting message is first in the queue
            if self.inbox.queue:
                arrivals.append(self.inbox.queue[0].arrived)
            pending = len(self.inbox.queue)
        with contextlib.suppress(IndexError):  # empty, or emptied by the worker since
            arrivals.append(self._overflow[0].arrived)
        pending += len(self._overflow) + (in_hand_size if in_hand is not None else 0)
        oldest = now - min(arrivals) if arrivals else 0.0
        connected, subscribed = self.connected.is_set(), self.subscribed.is_set()
        if self.source is not None:  # both: results come from NATS, receipts and status go over MQTT
            connected = connected and self.source.connected.is_set()
            subscribed = subscribed and self.source.subscribed.is_set()
        return IngestHealth(connected, subscribed, pending, oldest,
                            oldest > self.stall_after_s, self.db_retries, self.link.snapshot(),
                            None if self.source is None else len(self.source.owned),
                            0 if self.source is None else self.source.redelivered)

    def process(self, batch: list[Inbound]) -> None:
        statuses = [item for item in batch if item.is_status]
        results = [item for item in batch if not item.is_status]
        good: list[ResultEnvelope] = []
        bad: list[Quarantined] = []
        raw: list[bytes] = []  # raw[i]: good[i] as received
        receipts: dict[str, dict[str, list[str]]] = {}
        for item in results:
            v = validate(item.topic, item.payload, self.cfg.ingest.max_payload_bytes)
            if v.envelope is not None:
                good.append(v.envelope)
                raw.append(item.payload)
            else:
                assert v.reason is not None
                bad.append(self._quarantined(item, v.agent_id, v.reason, _seq_of(item.payload) if v.agent_id else None))
                log.warning("quarantined message on %s: %s", item.topic[:TOPIC_MAX], v.reason)
                if v.agent_id and v.result_id:
                    receipts.setdefault(v.agent_id, {}).setdefault("quarantined", []).append(v.result_id)
        new, rejected = self._commit(good, bad, raw)
        n_rejected = 0
        for i, e in enumerate(good):
            if i in rejected:
                status = "quarantined"
                n_rejected += 1
            else:
                status = "stored" if (e.agent_id, e.result_id) in new else "duplicate"
            if e.result_id not in receipts.get(e.agent_id, {}).get(status, ()):
                receipts.setdefault(e.agent_id, {}).setdefault(status, []).append(e.result_id)
        self.stored += len(new)
        self.duplicates += len(good) - len(new) - n_rejected
        self.quarantined += len(bad) + n_rejected
        self._record_statuses(statuses)
        # Only now, after the commit: receipts to agents, then PUBACKs to the broker (in receive order).
        for agent_id, by_status in receipts.items():
            for status, ids in by_status.items():
                for i in range(0, len(ids), RECEIPT_MAX_IDS):
                    payload = Receipt(result_ids=ids[i:i + RECEIPT_MAX_IDS],
                                      status=status).model_dump_json(by_alias=True)  # type: ignore[arg-type]
                    self._publish_receipt(agent_id, payload)
        for item in batch:
            # A mid from an earlier connection would ack some other message now: the broker
            # redelivers that one instead, and the idempotent insert absorbs it.
            self._ack(item)
        if self.on_batch is not None:
            done = time.monotonic()
            self.on_batch(len(new), len(good) - len(new) - n_rejected, len(bad) + n_rejected,
                          [done - item.arrived for item in results])

    def _quarantined(self, item: Inbound, agent_id: str | None, reason: str, seq: int | None = None) -> Quarantined:
        return Quarantined(item.topic[:TOPIC_MAX], agent_id, reason, item.payload[: self.cfg.ingest.max_payload_bytes],
                           seq)

    def _commit(self, good: list[ResultEnvelope], bad: list[Quarantined],
                raw: list[bytes]) -> tuple[set[tuple[str, str]], set[int]]:
        """Store the batch; returns (new keys, positions in `good` quarantined: by the store's custody and
        reused-id checks, or because the database refused them)."""
        try:
            outcome = self._until_committed(lambda: self.store.ingest_outcome(good, bad, raw=raw))
            return outcome.new, set(outcome.refused)
        except _Stopping:
            raise
        except Exception as exc:  # the database refused something in this batch: find it, keep the rest
            log.warning("batch of %d refused by the database (%s); storing message by message", len(good), exc)
        new: set[tuple[str, str]] = set()
        rejected: set[int] = set()
        poison = list(bad)
        for i, e in enumerate(good):
            try:
                outcome = self._until_committed(lambda e=e, i=i: self.store.ingest_outcome([e], raw=[raw[i]]))
                new |= outcome.new
                if outcome.refused:
                    rejected.add(i)
            except _Stopping:
                raise
            except Exception as exc:
                reason = f"database refused it: {type(exc).__name__}: {exc}"[:2000]
                log.error("quarantined result %s of %s: %s", e.result_id, e.agent_id, reason)
                rejected.add(i)
                poison.append(Quarantined(results_topic(e.agent_id), e.agent_id, reason,
                                          raw[i][: self.cfg.ingest.max_payload_bytes], e.seq))
        if poison:
            try:
                self._until_committed(lambda: self.store.ingest([], poison))
            except _Stopping:
                raise
            except Exception:  # cannot even keep them as evidence: say so loudly and move on
                log.exception("could not write %d messages to quarantine; dropping them", len(poison))
        return new, rejected

    def _until_committed(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, waiting out database outages with capped exponential backoff."""
        delay = 0.5
        while True:
            try:
                return attempt()
            except TRANSIENT_DB_ERRORS as exc:
                if self.stop_event.is_set():
                    raise _Stopping() from exc
                self.db_retries += 1
                log.warning("database unavailable (%s); retrying in %.1f s", str(exc).splitlines()[0][:200], delay)
                if self.stop_event.wait(delay):
                    raise _Stopping() from exc
                delay = min(delay * 2, 30.0)

    def _record_statuses(self, statuses: list[Inbound]) -> None:
        now = datetime.now(UTC)
        for item in statuses:
            agent_id = agent_from_topic(item.topic)
            try:
                state = json.loads(item.payload).get("state")
            except (ValueError, AttributeError, RecursionError):
                state = None
            if agent_id and state in ("online", "offline"):
                self._pending_status[agent_id] = (state, now)
            else:
                log.warning("ignoring malformed status on %s", item.topic[:TOPIC_MAX])
        if self._pending_status:
            try:
                # One transaction for all of them: a fleet reconnecting after an outage sends thousands.
                known = self._until_committed(lambda: self.store.set_agent_statuses(self._pending_status))
                for agent_id in known:
                    del self._pending_status[agent_id]
            except _Stopping:
                raise
            except Exception:  # status is advisory; never let it stop ingest
                log.exception("cannot record the status of %d agents", len(self._pending_status))
                self._pending_status.clear()
        if len(self._pending_status) > 100_000:  # statuses of agents that never send a result
            self._pending_status.clear()

    def run(self) -> None:
        # connect_async: a collector started before its broker waits for it instead of exiting.
        m = self.cfg.mqtt
        session: dict[str, object] = {}
        if m.session_expiry_s is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = m.session_expiry_s
            session = {"clean_start": False, "properties": props}  # paho keeps both for its reconnects
        host, port = self.failover.current
        self.client.connect_async(host, port, keepalive=m.keepalive_s, **session)  # type: ignore[arg-type]
        self.client.loop_start()
        if self.source is not None:
            self.source.start()
        try:
            while not self.stop_event.is_set():
                batch = self._take_batch()
                if batch:
                    self._batch_arrived, self._batch_size = min(item.arrived for item in batch), len(batch)
                began = time.monotonic()
                try:
                    self.process_isolating(batch)
                except _Stopping:
                    return
                finally:
                    self._batch_arrived = None
                self._measured(len(batch), time.monotonic() - began)
        finally:
            if self.source is not None:  # after the last batch's acks were handed over: they leave first
                self.source.stop()
            self.client.disconnect()
            self.client.loop_stop()

    def process_isolating(self, batch: list[Inbound]) -> None:
        """process(), and if the batch fails (a bug, not bad input: that is quarantined), each message on
        its own; a message that still fails is quarantined with the exception. Never retried for ever:
        one poison message once held every agent's results behind it, across restarts."""
        if not batch:
            return
        try:
            self.process(batch)
            return
        except _Stopping:
            raise
        except Exception:
            log.exception("ingest of a batch of %d failed; taking it apart message by message", len(batch))
        for item in batch:
            try:
                self.process([item])
            except _Stopping:
                raise
            except Exception as exc:
                log.exception("message on %s failed on its own; quarantining it", item.topic[:TOPIC_MAX])
                self._quarantine_failed(item, exc)

    def _quarantine_failed(self, item: Inbound, exc: Exception) -> None:
        agent_id = agent_from_topic(item.topic)
        reason = f"ingest failed: {type(exc).__name__}: {exc}"[:2000]
        try:
            self._until_committed(lambda: self.store.ingest_outcome([], [self._quarantined(item, agent_id, reason)]))
        except _Stopping:
            raise
        except Exception:
            # Not even kept as evidence: ack it (it must not block the fleet) but send no receipt, so the
            # agent keeps it in its spool and sends it again later.
            log.exception("could not quarantine the message on %s either; the agent will re-send it",
                          item.topic[:TOPIC_MAX])
        else:
            self.quarantined += 1
            result_id = _result_id_of(item.payload) if len(item.payload) <= self.cfg.ingest.max_payload_bytes else None
            if agent_id and result_id and not item.is_status:
                self._publish_receipt(agent_id, Receipt(result_ids=[result_id], status="quarantined")
                                      .model_dump_json(by_alias=True))
        self._ack(item)

    def _ack(self, item: Inbound) -> None:
        if item.ack_with is not None:
            item.ack_with()
        elif item.generation == self._generation:
            self.client.ack(item.mid, item.qos)

    def stop(self) -> None:
        self.stop_event.set()
