"""The collector's ingest protocol, packet by packet, against a scripted broker (tests/fakebroker.py).

Ingest acknowledges by hand (manual PUBACK) so that a message the database has not committed is
redelivered after a crash. What the broker sees is the contract: no receipt and no PUBACK before
the commit, receipts before PUBACKs, PUBACKs in the order the messages came, and never a PUBACK
on a new connection for a message taken on the old one (its packet id now names another message).
Beside the real-broker tests (tests/test_ingest_broker.py, tests/test_e2e.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from collector.config import CollectorConfig
from collector.ingest.worker import Ingestor
from collector.store.database import Store
from linecheck.wire import ALL_RESULTS, ALL_STATUS, Receipt, ResultEnvelope, receipts_topic, results_topic
from tests.fakebroker import CONNECT, DISCONNECT, PUBACK, PUBLISH, SUBSCRIBE, Connection, FakeBroker, Packet
from tests.faultkit import make_envelope
from tests.helpers import wait_for


def _env(agent_id: str, seq: int) -> ResultEnvelope:
    return make_envelope(agent_id, seq).model_copy(update={"seq": seq})


def _ack_receipts(conn: Connection, packet: Packet) -> bool:
    """The broker takes every receipt at once; the receipt stays in the script's queue, in order."""
    if packet.kind == PUBLISH and packet.qos:
        conn.puback(packet.mid or 0)
    return False


class Collector:
    """Ingestor.run() in its thread, on an SQLite store whose lock waits are short (so a locked
    database shows up as a retry within the test, not after SQLite's ten-second busy timeout)."""

    def __init__(self, tmp: Path, port: int, v5: bool, batch_max: int):
        self.db_path = tmp / "collector.db"
        mqtt = {"host": "127.0.0.1", "port": port, **({"session_expiry_s": 600} if v5 else {})}
        self.cfg = CollectorConfig.model_validate({
            "database": f"sqlite:///{self.db_path}", "mqtt": mqtt,
            "ingest": {"batch_max": batch_max, "batch_wait_s": 2.0}})
        self.store = Store(self.cfg.database)
        event.listen(self.store.engine, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA busy_timeout=50"))
        self.store.engine.dispose()  # pooled connections get the short wait too
        self.ingestor = Ingestor(self.cfg, self.store)
        self.thread = threading.Thread(target=self.ingestor.run, daemon=True)

    def start(self, fake: FakeBroker, v5: bool) -> Connection:
        self.thread.start()
        conn = fake.accept()
        handshake(conn, v5)
        wait_for(self.ingestor.subscribed.is_set, 10, "the collector's subscription")
        return conn

    def stop(self) -> None:
        self.ingestor.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()

    def count(self, table: str) -> int:
        with sqlite3.connect(self.db_path) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 (test's own names)


def handshake(conn: Connection, v5: bool, session_present: bool = False) -> Packet:
    conn.auto = _ack_receipts
    connect = conn.expect(CONNECT)
    assert connect.protocol_level == (5 if v5 else 4)
    assert not connect.clean_start, "the collector's session must outlive it (manual ack relies on redelivery)"
    conn.connack(0, session_present)
    sub = conn.expect(SUBSCRIBE)
    assert sub.subscriptions == [(ALL_RESULTS, 1), (ALL_STATUS, 1)]
    conn.suback(sub.mid or 0, [1, 1])
    return connect


def receipt(packet: Packet) -> tuple[str, str, list[str]]:
    r = Receipt.model_validate_json(packet.payload)
    return packet.topic, r.status, r.result_ids


def rest_until_closed(conn: Connection) -> list[int]:
    """The kinds of the packets the client sent after what the script read, until it closed the socket."""
    rest = []
    while (packet := conn.next()) is not None:
        rest.append(packet.kind)
    return rest


class DatabaseLock:
    """Another writer holding SQLite's write lock (a long transaction, a backup): ingest cannot commit."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


@pytest.fixture
def fake() -> Iterator[FakeBroker]:
    with FakeBroker() as broker:
        yield broker


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_no_puback_before_the_commit_then_receipts_then_pubacks_in_order(
        tmp_path: Path, fake: FakeBroker, v5: bool) -> None:
    c = Collector(tmp_path, fake.port, v5, batch_max=3)
    conn = c.start(fake, v5)
    envs = [_env("gw-1", 1), _env("gw-1", 2), _env("gw-2", 1)]
    lock = DatabaseLock(c.db_path)
    try:
        mids = conn.publish_many([(results_topic(e.agent_id), e.to_json()) for e in envs])
        wait_for(lambda: c.ingestor.db_retries >= 1, 10, "ingest to meet the locked database")
        assert c.ingestor.health().pending == 3
        assert conn.pending() == [], "a receipt or PUBACK went out before the batch was committed"
    finally:
        lock.release()
    got = [conn.next() for _ in range(5)]
    assert [p.kind if p else None for p in got] == [PUBLISH, PUBLISH, PUBACK, PUBACK, PUBACK]
    assert [receipt(p) for p in got[:2] if p] == [
        (receipts_topic("gw-1"), "stored", [envs[0].result_id, envs[1].result_id]),
        (receipts_topic("gw-2"), "stored", [envs[2].result_id])]
    assert [p.mid for p in got[2:] if p] == mids, "PUBACKs not in the order the messages came"
    assert c.count("results") == 3
    c.stop()
    assert rest_until_closed(conn) == [DISCONNECT]
    assert sum(p.kind == PUBACK for p in conn.log) == 3


def test_quarantined_message_gets_its_receipt_and_pubacks_keep_receive_order(tmp_path: Path, fake: FakeBroker) -> None:
    c = Collector(tmp_path, fake.port, False, batch_max=3)
    conn = c.start(fake, False)
    first, last = _env("gw-1", 1), _env("gw-1", 3)
    bad = b'{"schema": 1, "result_id": "01HBADBADBADBADBADBADBADBA", "seq": 2}'  # not an envelope
    mids = conn.publish_many([(results_topic("gw-1"), first.to_json()), (results_topic("gw-1"), bad),
                              (results_topic("gw-1"), last.to_json())])
    got = [conn.next() for _ in range(5)]
    assert [p.kind if p else None for p in got] == [PUBLISH, PUBLISH, PUBACK, PUBACK, PUBACK]
    assert [receipt(p) for p in got[:2] if p] == [
        (receipts_topic("gw-1"), "quarantined", ["01HBADBADBADBADBADBADBADBA"]),
        (receipts_topic("gw-1"), "stored", [first.result_id, last.result_id])]
    assert [p.mid for p in got[2:] if p] == mids
    assert (c.count("results"), c.count("quarantine")) == (2, 1)
    c.stop()
    assert rest_until_closed(conn) == [DISCONNECT]


def test_message_taken_on_a_lost_connection_is_not_acked_on_the_next(tmp_path: Path, fake: FakeBroker) -> None:
    """The connection drops while the batch waits for the database. On the new connection the same
    packet id may name another message, so the old one is never PUBACKed there: the broker
    redelivers it (DUP), it is stored once, receipted again (duplicate) and PUBACKed once."""
    c = Collector(tmp_path, fake.port, False, batch_max=1)
    conn = c.start(fake, False)
    env = _env("gw-1", 1)
    lock = DatabaseLock(c.db_path)
    try:
        mid = conn.publish(results_topic("gw-1"), env.to_json())
        wait_for(lambda: c.ingestor.db_retries >= 1, 10, "ingest to meet the locked database")
        conn.drop()
        conn2 = fake.accept()
        handshake(conn2, False, session_present=True)
        wait_for(c.ingestor.subscribed.is_set, 10, "the re-subscription")
        conn2.publish(results_topic("gw-1"), env.to_json(), dup=True, mid=mid)  # the session's redelivery
        wait_for(lambda: c.ingestor.health().pending == 2, 10, "the redelivery to be taken")
    finally:
        lock.release()
    got = [conn2.next() for _ in range(3)]
    assert [p.kind if p else None for p in got] == [PUBLISH, PUBLISH, PUBACK]
    assert [receipt(p)[1] for p in got[:2] if p] == ["stored", "duplicate"]
    assert got[2] is not None and got[2].mid == mid
    assert c.count("results") == 1
    c.stop()
    assert rest_until_closed(conn2) == [DISCONNECT], "the old connection's message was acked twice"
    assert not [p for p in conn.log if p.kind == PUBACK]


def test_batch_committed_while_the_broker_is_away_is_receipted_after_the_reconnect(
        tmp_path: Path, fake: FakeBroker) -> None:
    """The database comes back while the broker is away: the batch commits and its receipt is handed
    to paho with no connection (paho answers NO_CONN and keeps it for the reconnect). That must
    neither quarantine the stored result nor end the ingest worker."""
    c = Collector(tmp_path, fake.port, False, batch_max=1)
    conn = c.start(fake, False)
    env = _env("gw-1", 1)
    lock = DatabaseLock(c.db_path)
    try:
        mid = conn.publish(results_topic("gw-1"), env.to_json())
        wait_for(lambda: c.ingestor.db_retries >= 1, 10, "ingest to meet the locked database")
        fake.stop_listening()  # the broker stays away until the script says otherwise
        conn.drop()
        wait_for(lambda: not c.ingestor.connected.is_set(), 10, "the collector to see the drop")
    finally:
        lock.release()
    wait_for(lambda: c.ingestor.health().pending == 0, 10, "the batch to be committed")
    assert (c.count("results"), c.count("quarantine"), c.ingestor.quarantined) == (1, 0, 0)

    fake.listen_again()
    conn2 = fake.accept()
    handshake(conn2, False, session_present=True)
    kept = conn2.expect(PUBLISH)  # the receipt paho kept for this connection
    assert receipt(kept) == (receipts_topic("gw-1"), "stored", [env.result_id])
    conn2.publish(results_topic("gw-1"), env.to_json(), dup=True, mid=mid)  # the session's redelivery
    got = [conn2.next() for _ in range(2)]
    assert [p.kind if p else None for p in got] == [PUBLISH, PUBACK]
    assert got[0] is not None and receipt(got[0])[1] == "duplicate"
    assert got[1] is not None and got[1].mid == mid
    assert c.thread.is_alive(), "the ingest worker died"
    c.stop()
    assert rest_until_closed(conn2) == [DISCONNECT]
    assert not [p for p in conn.log if p.kind == PUBACK]
