"""Results from a NATS JetStream cluster (`broker.kind: nats`): per-partition durable pull consumers that
competing collectors share, acked only after the database commit.

The cluster's account mapping (collector/fleet/nats_config.py) puts what an agent publishes on its MQTT
results topic `linecheck/v1/agents/<id>/results` on the subject `<prefix>.<partition>.<id>`, partition =
FNV-1a(id) mod P, so one agent always lands in one partition. The stream (R3, work-queue retention) keeps a
result until a collector acks it. Each partition has one durable pull consumer; only the collector holding
the partition's lease (partitions.py) pulls from it. The worker (worker.py) acks a message after its batch is
committed and receipted; one taken and never acked (the collector died mid-batch) comes again after
`ack_wait_s` to whoever holds the partition then, and the store's idempotent insert absorbs the repeat.

Receipts, commands and agents' status stay on MQTT through the cluster's MQTT listener (worker.py's paho
client). The NATS client runs its own asyncio loop in a thread; the worker thread only hands it acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig

from collector.config import NatsConfig
from collector.ingest.partitions import PartitionLeases
from linecheck.wire import results_topic, valid_id

log = logging.getLogger(__name__)
R = TypeVar("R")

FETCH_MAX = 500  # messages asked for in one pull request
FETCH_WAIT_S = 1.0  # a pull request on an idle partition waits this long


def durable_name(cfg: NatsConfig, partition: int) -> str:
    return f"{cfg.stream}-p{partition}"


def topic_of(subject: str, prefix: str) -> tuple[str, int] | None:
    """(the MQTT results topic the agent published on, partition) of a stream subject, or None if the
    subject is not `<prefix>.<partition>.<agent id>` (the worker quarantines what the topic does not name)."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != prefix or not parts[1].isdigit():
        return None
    return (results_topic(parts[2]) if valid_id(parts[2]) else subject), int(parts[1])


async def ensure_stream(js: JetStreamContext, cfg: NatsConfig, max_ack_pending: int) -> None:
    """The results stream and one durable pull consumer per partition, created if missing (idempotent)."""
    subjects = [f"{cfg.subject_prefix}.*.*"]
    try:
        info = await js.stream_info(cfg.stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(StreamConfig(
            name=cfg.stream, subjects=subjects, retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
            num_replicas=cfg.replicas, max_age=cfg.max_age_days * 86400))
        log.info("created stream %s (R%d) on %s", cfg.stream, cfg.replicas, subjects[0])
    else:
        if info.config.subjects != subjects:
            raise RuntimeError(f"stream {cfg.stream} holds {info.config.subjects}, not {subjects}: "
                               "another stream name (broker.nats.stream) or the same subject_prefix")
    for p in range(cfg.partitions):
        await js.add_consumer(cfg.stream, ConsumerConfig(
            durable_name=durable_name(cfg, p), filter_subject=f"{cfg.subject_prefix}.{p}.*",
            ack_policy=AckPolicy.EXPLICIT, ack_wait=cfg.ack_wait_s, max_deliver=-1, max_ack_pending=max_ack_pending))


class JetStreamSource:
    """Pulls the partitions this collector holds into the worker's inbox. Thread-safe: start(), ack(), stop()."""

    def __init__(self, cfg: NatsConfig, member: str, inbox: queue.Queue, make_item: Callable[..., object],
                 max_in_flight: int = 1000):
        self.cfg = cfg
        # Taken and not yet acked, at most: what waits in the inbox longer than ack_wait_s is delivered again
        # (to this collector: processed twice, absorbed by the idempotent insert, but wasted), so the
        # look-ahead stays a few batches, not the inbox's size.
        self.max_in_flight = max_in_flight
        self.member = member  # this collector's name in the leases (its MQTT client id: unique per process)
        self.inbox = inbox
        self.make_item = make_item  # (topic, payload, ack) -> the worker's Inbound
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # stream, consumers and leases are set up
        self.pulled: Counter[int] = Counter()  # messages taken per partition (for tests and /metrics)
        self.redelivered = 0  # messages that came again: another delivery had not been acked
        self._again: Counter[int] = Counter()  # the same, per partition, since the last log line
        self._in_flight: Counter[int] = Counter()  # taken and not yet acked, per partition
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._room: asyncio.Event | None = None  # set when acks free room for more in flight
        self._thread: threading.Thread | None = None
        self._acks: set[asyncio.Future[None]] = set()
        self._acks_lock = threading.Lock()
        self._acks_waiting: list[tuple[Msg, int]] = []  # handed over by the worker, not yet on the loop
        self.owned: set[int] = set()

    # --- the worker's side ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-jetstream", daemon=True)
        self._thread.start()

    def ack(self, msg: Msg, partition: int) -> None:
        """Called by the worker after the commit: the ack leaves on the NATS loop. The loop is woken once per
        batch, not per message: a wake-up per ack had the two threads trade the GIL on every message."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # redelivered after ack_wait
        with self._acks_lock:
            self._acks_waiting.append((msg, partition))
            if len(self._acks_waiting) > 1:
                return  # a flush is already scheduled
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: redelivered after ack_wait
            loop.call_soon_threadsafe(self._flush_acks)

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    # --- the NATS loop -----------------------------------------------------------------------------
    def _flush_acks(self) -> None:
        with self._acks_lock:
            batch, self._acks_waiting = self._acks_waiting, []
        for _, partition in batch:
            self._in_flight[partition] -= 1
        if self._room is not None:
            self._room.set()
        task = asyncio.ensure_future(self._send_acks([msg for msg, _ in batch]))
        self._acks.add(task)
        task.add_done_callback(self._acked)

    async def _send_acks(self, msgs: list[Msg]) -> None:
        for msg in msgs:  # each is a publish into the client's buffer: no round trip
            await msg.ack()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("JetStream ingest stopped")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()
        password = self.cfg.password_file.read_text().strip() if self.cfg.password_file else None
        nc = await self._until_ready(lambda: nats.connect(
            self.cfg.servers, name=self.member, user=self.cfg.username, password=password,
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2,
            disconnected_cb=self._disconnected, reconnected_cb=self._reconnected, error_cb=self._error),
            "a connection to the NATS cluster")
        self.connected.set()
        log.info("collector connected to NATS %s", nc.connected_url.netloc if nc.connected_url else "?")
        try:
            js = nc.jetstream(timeout=5)
            await self._until_ready(lambda: ensure_stream(js, self.cfg, max(FETCH_MAX, self.max_in_flight)),
                                    "the results stream")
            bucket = f"{self.cfg.stream}_LEASES"
            kv = await self._until_ready(lambda: js.create_key_value(KeyValueConfig(
                bucket=bucket, ttl=self.cfg.lease_s, replicas=self.cfg.replicas,
                storage=StorageType.FILE)), "the partition leases")
            leases = PartitionLeases(js, kv, bucket, self.member, self.cfg.partitions, lambda p: self._in_flight[p])
            self.subscribed.set()
            pullers: dict[int, asyncio.Task[None]] = {}
            while not self._stopping.is_set():
                try:
                    self.owned = await leases.tick()
                except Exception as exc:  # the cluster is electing, a node is away: keep what we have
                    log.warning("partition leases not renewed (%s); retrying", exc)
                for p in self.owned - set(pullers):
                    pullers[p] = asyncio.create_task(self._pull(js, p))
                for p in set(pullers) - self.owned:
                    pullers.pop(p).cancel()
                if self._again:  # one line per lease period, not one per pull
                    log.info("results delivered again (taken before and never acked), by partition: %s",
                             dict(sorted(self._again.items())))
                    self._again.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.cfg.lease_s / 3)
            for task in pullers.values():
                task.cancel()
            await asyncio.gather(*pullers.values(), return_exceptions=True)
            await self._drain_acks()
            with contextlib.suppress(Exception):
                await leases.release_all()
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
            self.connected.clear()
            self.subscribed.clear()

    async def _until_ready(self, attempt: Callable[[], Awaitable[R]], what: str) -> R:
        delay = 0.5
        while True:
            try:
                return await attempt()
            except Exception as exc:
                assert self._stopping is not None
                if self._stopping.is_set():
                    raise
                log.warning("cannot set up %s on the cluster yet (%s); retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _pull(self, js: JetStreamContext, p: int) -> None:
        sub = await js.pull_subscribe_bind(durable=durable_name(self.cfg, p), stream=self.cfg.stream)
        try:
            while True:
                room = self.max_in_flight - sum(self._in_flight.values())  # in the inbox or in the worker's hands
                if room <= 0:  # back-pressure: the worker has enough in hand; acks free room
                    assert self._room is not None
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), 1.0)
                    continue
                try:
                    msgs = await sub.fetch(min(room, FETCH_MAX), timeout=FETCH_WAIT_S)
                except (TimeoutError, NatsTimeout):
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a node went away mid-request: the client reconnects
                    log.info("pull from partition %d failed (%s); retrying", p, exc)
                    await asyncio.sleep(0.5)
                    continue
                again = sum(1 for msg in msgs if msg.metadata.num_delivered > 1)
                if again:  # taken before and never acked: a collector died, or its acks were lost with a node
                    self.redelivered += again
                    self._again[p] += again
                for msg in msgs:
                    where = topic_of(msg.subject, self.cfg.subject_prefix)
                    topic = where[0] if where else msg.subject
                    self._in_flight[p] += 1
                    self.pulled[p] += 1
                    item = self.make_item(topic, msg.data, lambda m=msg, p=p: self.ack(m, p))
                    try:
                        self.inbox.put_nowait(item)
                    except queue.Full:
                        await asyncio.get_running_loop().run_in_executor(None, self.inbox.put, item)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _acked(self, task: asyncio.Future[None]) -> None:
        self._acks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("ack not sent (%s); the message comes again after ack_wait", task.exception())

    async def _drain_acks(self) -> None:
        """Let the acks the worker handed over leave before the connection closes."""
        await asyncio.gather(*self._acks, return_exceptions=True)

    async def _disconnected(self) -> None:
        self.connected.clear()
        log.warning("collector lost its NATS connection; reconnecting")

    async def _reconnected(self) -> None:
        self.connected.set()
        log.info("collector reconnected to NATS")

    async def _error(self, exc: Exception) -> None:
        log.info("NATS client: %s", exc)
